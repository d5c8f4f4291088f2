/* Segmentation metrics per region: Dice and HD95 in mm, as the official
 * evaluation computes them (spec section 4; medpy.metric.binary.dc/hd95).
 *
 * Volumes are uint8 label maps in (D, H, W) C order; spacing is in mm along
 * (D, H, W), as segmamba_geometry.spacing holds it. */
#ifndef SM_METRICS_H
#define SM_METRICS_H

#include <stdint.h>

#include "core/error.h"
#include "segmamba_pipeline.h"

/* The regions, scores and segmamba_metrics_* are segmamba_pipeline.h's. */

/* Exact Euclidean distance in mm from every voxel to the nearest voxel with
 * set[v] != 0 (separable squared distance transform, Felzenszwalb and
 * Huttenlocher), anisotropic spacing along (D, H, W). With no such voxel
 * every distance is INFINITY. dist holds d*h*w doubles. */
sm_status sm_distance_transform(const uint8_t *set, int d, int h, int w, const double spacing[3],
                                double *dist);

/* The surface of a mask as medpy takes it: mask voxels with a 6-neighbour
 * outside the mask (the volume's outside counts as outside). */
void sm_mask_surface(const uint8_t *mask, int d, int h, int w, uint8_t *surface);

#endif
