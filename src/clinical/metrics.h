/* Segmentation metrics per region: Dice and HD95 in mm, as the official
 * evaluation computes them (spec section 4; medpy.metric.binary.dc/hd95).
 *
 * Volumes are uint8 label maps in (D, H, W) C order; spacing is in mm along
 * (D, H, W), as sm_geometry.spacing holds it. */
#ifndef SM_METRICS_H
#define SM_METRICS_H

#include <stdint.h>

#include "core/error.h"

/* A region is a set of labels, e.g. BraTS TC = {1, 3}. */
typedef struct sm_region {
    char name[32];
    uint8_t member[256]; /* member[label] != 0 when label belongs to the region */
} sm_region;

typedef struct sm_region_score {
    double dice;
    double hd95;        /* mm */
    int64_t n_pred;     /* voxels of the region in the prediction */
    int64_t n_ref;      /* ... and in the reference */
} sm_region_score;

/* The official rule: prediction or reference empty gives Dice 0, HD95 50. */
#define SM_HD95_EMPTY 50.0

/* Fills a region named name from n labels. */
void sm_region_set(sm_region *r, const char *name, const uint8_t *labels, int n);

/* The three BraTS regions: TC = {1, 3}, WT = {1, 2, 3}, ET = {3}. */
void sm_regions_brats(sm_region out[3]);

/* Dice and HD95 of each region. By default (empty_both_one == 0) a region
 * empty in the prediction or the reference scores Dice 0 and HD95 50; with
 * empty_both_one, a region empty in both scores Dice 1 and HD95 0 (one empty
 * still scores 0 and 50). */
sm_status sm_metrics_regions(const uint8_t *pred, const uint8_t *ref, int d, int h, int w,
                             const double spacing[3], const sm_region *regions, int n,
                             int empty_both_one, sm_region_score *out);

/* Dice and HD95 of two binary masks (nonzero = inside), same rules. */
sm_status sm_metrics_masks(const uint8_t *pred, const uint8_t *ref, int d, int h, int w,
                           const double spacing[3], int empty_both_one, sm_region_score *out);

/* Exact Euclidean distance in mm from every voxel to the nearest voxel with
 * set[v] != 0 (separable squared distance transform, Felzenszwalb and
 * Huttenlocher), anisotropic spacing along (D, H, W). With no such voxel
 * every distance is INFINITY. dist holds d*h*w doubles. */
sm_status sm_distance_transform(const uint8_t *set, int d, int h, int w,
                                const double spacing[3], double *dist);

/* The surface of a mask as medpy takes it: mask voxels with a 6-neighbour
 * outside the mask (the volume's outside counts as outside). */
void sm_mask_surface(const uint8_t *mask, int d, int h, int w, uint8_t *surface);

#endif
