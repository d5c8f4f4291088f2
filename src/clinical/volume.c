#include "clinical/volume.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nifti/nifti2_io.h>

void sm_geometry_free(segmamba_geometry *g)
{
    if (!g) return;
    if (g->header) nifti_image_free(g->header);
    g->header = NULL;
}

sm_status sm_geometry_copy(const segmamba_geometry *src, segmamba_geometry *dst)
{
    *dst = *src;
    dst->header = NULL;
    if (src->header) {
        dst->header = nifti_copy_nim_info(src->header);
        if (!dst->header) return sm_fail(SEGMAMBA_E_NOMEM, "out of memory copying a NIfTI header");
    }
    return SEGMAMBA_OK;
}

void segmamba_volume_free(segmamba_volume *v)
{
    if (!v) return;
    free(v->data);
    sm_geometry_free(&v->geom);
    memset(v, 0, sizeof *v);
}

int segmamba_geometry_differs(const segmamba_geometry *a, const segmamba_geometry *b, char *why,
                              size_t n)
{
    if (a->d != b->d || a->h != b->h || a->w != b->w) {
        snprintf(why, n, "dims differ: %dx%dx%d vs %dx%dx%d", a->w, a->h, a->d, b->w, b->h, b->d);
        return 1;
    }
    for (int i = 0; i < 3; i++)
        if (fabs(a->spacing[i] - b->spacing[i]) > 1e-3) {
            snprintf(why, n, "voxel spacing differs: %gx%gx%g vs %gx%gx%g mm", a->spacing[2],
                     a->spacing[1], a->spacing[0], b->spacing[2], b->spacing[1], b->spacing[0]);
            return 1;
        }
    double scale = 0;
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 3; c++) scale = fmax(scale, fabs(a->affine[r][c]));
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++) {
            const double tol = c < 3 ? 1e-4 * scale : 1e-3;
            if (fabs(a->affine[r][c] - b->affine[r][c]) > tol) {
                snprintf(why, n, "affines differ: element [%d][%d] is %.6g vs %.6g%s", r, c,
                         a->affine[r][c], b->affine[r][c],
                         c < 3 ? " (orientation or voxel size)" : " mm (origin)");
                return 1;
            }
        }
    return 0;
}

sm_status segmamba_volume_get_labels(const segmamba_volume *v, const char *origin, uint8_t **labels)
{
    *labels = NULL;
    if (v->c != 1)
        return sm_fail(SEGMAMBA_E_FORMAT, "%s: a label map has one channel, not %d", origin, v->c);
    const size_t n = (size_t)v->d * v->h * v->w;
    uint8_t *out = malloc(n ? n : 1);
    if (!out) return sm_fail(SEGMAMBA_E_NOMEM, "%s: out of memory for the labels", origin);
    for (size_t x = 0; x < n; x++) {
        const float f = v->data[x];
        const float r = rintf(f);
        if (!(fabsf(f - r) <= 1e-3f) || r < 0 || r > 255) {
            const size_t hw = (size_t)v->h * v->w;
            const int k = (int)(x / hw), j = (int)(x % hw / (size_t)v->w),
                      i = (int)(x % (size_t)v->w);
            free(out);
            return sm_fail(SEGMAMBA_E_FORMAT,
                           "%s: voxel (%d, %d, %d) holds %g, not a label (an integer 0..255)",
                           origin, i, j, k, (double)f);
        }
        out[x] = (uint8_t)r;
    }
    *labels = out;
    return SEGMAMBA_OK;
}

sm_status segmamba_volume_check_finite(const segmamba_volume *v, const char *const *paths, int n)
{
    const size_t nvox = (size_t)v->d * v->h * v->w;
    for (int c = 0; c < v->c; c++) {
        const float *x = v->data + (size_t)c * nvox;
        size_t bad = 0, first = 0;
        for (size_t i = 0; i < nvox; i++)
            if (!isfinite(x[i]) && !bad++) first = i;
        if (!bad) continue;
        const size_t hw = (size_t)v->h * v->w;
        const int k = (int)(first / hw), j = (int)(first % hw / (size_t)v->w),
                  i = (int)(first % (size_t)v->w);
        char volume[32] = "";
        if (n != v->c && v->c > 1) snprintf(volume, sizeof volume, " of volume %d", c);
        return sm_fail(SEGMAMBA_E_UNSUPPORTED,
                       "%s: voxel (%d, %d, %d)%s is %s (%zu of its %zu voxels are not finite); "
                       "replace NaN and infinite values (e.g. with 0) before segmenting",
                       !paths      ? "input volume"
                       : n == v->c ? paths[c]
                                   : paths[0],
                       i, j, k, volume,
                       isnan(x[first]) ? "NaN"
                       : x[first] > 0  ? "+inf"
                                       : "-inf",
                       bad, nvox);
    }
    return SEGMAMBA_OK;
}
