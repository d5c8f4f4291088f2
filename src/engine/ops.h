/* Pointwise and normalisation ops on channels-last views: n voxels (or
 * tokens) of c channels, voxel v's channels at p + v*ld. src and dst may be
 * the same view (in place). Ops that run dispatch kernels take the kernel
 * table k they run on (a model's, chosen when it was opened). */
#ifndef SM_OPS_H
#define SM_OPS_H

#include <stdint.h>

#include "engine/conv.h"
#include "core/error.h"
#include "simd/dispatch.h"

/* Time is reported per kind of work. */
typedef enum sm_op_kind {
    SM_KIND_CONV = 0,  /* 3D convolutions and transposed convolutions */
    SM_KIND_SCAN = 1,  /* the selective scan kernels */
    SM_KIND_NORM = 2,  /* instance and layer norms */
    SM_KIND_OTHER = 3, /* the Mamba layers' GEMMs and conv1d, pointwise ops, layouts */
    SM_KIND_COUNT = 4
} sm_op_kind;

double sm_now_seconds(void);

/* InstanceNorm3d without affine: per channel, biased variance over the n
 * voxels, eps 1e-5; then act. Statistics are accumulated in double. */
sm_status sm_instance_norm(const sm_kernels *k, const float *src, int src_ld, float *dst,
                           int dst_ld, int64_t n, int c, sm_act act);

/* dst = act(IN(a) + (norm_b ? IN(b) : b)) in one pass after the statistics:
 * a residual block's tail without writing the normed terms out first.
 * Equal, bit for bit, to sm_instance_norm on each term, then sm_add. dst
 * may be a or b. */
sm_status sm_instance_norm_add(const sm_kernels *k, const float *a, int lda, const float *b,
                               int ldb, int norm_b, float *dst, int dst_ld, int64_t n, int c,
                               sm_act act);

/* LayerNorm over the c channels of each token, eps 1e-5, with weight/bias. */
void sm_layer_norm(const float *src, int src_ld, float *dst, int dst_ld, int64_t n, int c,
                   const float *weight, const float *bias);

/* dst = act(a + b). */
void sm_add(const sm_kernels *k, const float *a, int lda, const float *b, int ldb, float *dst,
            int dst_ld, int64_t n, int c, sm_act act);

/* dst = act(src). */
void sm_activate(const sm_kernels *k, const float *src, int src_ld, float *dst, int dst_ld,
                 int64_t n, int c, sm_act act);

/* Feature-level uncertainty estimation (paper): per voxel m = sigmoid(mean
 * over channels), u = -m ln m, z' = z + z (1 - u). */
void sm_fue(const float *src, int src_ld, float *dst, int dst_ld, int64_t n, int c);

/* ConvTranspose3d, kernel 2, stride 2, no bias, as one GEMM per block of
 * input voxels: every input voxel feeds exactly one 2x2x2 output block. */
typedef struct sm_convt2 sm_convt2;

/* weight: PyTorch layout (cin, cout, 2, 2, 2); copied. */
sm_status sm_convt2_create(int cin, int cout, const float *weight, sm_convt2 **out);

/* src: (d, h, w) voxels; dst: (2d, 2h, 2w) voxels. */
sm_status sm_convt2_forward(const sm_convt2 *t, const float *src, int src_ld, int d, int h, int w,
                            float *dst, int dst_ld);

/* The weights the forward multiplies by, for a device backend's copy: a
 * row-major (cin, 8 cout) matrix whose column (a*4 + b*2 + c)*cout + co
 * holds PyTorch's weight[ci][co][a][b][c]; input voxel (z, y, x) times it
 * gives output voxels (2z + a, 2y + b, 2x + c). Sets *cin and *cout; the
 * array lives as long as t. There is no bias. */
const float *sm_convt2_weights(const sm_convt2 *t, int *cin, int *cout);

/* Bytes of its repacked weights. */
size_t sm_convt2_weight_bytes(const sm_convt2 *t);
void sm_convt2_free(sm_convt2 *t);

/* NCDHW <-> channels-last conversion at the API boundary. */
void sm_to_channels_last(const float *src, int c, int64_t n, float *dst, int dst_ld);
void sm_from_channels_last(const float *src, int src_ld, int c, int64_t n, float *dst);

#endif
