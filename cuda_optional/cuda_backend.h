/* The CUDA backend: the model graph's op set (src/engine/graph.h) on device
 * memory, one file per family (cuda_conv.c, cuda_convt2.c, cuda_pointwise.c,
 * cuda_se.c, cuda_mamba.c; device, context and memory in cuda_context.c);
 * cuda_runner.c runs a model's graph with it (cuda_runner.h). Built only
 * with -Dcuda, or with -Demulate_cuda, where the same code runs on the CPU
 * against a stand-in runtime for the tests (emu/).
 *
 * Every op takes device arrays in the CPU backend's layout (channels-last,
 * voxel v's channels at p + v*ld, so a value may be a channel range of a
 * wider buffer) and computes what its CPU twin computes (src/engine/ops.h,
 * src/engine/conv.h, src/engine/mamba.h), in fp32, or with TF32 tensor-core GEMMs when
 * the context asks for them. Ops are enqueued on the context's stream and
 * run in order; only the download waits.
 *
 * How: convolutions are im2col (dilation included) + cuBLAS SGEMM in
 * bounded chunks (a 1x1 stride-1 convolution is one GEMM on the activations
 * themselves); the k2s2 transposed convolution a GEMM and a scatter; the
 * Mamba layer's in_proj, x_proj, dt_proj and out_proj cuBLAS GEMMs; norms,
 * pointwise ops, the squeeze-excitation gate, the causal conv1d + SiLU and
 * the chunked selective scan (softplus, exp, D skip and SiLU(z) gate fused)
 * kernels of kernels.cu. Scans visit tokens in any sm_order, the volume
 * orders of SegMamba-V2 included. */
#ifndef SM_CUDA_BACKEND_H
#define SM_CUDA_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "engine/conv.h"
#include "core/error.h"
#include "engine/mamba.h"
#include "engine/ops.h"
#include "engine/se.h"
#include "simd/scan.h"

/* SEGMAMBA_OK when device 0 can be used; writes "NAME, compute capability
 * X.Y, N GiB" into info (if given). Else SEGMAMBA_E_BACKEND and why. */
sm_status sm_cuda_probe(char *info, size_t cap);

/* ---- context and memory ----------------------------------------------- */

typedef struct sm_cuda_ctx sm_cuda_ctx;

/* A stream, a cuBLAS handle (TF32 tensor-core math when tf32 is set) and a
 * workspace for the ops' temporaries, on device 0. */
sm_status sm_cuda_ctx_create(int tf32, sm_cuda_ctx **out);
void sm_cuda_ctx_free(sm_cuda_ctx *ctx);

/* The most floats an op's chunked temporary (im2col rows, the transposed
 * convolution's GEMM output) may take; default 64 Mi (256 MiB). The tests
 * lower it to run many chunks on small volumes. */
void sm_cuda_ctx_set_chunk_floats(sm_cuda_ctx *ctx, size_t floats);

sm_status sm_cuda_alloc(size_t floats, float **out);
void sm_cuda_free(float *p);
/* Host to device in the context's stream order; device to host waits for
 * the stream and so for every op enqueued before. */
sm_status sm_cuda_upload(sm_cuda_ctx *ctx, float *dst, const float *src, size_t floats);
sm_status sm_cuda_download(sm_cuda_ctx *ctx, float *dst, const float *src, size_t floats);

/* ---- the op set ------------------------------------------------------------ */

/* A convolution's device copy, of any kernel size, stride, padding and
 * dilation sm_conv_create accepts. c must hold its packed weights (sm_conv
 * created with the ref or blas backend; oneDNN releases them). */
typedef struct sm_cuda_conv sm_cuda_conv;
sm_status sm_cuda_conv_upload(const sm_conv *c, sm_cuda_conv **out);
sm_status sm_cuda_conv_forward(sm_cuda_ctx *ctx, const sm_cuda_conv *c, const float *src,
                               int src_ld, int d, int h, int w, float *dst, int dst_ld);
