/* The causal depthwise conv1d + SiLU that makes a Mamba direction's u (the
 * scan's input, simd/scan.h), along the direction's token order. */
#ifndef SM_SIMD_CONV1D_H
#define SM_SIMD_CONV1D_H

#include <stdint.h>

#include "scan.h" /* sm_seq, sm_scan_token, sm_scan_position, sm_seq_runs */

/* For position q with token t = token(q),
 *   u[t, j] = SiLU(b[j] + sum_k w[k, j] x[token(q - K + 1 + k), j]),
 * the taps in increasing k, positions before 0 contributing nothing. */
typedef struct sm_conv1d_args {
    sm_seq seq;     /* the tokens and their order */
    int c, K;       /* channels, taps */
    const float *x; /* (L, ld_x) */
    int64_t ld_x;
    const float *w; /* (K, c): tap k of channel j at w[k*c + j] */
    const float *b; /* c */
    float *u;       /* (L, ld_u) */
    int64_t ld_u;
} sm_conv1d_args;

/* Writes the u rows of tokens [t0, t1) (in memory order, whatever the
 * order: the inter-slice and volume orders' windows then slide along K
 * streams of rows instead of jumping a slice's length at every position). */
typedef void (*sm_conv1d_silu_fn)(const sm_conv1d_args *a, int64_t t0, int64_t t1);

void sm_conv1d_silu_scalar(const sm_conv1d_args *a, int64_t t0, int64_t t1);
void sm_conv1d_silu_avx2(const sm_conv1d_args *a, int64_t t0, int64_t t1);
void sm_conv1d_silu_avx512(const sm_conv1d_args *a, int64_t t0, int64_t t1);
void sm_conv1d_silu_neon(const sm_conv1d_args *a, int64_t t0, int64_t t1);

#endif
