/* Scalar selective scan: the reference every SIMD variant is tested against. */
#include <math.h>
#include <stddef.h>

#include "scan.h"

#include "activation.h"

void sm_scan_scalar(const sm_scan_args *a, int c0, int c1, float *h)
{
    const int N = a->n_state;
    for (int64_t i = 0; i < (int64_t)(c1 - c0) * N; i++) h[i] = 0.0f;
    for (int64_t q = 0; q < a->seq.L; q++) {
        const int64_t t = sm_scan_token(&a->seq, q);
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
                for (int r = 0; r < a->dt_rank; r++)
                    d += lo[r] * a->dt_proj[(int64_t)c * a->dt_rank + r];
            }
            const float dt = sm_softplus1(d + a->delta_bias[c]);
            const float du = dt * u[c];
            const float *A = a->A + (int64_t)c * N;
            float *hc = h + (int64_t)(c - c0) * N;
            float acc = 0.0f;
            for (int n = 0; n < N; n++) {
                hc[n] = expf(dt * A[n]) * hc[n] + du * B[n];
                acc += C[n] * hc[n];
            }
            y[c] += (acc + a->D[c] * u[c]) * (z ? sm_silu1(z[c]) : 1.0f);
        }
    }
}