void sm_cuda_conv_free(sm_cuda_conv *c);

typedef struct sm_cuda_convt2 sm_cuda_convt2;
/* Copies the weights sm_convt2_weights gives. */
sm_status sm_cuda_convt2_upload(const sm_convt2 *t, sm_cuda_convt2 **out);
sm_status sm_cuda_convt2_forward(sm_cuda_ctx *ctx, const sm_cuda_convt2 *t, const float *src,
                                 int src_ld, int d, int h, int w, float *dst, int dst_ld);
void sm_cuda_convt2_free(sm_cuda_convt2 *t);

sm_status sm_cuda_instance_norm(sm_cuda_ctx *ctx, const float *src, int src_ld, float *dst,
                                int dst_ld, int64_t n, int c, sm_act act);
sm_status sm_cuda_layer_norm(sm_cuda_ctx *ctx, const float *src, int src_ld, float *dst, int dst_ld,
                             int64_t n, int c, const float *weight, const float *bias);
sm_status sm_cuda_add(sm_cuda_ctx *ctx, const float *a, int lda, const float *b, int ldb,
                      float *dst, int dst_ld, int64_t n, int c, sm_act act);
sm_status sm_cuda_activate(sm_cuda_ctx *ctx, const float *src, int src_ld, float *dst, int dst_ld,
                           int64_t n, int c, sm_act act);
sm_status sm_cuda_fue(sm_cuda_ctx *ctx, const float *src, int src_ld, float *dst, int dst_ld,
                      int64_t n, int c);

/* SegMamba-V2's squeeze-excitation gate, as sm_se_forward (out may be x). */
typedef struct sm_cuda_se sm_cuda_se;
/* Copies the weights sm_se_get_weights gives. */
sm_status sm_cuda_se_upload(const sm_se *se, sm_cuda_se **out);
sm_status sm_cuda_se_forward(sm_cuda_ctx *ctx, const sm_cuda_se *se, const float *x, int x_ld,
                             float *out, int out_ld, int64_t n);
void sm_cuda_se_free(sm_cuda_se *se);

/* The Mamba layer's causal conv1d + SiLU along a sequence's order (any
 * sm_order; seq must be sm_seq_valid): w is (K, di), as
 * sm_mamba_dir.conv_wt; u is (L, di). */
sm_status sm_cuda_conv1d_silu(sm_cuda_ctx *ctx, const float *x, int64_t ldx, const float *w,
                              const float *b, int K, int di, const sm_seq *seq, float *u);

/* One direction's selective scan over channels [0, d_inner), with the CPU
 * kernel's arguments (every pointer in a device memory); chunk: positions
 * per chunk, 0 for sm_cuk_scan_default_chunk. */
sm_status sm_cuda_scan(sm_cuda_ctx *ctx, const sm_scan_args *a, int d_inner, int64_t chunk);

typedef struct sm_cuda_mamba sm_cuda_mamba;
/* N (d_state) up to SM_CUK_MAX_STATE (64). */
sm_status sm_cuda_mamba_upload(const sm_mamba *m, sm_cuda_mamba **out);
/* Scratch floats per token that sm_cuda_mamba_forward needs. */
int64_t sm_cuda_mamba_scratch_per_token(const sm_cuda_mamba *m);
/* As sm_mamba_forward on a d x h x w volume of tokens: the scans
 * sm_mamba_scans lists for the layer (v1's directions, or SegMamba-V2's
 * three orderings); out may be x; chunk as for sm_cuda_scan. */
sm_status sm_cuda_mamba_forward(sm_cuda_ctx *ctx, const sm_cuda_mamba *m, const float *x, int x_ld,
                                float *out, int out_ld, int d, int h, int w, int64_t nslices,
                                float *scratch, int64_t chunk);
void sm_cuda_mamba_free(sm_cuda_mamba *m);

#endif
