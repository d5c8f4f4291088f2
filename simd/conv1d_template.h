/* The vectorised conv1d + SiLU (simd/conv1d.h), written once over the
 * vector operations of an ISA header, which the including file
 * (x86/conv1d_avx512.c, x86/conv1d_avx2.c, arm/conv1d_neon.c) provides
 * first, with CONV1D_FN naming the kernel. */
#include <stdint.h>

#include "activation.h"
#include "activation_vec.h"
#include "conv1d.h"

/* Taps the vector conv1d keeps the tokens of; more go to the scalar kernel. */
#define SM_CONV1D_MAX_K 16

/* The conv1d + SiLU of conv1d.h. Channels in vectors, the taps summed in the
 * scalar kernel's order with separate multiplies and adds (so the sums are
 * the scalar kernel's, bit for bit), then this level's SiLU; channels past
 * the last full vector through the scalar SiLU. Going from token t to t + 1
 * inside one of the order's runs (sm_seq_runs) moves every tap's token by
 * one too, once the run's first tokens are past and while the window has
 * no tap before the start; the window's tokens are recomputed only where
 * that fails. */
void CONV1D_FN(const sm_conv1d_args *a, int64_t t0, int64_t t1)
{
    const int c = a->c, K = a->K, cv = c / VW * VW;
    if (K > SM_CONV1D_MAX_K || t1 <= t0) {
        sm_conv1d_silu_scalar(a, t0, t1);
        return;
    }
    const sm_seq_run run = sm_seq_runs(&a->seq, K);
    int64_t j = t0 % run.len, q = sm_scan_position(&a->seq, t0); /* t = r*len + j */
    int64_t tok[SM_CONV1D_MAX_K]; /* a tap's token, -1 before the start */
    int k0 = 0;                   /* the first tap in the sequence */
    for (int64_t t = t0; t < t1; t++) {
        if (t == t0 || j < run.first || k0 > 0 || q < K - 1) {
            k0 = q < K - 1 ? (int)(K - 1 - q) : 0;
            for (int k = 0; k < K; k++)
                tok[k] = k < k0 ? -1 : sm_scan_token(&a->seq, q - (K - 1) + k);
        } else {
            for (int k = 0; k < K; k++) tok[k]++;
        }
        float *u = a->u + t * a->ld_u;
        for (int i = 0; i < cv; i += VW) {
            vf acc = V_LOAD(a->b + i);
            for (int k = k0; k < K; k++)
                acc = V_ADD(acc, V_MUL(V_LOAD(a->w + (int64_t)k * c + i),
                                       V_LOAD(a->x + tok[k] * a->ld_x + i)));
            V_STORE(u + i, v_silu(acc));
        }
        for (int i = cv; i < c; i++) {
            float acc = a->b[i];
            for (int k = k0; k < K; k++)
                acc += a->w[(int64_t)k * c + i] * a->x[tok[k] * a->ld_x + i];
            sm_silu_scalar(&acc, u + i, 1);
        }
        if (++j == run.len) {
            j = 0;
            if (t + 1 < t1) q = sm_scan_position(&a->seq, t + 1);
        } else {
            q += run.step;
        }
    }
}
