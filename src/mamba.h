/* One MambaLayer of the SegMamba encoder with its three scan orientations
 * (forward, backward, inter-slice): out = x + out_proj(sum over directions
 * of the gated selective scan of SiLU(conv1d(in_proj(LayerNorm(x))))). */
#ifndef SM_MAMBA_H
#define SM_MAMBA_H

#include <stdint.h>

#include "error.h"
#include "simd/scan.h"

#define SM_DIRECTIONS 3

typedef struct sm_mamba_dir {
    float *conv_wt;        /* (d_conv, d_inner): conv1d.weight transposed, owned */
    const float *conv_b;   /* (d_inner) */
    const float *x_proj;   /* (R + 2N, d_inner) */
    const float *dt_proj;  /* (d_inner, R) */
    const float *dt_bias;  /* (d_inner) */
    float *A;              /* (d_inner, N) = -exp(A_log), owned */
    const float *D;        /* (d_inner) */
} sm_mamba_dir;

typedef struct sm_mamba {
    int dim, d_inner, d_state, dt_rank, d_conv;
    const float *norm_w, *norm_b; /* (dim) */
    const float *in_proj;         /* (2 d_inner, dim) */
    const float *out_proj;        /* (dim, d_inner) */
    sm_mamba_dir dir[SM_DIRECTIONS];
} sm_mamba;

/* A layer's scratch, token-major (L rows each): xz (2 d_inner); u
 * (d_inner, and at least dim: it holds the normed input before the first
 * conv1d and the out_proj result after the last scan); y, the sum of the
 * directions' outputs (d_inner); the x_proj output p (dt_rank + 2 d_state);
 * delta (d_inner), only in a layout made with_delta, else NULL. */
typedef struct sm_mamba_scratch {
    float *xz, *u, *y, *p, *delta;
} sm_mamba_scratch;

/* Floats per token of that layout. */
int64_t sm_mamba_scratch_floats(int dim, int d_inner, int d_state, int dt_rank, int with_delta);

/* The layout on scratch for L tokens. */
sm_mamba_scratch sm_mamba_scratch_split(int dim, int d_inner, int d_state, int dt_rank,
                                        int with_delta, int64_t L, float *scratch);

/* Scratch floats per token sm_mamba_forward needs, or with device set what
 * a device backend needs, which makes delta with a GEMM (the CPU's scan
 * kernels compute it themselves when they take dt_rank, simd/scan.h). */
int64_t sm_mamba_scratch_per_token(const sm_mamba *m, int device);

/* x: L tokens of dim channels (ld apart); out may equal x. nslices is S for
 * the inter-slice direction (L % S == 0, checked by the caller). scratch
 * holds L * sm_mamba_scratch_per_token(m, 0) floats. Adds the time spent in
 * each kind of work to seconds[SM_KIND_COUNT]. */
sm_status sm_mamba_forward(const sm_mamba *m, const float *x, int x_ld, float *out, int out_ld,
                           int64_t L, int64_t nslices, float *scratch, double *seconds);

/* Multiply-adds (counted as 2 flops) and scan operations per token. */
double sm_mamba_flops_per_token(const sm_mamba *m);

/* Frees the layer and its A arrays (the other weights are borrowed). */
void sm_mamba_free(sm_mamba *m);

#endif
