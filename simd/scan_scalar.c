/* Scalar selective scan: the reference every SIMD variant is tested against. */
#include <math.h>
#include <stddef.h>

#include "scan.h"

/* softplus(v) = log1p(exp(v)), and v itself above 20 as in PyTorch, where
 * exp would gain nothing and log1p(exp(v)) == v in float32 anyway. */
static inline float softplus(float v) { return v > 20.0f ? v : log1pf(expf(v)); }

static inline float silu(float v) { return v / (1.0f + expf(-v)); }

void sm_scan_scalar(const sm_scan_args *a, int c0, int c1, float *h)
{
    const int N = a->n_state;
    for (int64_t i = 0; i < (int64_t)(c1 - c0) * N; i++) h[i] = 0.0f;
    for (int64_t q = 0; q < a->L; q++) {
        const int64_t t = sm_scan_token(a->order, a->L, a->nslices, q);
        const float *u = a->u + t * a->ld_u;
        const float *dl = a->delta ? a->delta + t * a->ld_delta : NULL;
        const float *lo = dl ? NULL : a->dt_low + t * a->ld_dt_low;
        const float *B = a->B + t * a->ld_bc;
        const float *C = a->C + t * a->ld_bc;
        const float *z = a->z ? a->z + t * a->ld_z : NULL;
        float *y = a->y + t * a->ld_y;
        for (int c = c0; c < c1; c++) {
            float d = 0.0f;
            if (dl) {
                d = dl[c];
            } else {
                for (int r = 0; r < a->dt_rank; r++) d += lo[r] * a->dt_proj[(int64_t)c * a->dt_rank + r];
            }
            const float dt = softplus(d + a->delta_bias[c]);
            const float du = dt * u[c];
            const float *A = a->A + (int64_t)c * N;
            float *hc = h + (int64_t)(c - c0) * N;
            float acc = 0.0f;
            for (int n = 0; n < N; n++) {
                hc[n] = expf(dt * A[n]) * hc[n] + du * B[n];
                acc += C[n] * hc[n];
            }
            y[c] += (acc + a->D[c] * u[c]) * (z ? silu(z[c]) : 1.0f);
        }
    }
}

void sm_conv1d_silu_scalar(const sm_conv1d_args *a, int64_t t0, int64_t t1)
{
    const int c = a->c, K = a->K;
    for (int64_t t = t0; t < t1; t++) {
        const int64_t q = sm_scan_position(a->order, a->L, a->nslices, t);
        float *u = a->u + t * a->ld_u;
        for (int j = 0; j < c; j++) u[j] = a->b[j];
        for (int k = q < K - 1 ? (int)(K - 1 - q) : 0; k < K; k++) {
            const float *x = a->x + sm_scan_token(a->order, a->L, a->nslices, q - (K - 1) + k) * a->ld_x;
            const float *w = a->w + (int64_t)k * c;
            for (int j = 0; j < c; j++) u[j] += w[j] * x[j];
        }
        for (int j = 0; j < c; j++) u[j] = silu(u[j]);
    }
}

void sm_exp_scalar(const float *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = expf(x[i]);
}

void sm_gelu_scalar(const float *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

void sm_silu_scalar(const float *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = silu(x[i]);
}

double sm_fma_probe_scalar(int64_t iters, float *sink)
{
    float acc[8];
    for (int k = 0; k < 8; k++) acc[k] = 0.001f * (float)k;
    for (int64_t i = 0; i < iters; i++)
        for (int k = 0; k < 8; k++) acc[k] = fmaf(acc[k], 0.999999f, 1e-6f);
    *sink = acc[0] + acc[1] + acc[2] + acc[3] + acc[4] + acc[5] + acc[6] + acc[7];
    return 16.0 * (double)iters;
}
