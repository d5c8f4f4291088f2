/* Dice and HD95 as medpy.metric.binary computes them for the official
 * evaluation: the surface of a mask is the mask minus its erosion by the
 * 6-neighbourhood (outside the volume counts as background); each surface
 * voxel's distance to the nearest surface voxel of the other mask, both
 * directions pooled; HD95 is numpy.percentile(..., 95) with linear
 * interpolation. */
#include "clinical/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void segmamba_region_init(segmamba_region *r, const char *name, const uint8_t *labels, int n)
{
    memset(r, 0, sizeof *r);
    strncpy(r->name, name, sizeof r->name - 1);
    for (int i = 0; i < n; i++) r->member[labels[i]] = 1;
}

void segmamba_region_init_brats(segmamba_region out[3])
{
    static const uint8_t tc[] = {1, 3}, wt[] = {1, 2, 3}, et[] = {3};
    segmamba_region_init(&out[0], "TC", tc, 2);
    segmamba_region_init(&out[1], "WT", wt, 3);
    segmamba_region_init(&out[2], "ET", et, 1);
}

/* ------------------------------------------------------------------------ */
/* Distance transform */

/* One line: out[p] = min_q (s (p - q))^2 + f[q], for f with INFINITY where
 * no point is. The lower envelope of the parabolas rooted at the finite
 * f[q]; v holds their roots, z the boundaries between them. */
static void edt_line(const double *f, int n, double s, double *out, int *v, double *z)
{
    int k = -1;
    for (int q = 0; q < n; q++) {
        if (f[q] == INFINITY) continue;
        const double xq = s * q, fq = f[q] + xq * xq;
        double sx = -INFINITY;
        while (k >= 0) {
            const double xv = s * v[k];
            sx = (fq - (f[v[k]] + xv * xv)) / (2 * (xq - xv));
            if (sx > z[k]) break;
            k--;
        }
        k++;
        v[k] = q;
        z[k] = k == 0 ? -INFINITY : sx;
        z[k + 1] = INFINITY;
    }
    if (k < 0) {
        for (int p = 0; p < n; p++) out[p] = INFINITY;
        return;
    }
    int j = 0;
    for (int p = 0; p < n; p++) {
        const double xp = s * p;
        while (z[j + 1] < xp) j++;
        const double dx = xp - s * v[j];
        out[p] = dx * dx + f[v[j]];
    }
}

/* Squared distances in place along one axis: n points per line at stride,
 * lines starting at base + a * outer_stride + b * inner_stride. */
static void edt_axis(double *g, int n, size_t stride, int outer, size_t outer_stride, int inner,
                     size_t inner_stride, double s, double *line, double *res, int *v, double *z)
{
    for (int a = 0; a < outer; a++)
        for (int b = 0; b < inner; b++) {
            double *p = g + (size_t)a * outer_stride + (size_t)b * inner_stride;
            for (int i = 0; i < n; i++) line[i] = p[(size_t)i * stride];
            edt_line(line, n, s, res, v, z);
            for (int i = 0; i < n; i++) p[(size_t)i * stride] = res[i];
        }
}

sm_status sm_distance_transform(const uint8_t *set, int d, int h, int w, const double spacing[3],
                                double *dist)
{
    const size_t nvox = (size_t)d * h * w;
    int n = d > h ? d : h;
    n = n > w ? n : w;
    double *line = malloc((size_t)n * sizeof *line), *res = malloc((size_t)n * sizeof *res);
    double *z = malloc(((size_t)n + 1) * sizeof *z);
    int *v = malloc((size_t)n * sizeof *v);
    if (!line || !res || !z || !v) {
        free(line);
        free(res);
        free(z);
        free(v);
        return sm_fail(SEGMAMBA_E_NOMEM, "distance transform: out of memory");
    }
    for (size_t i = 0; i < nvox; i++) dist[i] = set[i] ? 0 : INFINITY;
    const size_t hw = (size_t)h * w;
    edt_axis(dist, w, 1, d, hw, h, (size_t)w, spacing[2], line, res, v, z);
    edt_axis(dist, h, (size_t)w, d, hw, w, 1, spacing[1], line, res, v, z);
    edt_axis(dist, d, hw, h, (size_t)w, w, 1, spacing[0], line, res, v, z);
    for (size_t i = 0; i < nvox; i++) dist[i] = sqrt(dist[i]);
    free(line);
    free(res);
    free(z);
    free(v);
    return SEGMAMBA_OK;
}

/* ------------------------------------------------------------------------ */
/* Surfaces and HD95 */

