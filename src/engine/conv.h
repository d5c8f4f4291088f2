/* 3D convolution on channels-last (D, H, W, C) float32 volumes, batch 1.
 * One interface, four backends: plain C (the reference), GEMM
 * (blas_backends/: im2col + oneDNN's sgemm or OpenBLAS), oneDNN, and
 * Winograd (3x3x3 stride 1 pad 1 only). A convolution is prepared once from its
 * PyTorch weights (repacked for the backend then) and run on any spatial
 * size; a backend may cache work that depends on the size. Sources and
 * destinations are float32 at every precision; bf16 is internal to oneDNN. */
#ifndef SM_CONV_H
#define SM_CONV_H

#include "core/error.h"
#include "simd/dispatch.h"

typedef enum sm_conv_kind {
    SM_CONV_REF = 0,
    SM_CONV_BLAS = 1,
    SM_CONV_ONEDNN = 2,
    SM_CONV_WINOGRAD = 3 /* F(m^3, 3^3), src/engine/conv_winograd.c */
} sm_conv_kind;

/* Arithmetic inside the convolution. BF16 rounds the source and the weights
 * to bfloat16 (8 significant bits) and sums their products in float; bias,
 * activation and the output stay float. Only oneDNN on a CPU with native
 * bf16 dot products runs it (sm_conv_bf16_supported); elsewhere
 * sm_conv_create refuses it rather than run float in its place. */
typedef enum sm_precision { SM_PREC_F32 = 0, SM_PREC_BF16 = 1 } sm_precision;

typedef struct sm_conv_params {
    int cin, cout;
    int k; /* cubic kernel k x k x k */
    int stride;
    int pad;    /* symmetric zero padding */
    sm_act act; /* after bias, fused where the backend can: SM_ACT_NONE or SM_ACT_RELU */
    sm_precision precision; /* zero (left out of an initialiser): float32 */
    int tile; /* Winograd output tile m: 2, 3 or 4; 0 (left out): 4. Other backends: 0 */
    /* The kernel table Winograd runs on (a model's); NULL (left out): the
     * process-wide one when the convolution is created. */
    const sm_kernels *kernels;
    int dilation; /* spacing of the taps; 0 (left out) or 1: adjacent. Winograd takes 1 only */
} sm_conv_params;

typedef struct sm_conv sm_conv;

/* The taps' spacing: dilation, 1 when left out. */
static inline int sm_conv_dilation(const sm_conv_params *p)
{
    return p->dilation > 1 ? p->dilation : 1;
}

/* How the engine chooses backends (segmamba_options.conv): one backend for
 * every layer (SM_WINO_OFF: onednn, blas or ref asked for), or the
 * per-layer choice of auto (Winograd for the 3x3x3 layers within the
 * memory rule of sm_conv_winograd_pick) or of winograd (for every 3x3x3
 * layer). */
typedef enum sm_wino_use { SM_WINO_OFF = 0, SM_WINO_AUTO = 1, SM_WINO_ALL = 2 } sm_wino_use;

typedef struct sm_conv_choice {
    sm_conv_kind kind;
    int tile; /* the Winograd tile, for SM_CONV_WINOGRAD */
} sm_conv_choice;

/* The backend for convolution p: direct (the one asked for, or under auto
 * and winograd the fastest direct one built in) unless use says otherwise.
 * Under auto and winograd, the 3x3x3 stride-1 layers go to Winograd (tile
 * as below), and the k2 s2 ones to the GEMM backend, which is about twice
 * as fast as oneDNN's direct kernel there on AVX2 and as fast on AVX-512
 * (conv_blas.c); the rest stay on direct. */
sm_conv_choice sm_conv_pick(const sm_conv_params *p, sm_wino_use use, sm_conv_kind direct,
                            int tile);

/* The Winograd output tile for a 3x3x3 stride-1 convolution p under use,
 * or 0 when it runs on a direct backend; tile, when not 0, is the tile
 * every layer under SM_WINO_ALL takes. */
