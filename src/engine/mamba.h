/* One MambaLayer of the SegMamba encoder with one, two or three scan
 * orientations (forward; backward; inter-slice: bimamba types "none", "v2",
 * "v3"), or SegMamba-V2's, whose one direction scans three orderings of the
 * volume: out = x + out_proj(sum over the scans of the gated selective scan
 * of SiLU(conv1d(in_proj(LayerNorm(x))))). */
#ifndef SM_MAMBA_H
#define SM_MAMBA_H

#include <stdint.h>

#include "core/error.h"
#include "simd/dispatch.h"
#include "simd/scan.h"

/* The most directions a layer has; direction s scans in order s of
 * simd/scan.h (SM_ORDER_FORWARD, _BACKWARD, _SLICE), and a layer of n
 * directions has the first n. */
#define SM_DIRECTIONS 3

typedef struct sm_mamba_dir {
    float *conv_wt;       /* (d_conv, d_inner): conv1d.weight transposed, owned */
    const float *conv_b;  /* (d_inner) */
    const float *x_proj;  /* (R + 2N, d_inner) */
    const float *dt_proj; /* (d_inner, R) */
    const float *dt_bias; /* (d_inner) */
    float *A;             /* (d_inner, N) = -exp(A_log), owned */
    const float *D;       /* (d_inner) */
} sm_mamba_dir;

typedef struct sm_mamba {
    int dim, d_inner, d_state, dt_rank, d_conv;
    int n_dir;                    /* directions: 1, 2 or 3; dir[n_dir..] are unused */
    int orderings;                /* 1, or SM_V2_ORDERINGS: SegMamba-V2's layer, whose one
                                     (forward) direction scans three orderings of the volume
                                     (sm_mamba_scans) */
    const float *norm_w, *norm_b; /* (dim) */
    const float *in_proj;         /* (2 d_inner, dim) */
    const float *out_proj;        /* (dim, d_inner) */
    sm_mamba_dir dir[SM_DIRECTIONS];
} sm_mamba;

/* The orderings of a SegMamba-V2 Mamba layer: tokens in C-order over
 * (D, H, W), (H, D, W) and (W, H, D) (SM_ORDER_FORWARD, _HDW, _WHD). */
#define SM_V2_ORDERINGS 3

/* A layer's weights as the checkpoint holds them (PyTorch layout). */
typedef struct sm_mamba_weights {
    int n_dir;     /* directions held: 1 (forward), 2 (+ backward) or 3 (+ inter-slice) */
    int orderings; /* 0 or 1: one ordering; SM_V2_ORDERINGS (n_dir 1): SegMamba-V2's layer */
    const float *norm_w, *norm_b, *in_proj, *out_proj;
    struct {
        const float *conv_w; /* (d_inner, 1, d_conv): conv1d.weight */
        const float *conv_b, *x_proj, *dt_proj, *dt_bias;
        const float *A_log; /* (d_inner, N) */
        const float *D;
    } dir[SM_DIRECTIONS];
} sm_mamba_weights;

/* A layer of dim channels: copies conv1d's weights transposed and makes
 * A = -exp(A_log) (both owned); borrows every other weight, which must
 * outlive the layer (conv_w and A_log may be freed once this returns). */
sm_status sm_mamba_create(int dim, int d_inner, int d_state, int dt_rank, int d_conv,
                          const sm_mamba_weights *w, sm_mamba **out);

/* A layer's scratch, token-major (L rows each). Two layouts:
 * - the host's (sm_mamba_forward): x, in_proj's first half (d_inner); u
 *   (d_inner, and at least dim: it holds the normed input before the first
 *   conv1d and the out_proj result after the last scan); y, the sum of the
 *   directions' ungated outputs (d_inner); the x_proj output p (dt_rank +
 *   2 d_state); delta (d_inner) only when dt_rank is above what the scan
 *   kernels fuse. z is NULL: the gate SiLU(z) is the same for every
 *   direction in the original token order, so it multiplies the sum once,
 *   and z is made after the scans, in x's rows. That keeps d_inner floats
 *   per token fewer than holding z from the start (the largest layer's
 *   scratch is what sets the peak memory of a 128^3 forward).
 * - a device's (device = 1): in_proj's output xz (2 d_inner: x then z in
 *   each row), u, y, p and delta, made by a GEMM.
 * x and z rows are ld_xz floats apart. */
typedef struct sm_mamba_scratch {
    float *x, *z;
    int64_t ld_xz;
    float *u, *y, *p, *delta;
} sm_mamba_scratch;

/* Floats per token of a layout. */
int64_t sm_mamba_scratch_floats(int dim, int d_inner, int d_state, int dt_rank, int device);

/* The layout on scratch for L tokens. */
sm_mamba_scratch sm_mamba_scratch_split(int dim, int d_inner, int d_state, int dt_rank, int device,
                                        int64_t L, float *scratch);

/* Scratch floats per token sm_mamba_forward needs, or with device set what
 * a device backend needs. */
int64_t sm_mamba_scratch_per_token(const sm_mamba *m, int device);

/* The scans a layer makes over a d x h x w volume of tokens (in (D, H, W)
 * C-order; nslices, S, for the inter-slice order): each one's sequence (the
 * token order it visits) and the direction whose weights it uses. v1's
 * layers make one scan per direction (forward; backward; inter-slice);
 * SegMamba-V2's make three with the forward direction's weights, over the
 * (D, H, W), (H, D, W) and (W, H, D) orderings. Returns their number. */
int sm_mamba_scans(const sm_mamba *m, int64_t d, int64_t h, int64_t w, int64_t nslices,
                   sm_seq seq[SM_DIRECTIONS], int dir[SM_DIRECTIONS]);

/* x: the d x h x w tokens of dim channels (ld apart), channels last; out
 * may equal x. out = x + out_proj(the sum over the layer's scans
 * (sm_mamba_scans) of the scan of SiLU(conv1d(in_proj(LayerNorm(x)))),
 * gated by SiLU(z)); every scan reads and writes in the original token
 * order, visiting the tokens in its own (no copy of the volume is made).
 * nslices must divide d h w when the layer scans the inter-slice order
 * (checked by the caller; E_ARG otherwise). scratch holds d h w *
 * sm_mamba_scratch_per_token(m, 0) floats. The conv1d, scan and gate run on
 * kernel table k. Adds the time spent in each kind of work to
 * seconds[SM_KIND_COUNT]. */
sm_status sm_mamba_forward(const sm_mamba *m, const sm_kernels *k, const float *x, int x_ld,
                           float *out, int out_ld, int d, int h, int w, int64_t nslices,
                           float *scratch, double *seconds);

/* Multiply-adds (counted as 2 flops) and scan operations per token. */
double sm_mamba_flops_per_token(const sm_mamba *m);

/* Bytes of the weights the layer owns (A and the conv1d copies; the
 * borrowed ones stay the tensor store's). */
size_t sm_mamba_weight_bytes(const sm_mamba *m);

/* Frees the layer, its A arrays and conv1d copies (the other weights are
 * borrowed). */
void sm_mamba_free(sm_mamba *m);

#endif