void sm_mask_surface(const uint8_t *mask, int d, int h, int w, uint8_t *surface)
{
    const size_t hw = (size_t)h * w;
    for (int k = 0; k < d; k++)
        for (int j = 0; j < h; j++)
            for (int i = 0; i < w; i++) {
                const size_t x = (size_t)k * hw + (size_t)j * w + i;
                surface[x] =
                    mask[x] && (k == 0 || k == d - 1 || j == 0 || j == h - 1 || i == 0 ||
                                i == w - 1 || !mask[x - hw] || !mask[x + hw] || !mask[x - w] ||
                                !mask[x + w] || !mask[x - 1] || !mask[x + 1]);
            }
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* numpy.percentile's default ("linear"): the sorted values interpolated at
 * position q (n - 1). */
static double percentile(double *x, size_t n, double q)
{
    qsort(x, n, sizeof *x, cmp_double);
    const double pos = q * (double)(n - 1);
    const size_t lo = (size_t)floor(pos), hi = lo + 1 < n ? lo + 1 : n - 1;
    const double t = pos - (double)lo;
    return x[lo] + (x[hi] - x[lo]) * t;
}

/* HD95 of two non-empty masks of a box; the box must contain both masks
 * (distances between voxels do not depend on what lies outside it). */
static sm_status hd95_box(const uint8_t *a, const uint8_t *b, int d, int h, int w,
                          const double spacing[3], double *hd95)
{
    const size_t n = (size_t)d * h * w;
    uint8_t *sa = malloc(n), *sb = malloc(n);
    double *dt = malloc(n * sizeof *dt);
    double *dists = NULL;
    sm_status st = SEGMAMBA_OK;
    if (!sa || !sb || !dt) st = sm_fail(SEGMAMBA_E_NOMEM, "HD95: out of memory");
    size_t na = 0, nb = 0;
    if (st == SEGMAMBA_OK) {
        sm_mask_surface(a, d, h, w, sa);
        sm_mask_surface(b, d, h, w, sb);
        for (size_t i = 0; i < n; i++) {
            na += sa[i] != 0;
            nb += sb[i] != 0;
        }
        dists = malloc((na + nb) * sizeof *dists);
        if (!dists) st = sm_fail(SEGMAMBA_E_NOMEM, "HD95: out of memory");
    }
    size_t m = 0;
    if (st == SEGMAMBA_OK) st = sm_distance_transform(sb, d, h, w, spacing, dt);
    if (st == SEGMAMBA_OK) {
        for (size_t i = 0; i < n; i++)
            if (sa[i]) dists[m++] = dt[i];
        st = sm_distance_transform(sa, d, h, w, spacing, dt);
    }
    if (st == SEGMAMBA_OK) {
        for (size_t i = 0; i < n; i++)
            if (sb[i]) dists[m++] = dt[i];
        *hd95 = percentile(dists, m, 0.95);
    }
    free(sa);
    free(sb);
    free(dt);
    free(dists);
    return st;
}

sm_status segmamba_score_masks(const uint8_t *pred, const uint8_t *ref, int d, int h, int w,
                               const double spacing[3], int empty_both_one,
                               segmamba_region_score *out)
{
    if (d < 1 || h < 1 || w < 1)
        return sm_fail(SEGMAMBA_E_ARG, "metrics: empty volume %dx%dx%d", w, h, d);
    for (int a = 0; a < 3; a++)
        if (!(spacing[a] > 0) || !isfinite(spacing[a]))
            return sm_fail(SEGMAMBA_E_ARG, "metrics: invalid voxel spacing %g", spacing[a]);
    int64_t np = 0, nr = 0, both = 0;
    int lo[3] = {d, h, w}, hi[3] = {-1, -1, -1};
    const size_t hw = (size_t)h * w;
    for (int k = 0; k < d; k++)
        for (int j = 0; j < h; j++)
            for (int i = 0; i < w; i++) {
                const size_t x = (size_t)k * hw + (size_t)j * w + i;
                const int p = pred[x] != 0, r = ref[x] != 0;
                np += p;
                nr += r;
                both += p & r;
                if (p | r) {
                    const int idx[3] = {k, j, i};
                    for (int a = 0; a < 3; a++) {
                        lo[a] = idx[a] < lo[a] ? idx[a] : lo[a];
                        hi[a] = idx[a] > hi[a] ? idx[a] : hi[a];
                    }
                }
            }
    out->n_pred = np;
    out->n_ref = nr;
    if (np == 0 || nr == 0) {
        const int perfect = empty_both_one && np == 0 && nr == 0;
        out->dice = perfect ? 1.0 : 0.0;
        out->hd95 = perfect ? 0.0 : SEGMAMBA_HD95_EMPTY;
        return SEGMAMBA_OK;
    }
    out->dice = 2.0 * (double)both / (double)(np + nr);

    const int bd = hi[0] - lo[0] + 1, bh = hi[1] - lo[1] + 1, bw = hi[2] - lo[2] + 1;
    const size_t bn = (size_t)bd * bh * bw;
    uint8_t *a = malloc(bn), *b = malloc(bn);
    if (!a || !b) {
        free(a);
        free(b);
        return sm_fail(SEGMAMBA_E_NOMEM, "HD95: out of memory");
    }
    for (int k = 0; k < bd; k++)
        for (int j = 0; j < bh; j++) {
            const size_t src = (size_t)(k + lo[0]) * hw + (size_t)(j + lo[1]) * w + lo[2];
            const size_t dst = ((size_t)k * bh + j) * bw;
            for (int i = 0; i < bw; i++) {
                a[dst + i] = pred[src + i] != 0;
                b[dst + i] = ref[src + i] != 0;
            }
        }
    sm_status st = hd95_box(a, b, bd, bh, bw, spacing, &out->hd95);
    free(a);
    free(b);
    return st;
}

sm_status segmamba_score_regions(const uint8_t *pred, const uint8_t *ref, int d, int h, int w,
                                 const double spacing[3], const segmamba_region *regions, int n,
                                 int empty_both_one, segmamba_region_score *out)
{
    const size_t nvox = (size_t)d * h * w;
    uint8_t *p = malloc(nvox ? nvox : 1), *r = malloc(nvox ? nvox : 1);
    sm_status st = p && r ? SEGMAMBA_OK : sm_fail(SEGMAMBA_E_NOMEM, "metrics: out of memory");
    for (int i = 0; i < n && st == SEGMAMBA_OK; i++) {
        for (size_t x = 0; x < nvox; x++) {
            p[x] = regions[i].member[pred[x]];
            r[x] = regions[i].member[ref[x]];
        }
        st = segmamba_score_masks(p, r, d, h, w, spacing, empty_both_one, &out[i]);
        if (st != SEGMAMBA_OK) sm_fail_wrap(st, "region %s", regions[i].name);
    }
    free(p);
    free(r);
    return st;
}