int sm_conv_winograd_pick(const sm_conv_params *p, sm_wino_use use, int tile);

/* 1 when a Winograd convolution p with tile m keeps its transformed
 * weights (it then needs no workspace and can run in slabs of planes). */
int sm_conv_winograd_keeps(const sm_conv_params *p, int m);

/* What a convolution was made with (for profiles and benchmarks). */
sm_conv_kind sm_conv_get_kind(const sm_conv *c);
const sm_conv_params *sm_conv_get_params(const sm_conv *c);

/* 1 when the backend was compiled in. */
int sm_conv_available(sm_conv_kind kind);
const char *sm_conv_kind_name(sm_conv_kind kind);
const char *sm_precision_name(sm_precision precision);

/* 1 when SM_PREC_BF16 can run: oneDNN is built in and the CPU has native
 * bf16 dot products (AVX512_BF16; AMX-BF16 CPUs have it too) that oneDNN is
 * allowed to use (DNNL_MAX_CPU_ISA can forbid them). */
int sm_conv_bf16_supported(void);

/* weight: PyTorch layout (cout, cin, k, k, k); bias: cout floats or NULL.
 * Both are copied; the caller keeps ownership. SEGMAMBA_E_UNSUPPORTED for
 * SM_PREC_BF16 with another backend than oneDNN or without
 * sm_conv_bf16_supported(); the caller chooses the fallback. */
sm_status sm_conv_create(sm_conv_kind kind, const sm_conv_params *p, const float *weight,
                         const float *bias, sm_conv **out);

/* Output side along each axis: (n + 2*pad - dil*(k-1) - 1) / stride + 1. */
int sm_conv_out_size(const sm_conv_params *p, int n);

/* src: (d, h, w) voxels of cin channels, voxel v's channels at src + v*src_ld;
 * dst: the output voxels, cout channels at dst + v*dst_ld. src_ld >= cin and
 * dst_ld >= cout, so either may be one part of a wider concatenated buffer. */
sm_status sm_conv_forward(sm_conv *c, const float *src, int src_ld, int d, int h, int w, float *dst,
                          int dst_ld);

/* Floats of scratch a forward of c uses whatever the input size (a Winograd
 * layer's transformed weights when they are not kept: see
 * conv_winograd.c); 0 for none. */
size_t sm_conv_workspace_floats(const sm_conv *c);

/* sm_conv_forward with that scratch from the caller: work holds
 * sm_conv_workspace_floats(c) floats, 64-byte aligned, or is NULL (the
 * forward then allocates it and frees it). */
sm_status sm_conv_forward_ws(sm_conv *c, const float *src, int src_ld, int d, int h, int w,
                             float *dst, int dst_ld, float *work);

/* Output planes [z0, z1) of the forward of the whole d x h x w volume at
 * src, into dst (which holds those planes only: plane z0 at dst). The
 * planes are computed as the whole forward computes them, so with z0 a
 * multiple of the Winograd tile they are bit for bit the same; a graph
 * can thus run a layer in slabs of planes. Winograd only
 * (SEGMAMBA_E_UNSUPPORTED for the other backends); work as for
 * sm_conv_forward_ws (its transformed weights are made anew by each call
 * when the layer does not keep them). */
sm_status sm_conv_forward_planes(sm_conv *c, const float *src, int src_ld, int d, int h, int w,
                                 int z0, int z1, float *dst, int dst_ld, float *work);

/* The Winograd output tile of c (2, 3 or 4), 0 for the other backends. */
int sm_conv_tile(const sm_conv *c);

/* Bytes of weights c holds now, in every copy and layout (packed,
 * transformed, oneDNN's own), bias included. */
size_t sm_conv_weight_bytes(const sm_conv *c);

void sm_conv_free(sm_conv *c);

#endif
