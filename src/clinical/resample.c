/* Resampling between voxel grids (resample.h): the cubic B-spline of
 * nnU-Net's preprocessing and the trilinear resize of logits back. */
#include "clinical/resample.h"

#include <math.h>
#include <stdlib.h>

int sm_resampled_side(int n, double from, double to)
{
    const double v = nearbyint(from / to * n); /* round half to even, like Python */
    return v < 1 ? 1 : v > (1 << 20) ? (1 << 20) : (int)v;
}

/* Extra samples on each side of a line before the spline prefilter, as
 * scipy pads for mode "nearest". */
#define SPLINE_PAD 12

/* Cubic B-spline coefficients of e[0, n) in place, mirror boundaries. */
static void bspline_prefilter(double *e, int n)
{
    if (n < 2) return;
    const double z = sqrt(3.0) - 2.0;
    for (int i = 0; i < n; i++) e[i] *= 6.0; /* (1 - z)(1 - 1/z) */
    /* Causal init for the mirror-symmetric extension (period 2n - 2). */
    const double zn = pow(z, n - 1);
    double c0 = e[0] + zn * e[n - 1], zi = z;
    for (int i = 1; i < n - 1; i++) {
        c0 += zi * (e[i] + zn * e[n - 1 - i]);
        zi *= z;
    }
    e[0] = c0 / (1.0 - zn * zn);
    for (int i = 1; i < n; i++) e[i] += z * e[i - 1];
    e[n - 1] = (z / (z * z - 1.0)) * (z * e[n - 2] + e[n - 1]);
    for (int i = n - 2; i >= 0; i--) e[i] = z * (e[i + 1] - e[i]);
}

typedef enum { RESAMPLE_CUBIC, RESAMPLE_LINEAR } resample_kind;

/* One line of n samples to m samples; tmp holds n + 2 * SPLINE_PAD doubles. */
static void resample_line(const double *s, int n, double *o, int m, resample_kind kind, double *tmp)
{
    const double scale = (double)n / m;
    if (kind == RESAMPLE_LINEAR) {
        for (int j = 0; j < m; j++) {
            double t = (j + 0.5) * scale - 0.5;
            if (t < 0) t = 0;
            int i0 = (int)t;
            if (i0 > n - 1) i0 = n - 1;
            const int i1 = i0 < n - 1 ? i0 + 1 : i0;
            const double f = t - i0;
            o[j] = (1.0 - f) * s[i0] + f * s[i1];
        }
        return;
    }
    const int ne = n + 2 * SPLINE_PAD;
    for (int i = 0; i < ne; i++) {
        int k = i - SPLINE_PAD;
        tmp[i] = s[k < 0 ? 0 : k > n - 1 ? n - 1 : k];
    }
    bspline_prefilter(tmp, ne);
    for (int j = 0; j < m; j++) {
        const double t = (j + 0.5) * scale - 0.5 + SPLINE_PAD;
        const double fl = floor(t), f = t - fl;
        const int i0 = (int)fl;
        const double w[4] = {
            (1 - f) * (1 - f) * (1 - f) / 6.0, (4.0 - 6.0 * f * f + 3.0 * f * f * f) / 6.0,
            (1.0 + 3.0 * f + 3.0 * f * f - 3.0 * f * f * f) / 6.0, f * f * f / 6.0};
        double v = 0.0;
        for (int q = 0; q < 4; q++) {
            int k = i0 - 1 + q;
            k = k < 0 ? 0 : k > ne - 1 ? ne - 1 : k;
            v += w[q] * tmp[k];
        }
        o[j] = v;
    }
}

/* Resizes axis `axis` of a (dims) volume to m samples: src -> dst. */
static sm_status resample_axis(const float *src, const int dims[3], int axis, int m,
                               resample_kind kind, float *dst)
{
    const int n = dims[axis];
    int od[3] = {dims[0], dims[1], dims[2]};
    od[axis] = m;
    size_t stride_in = 1, stride_out = 1;
    for (int a = 2; a > axis; a--) {
        stride_in *= (size_t)dims[a];
        stride_out *= (size_t)od[a];
    }
    /* Lines: every combination of the other two axes. */
    const size_t outer = axis == 0 ? 1 : (size_t)dims[0] * (axis == 2 ? dims[1] : 1);
    const size_t inner = stride_in;
    sm_status st = SEGMAMBA_OK;
#pragma omp parallel
    {
        double *buf = malloc(((size_t)n + m + n + 2 * SPLINE_PAD) * sizeof *buf);
        if (!buf) {
#pragma omp critical
            st = sm_fail(SEGMAMBA_E_NOMEM, "out of memory resampling");
        }
#pragma omp for collapse(2)
        for (size_t o = 0; o < outer; o++)
            for (size_t i = 0; i < inner; i++) {
                if (!buf) continue;
                const float *s = src + o * (size_t)n * stride_in + i;
                float *d = dst + o * (size_t)m * stride_out + i;
                double *line = buf, *res = buf + n, *tmp = buf + n + m;
                for (int k = 0; k < n; k++) line[k] = s[(size_t)k * stride_in];
                resample_line(line, n, res, m, kind, tmp);
                for (int k = 0; k < m; k++) d[(size_t)k * stride_out] = (float)res[k];
            }
        free(buf);
    }
    return st;
}

static sm_status resample(const float *src, int c, const int in[3], const int out[3],
                          resample_kind kind, float *dst)
{
    const size_t pin = (size_t)in[0] * in[1] * in[2], pout = (size_t)out[0] * out[1] * out[2];
    /* Two scratch volumes of the largest intermediate size. */
    const size_t mid = (size_t)out[0] * in[1] * in[2], mid2 = (size_t)out[0] * out[1] * in[2];
    float *t1 = malloc(mid * sizeof *t1), *t2 = malloc(mid2 * sizeof *t2);
    sm_status st = t1 && t2 ? SEGMAMBA_OK : sm_fail(SEGMAMBA_E_NOMEM, "out of memory resampling");
    for (int ch = 0; ch < c && st == SEGMAMBA_OK; ch++) {
        const float *s = src + ch * pin;
        float *d = dst + ch * pout;
        const int d1[3] = {out[0], in[1], in[2]}, d2[3] = {out[0], out[1], in[2]};
        st = resample_axis(s, in, 0, out[0], kind, t1);
        if (st == SEGMAMBA_OK) st = resample_axis(t1, d1, 1, out[1], kind, t2);
        if (st == SEGMAMBA_OK) st = resample_axis(t2, d2, 2, out[2], kind, d);
        if (st == SEGMAMBA_OK && kind == RESAMPLE_CUBIC) {
            float lo = s[0], hi = s[0];
            for (size_t i = 1; i < pin; i++) {
                if (s[i] < lo) lo = s[i];
                if (s[i] > hi) hi = s[i];
            }
            for (size_t i = 0; i < pout; i++) d[i] = d[i] < lo ? lo : d[i] > hi ? hi : d[i];
        }
    }
    free(t1);
    free(t2);
    return st;
}

sm_status sm_resample_cubic(const float *src, int c, const int in[3], const int out[3], float *dst)
{
    return resample(src, c, in, out, RESAMPLE_CUBIC, dst);
}

sm_status sm_resample_linear(const float *src, int c, const int in[3], const int out[3], float *dst)
{
    return resample(src, c, in, out, RESAMPLE_LINEAR, dst);
}
