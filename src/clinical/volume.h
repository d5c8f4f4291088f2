/* A multi-channel 3D image as the clinical pipeline sees it: float32
 * (C, D, H, W) in C order, where (D, H, W) is the file's stored voxel order
 * (nz, ny, nx) (spec section 1: never reoriented), plus the geometry that
 * outputs must carry so that other tools overlay them on the input. */
#ifndef SM_VOLUME_H
#define SM_VOLUME_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct sm_geometry {
    int d, h, w;          /* voxels: nz, ny, nx */
    double spacing[3];    /* mm along (D, H, W) = NIfTI pixdim[3], pixdim[2], pixdim[1] */
    double affine[4][4];  /* voxel (i, j, k) = (W, H, D) index to world mm, as the
                             file's sform (or qform, or pixdim scaling) gives it */
    void *header;         /* the source file's header (nifticlib), owned; NULL for
                             a volume not read from a file */
} sm_geometry;

typedef struct sm_volume {
    int c, d, h, w;
    float *data;          /* c * d * h * w floats, owned */
    sm_geometry geom;
} sm_volume;

void sm_geometry_free(sm_geometry *g);
sm_status sm_geometry_copy(const sm_geometry *src, sm_geometry *dst);

void sm_volume_free(sm_volume *v);

/* Compares dims, spacing (1e-3 mm) and affine (1e-3 mm on the origin, 1e-4
 * of the largest element on the 3x3 part). Returns 0 when they match, else 1
 * with the first difference written to why, e.g. "dims differ: 240x240x155
 * vs 240x240x160" (sizes in file order x, y, z). */
int sm_geometry_differs(const sm_geometry *a, const sm_geometry *b, char *why, size_t n);

/* The label map held by a one-channel volume (e.g. a segmentation read with
 * sm_nifti_read): values rounded to integers; a value farther than 1e-3 from
 * an integer, or outside 0..255, is an E_FORMAT error naming origin and the
 * voxel. *labels (d*h*w bytes) is freed by the caller. */
sm_status sm_volume_labels(const sm_volume *v, const char *origin, uint8_t **labels);

/* E_UNSUPPORTED when a voxel is NaN or infinite, naming the file it came
 * from (paths[channel] when n == v->c, else paths[0]) and the voxel: the
 * pipeline would carry such values into every output near them. */
sm_status sm_volume_check_finite(const sm_volume *v, const char *const *paths, int n);

#endif
