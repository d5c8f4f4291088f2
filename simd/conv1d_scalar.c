/* Scalar Mamba conv1d + SiLU: the reference every SIMD variant is tested
 * against (and the one for more taps than they keep). */
#include "conv1d.h"

#include "activation.h"

void sm_conv1d_silu_scalar(const sm_conv1d_args *a, int64_t t0, int64_t t1)
{
    const int c = a->c, K = a->K;
    for (int64_t t = t0; t < t1; t++) {
        const int64_t q = sm_scan_position(&a->seq, t);
        float *u = a->u + t * a->ld_u;
        for (int j = 0; j < c; j++) u[j] = a->b[j];
        for (int k = q < K - 1 ? (int)(K - 1 - q) : 0; k < K; k++) {
            const float *x = a->x + sm_scan_token(&a->seq, q - (K - 1) + k) * a->ld_x;
            const float *w = a->w + (int64_t)k * c;
            for (int j = 0; j < c; j++) u[j] += w[j] * x[j];
        }
        for (int j = 0; j < c; j++) u[j] = sm_silu1(u[j]);
    }
}
