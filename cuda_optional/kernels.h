/* Launchers of the CUDA backend's kernels (kernels.cu), callable from C.
 *
 * Every array is device memory, laid out as on the CPU (channels-last,
 * voxel v's channels at p + v*ld). A launcher only enqueues work on its
 * stream and returns the launch status; a fault inside a kernel surfaces at
 * the next synchronisation.
 *
 * Each kernel gives one independent result (a value, a voxel, a token, one
 * channel's statistics, one channel's scan over one chunk) to each thread,
 * with no shared memory, barriers, atomics or warp exchanges. Correctness
 * then never depends on how threads are scheduled, and the same source runs
 * on the CPU, one thread after another, under the test emulator
 * (cuda_optional/emu/), where the tests check every kernel against the CPU
 * backend on machines without a GPU. */
#ifndef SM_CUDA_KERNELS_H
#define SM_CUDA_KERNELS_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Pointwise activations, numbered as sm_act (simd/activation.h). */
enum { SM_CUK_NONE = 0, SM_CUK_RELU = 1, SM_CUK_LRELU = 2, SM_CUK_GELU = 3 };

/* Scan orders, numbered as sm_order (simd/scan.h). */
enum { SM_CUK_FORWARD = 0, SM_CUK_BACKWARD = 1, SM_CUK_SLICE = 2, SM_CUK_HDW = 3, SM_CUK_WHD = 4 };

/* A sequence of L tokens stored in the original order and visited in an
 * order: sm_seq (simd/scan.h), whose sm_scan_token the kernels mirror. */
typedef struct sm_cuk_seq {
    int order;
    int64_t L;
    int64_t S;       /* SM_CUK_SLICE: S contiguous slices of L/S tokens */
    int64_t d, h, w; /* SM_CUK_HDW, SM_CUK_WHD: the volume, L = d h w in (D, H, W) C-order */
} sm_cuk_seq;

/* The largest Mamba state size the scan kernels hold (the official is 16). */
#define SM_CUK_MAX_STATE 64

/* dst (n voxels dst_ld apart, c channels) from src: c planes of n values. */
cudaError_t sm_cuk_to_channels_last(cudaStream_t s, const float *src, int c, int64_t n, float *dst,
                                    int dst_ld);
/* dst: c planes of n values, from src (n voxels src_ld apart). */
cudaError_t sm_cuk_from_channels_last(cudaStream_t s, const float *src, int src_ld, int c,
                                      int64_t n, float *dst);

/* A convolution's input and output extents and its cubic kernel. */
typedef struct sm_cuk_conv_geom {
    int d, h, w;                       /* input */
    int od, oh, ow;                    /* output */
    int cin, k, stride, pad, dilation; /* dilation >= 1: the spacing of the taps */
} sm_cuk_conv_geom;

/* Rows [v0, v0 + rows) of the im2col matrix, row-major with k^3*cin
 * columns: row r is output voxel v0 + r, column ((kd*k + kh)*k + kw)*cin + ci
 * the input channel ci under kernel tap (kd, kh, kw), which reads input
 * voxel (z stride - pad + kd dilation, ...), zero outside the volume. The
 * column order is that of the packed weights' rows (sm_conv). */
cudaError_t sm_cuk_im2col(cudaStream_t s, const float *src, int src_ld, sm_cuk_conv_geom g,
                          int64_t v0, int64_t rows, float *col);

/* y[v, k] = act(y[v, k] + bias[k]) for n voxels of c channels; bias may be
 * NULL. */
cudaError_t sm_cuk_bias_act(cudaStream_t s, float *y, int ld, int64_t n, int c, const float *bias,
                            int act);

/* The k2s2 transposed convolution's scatter: tmp holds, for rows input
 * voxels from v0 of an (h, w)-plane volume, 8*cout values each (column
 * kk*cout + co for output offset kk = a*4 + b*2 + c); each goes to output
 * voxel (2z + a, 2y + b, 2x + c) of the (2h, 2w)-plane output. */
cudaError_t sm_cuk_convt2_scatter(cudaStream_t s, const float *tmp, int64_t v0, int64_t rows, int h,
                                  int w, int cout, float *dst, int dst_ld);

/* Instance-norm statistics in two passes over n voxels of c channels. A
 * pass sums, per group of about n/groups voxels and per channel, x (mean
 * NULL) or (x - mean)^2 in double into partial[g*c + k]; the finishing
 * kernels add up the groups: mean[k] = sum / n, then
 * scale[k] = 1 / sqrt(sum / n + eps). */
cudaError_t sm_cuk_channel_partials(cudaStream_t s, const float *x, int ld, int64_t n, int c,
                                    const double *mean, int groups, double *partial);
cudaError_t sm_cuk_channel_mean(cudaStream_t s, const double *partial, int groups, int c, int64_t n,
                                double *mean);
cudaError_t sm_cuk_channel_scale(cudaStream_t s, const double *partial, int groups, int c,
                                 int64_t n, double eps, double *scale);
/* dst = act((src - mean[k]) * scale[k]). */
cudaError_t sm_cuk_normalize(cudaStream_t s, const float *src, int src_ld, float *dst, int dst_ld,
                             int64_t n, int c, const double *mean, const double *scale, int act);

/* dst = act(a + b); dst = act(src). dst may be either source. */
cudaError_t sm_cuk_add(cudaStream_t s, const float *a, int lda, const float *b, int ldb, float *dst,
                       int dst_ld, int64_t n, int c, int act);
cudaError_t sm_cuk_act(cudaStream_t s, const float *src, int src_ld, float *dst, int dst_ld,
                       int64_t n, int c, int act);

/* Feature-level uncertainty estimation, as sm_fue (src/engine/ops.h). */
cudaError_t sm_cuk_fue(cudaStream_t s, const float *src, int src_ld, float *dst, int dst_ld,
                       int64_t n, int c);

/* LayerNorm over each token's c channels, eps 1e-5, weight and bias. */
cudaError_t sm_cuk_layer_norm(cudaStream_t s, const float *src, int src_ld, float *dst, int dst_ld,
                              int64_t n, int c, const float *weight, const float *bias);

/* SegMamba-V2's squeeze-excitation gate (src/engine/se.c), after the
 * per-channel mean (sm_cuk_channel_partials and _mean, in double):
 * hidden[i] = ReLU(fc1_b[i] + sum_k fc1_w[i, k] mean[k]) (mean rounded to
 * float first, as on the CPU), then
 * gate[k] = sigmoid(fc2_b[k] + sum_i fc2_w[k, i] hidden[i]); the weights in
 * PyTorch's Linear layout (out, in). */
cudaError_t sm_cuk_se_hidden(cudaStream_t s, const double *mean, int c, int hidden,
                             const float *fc1_w, const float *fc1_b, float *hid);
cudaError_t sm_cuk_se_gate(cudaStream_t s, const float *hid, int c, int hidden, const float *fc2_w,
                           const float *fc2_b, float *gate);
/* dst[v, k] = src[v, k] gate[k]; dst may be src. */
cudaError_t sm_cuk_scale_channels(cudaStream_t s, const float *src, int src_ld, float *dst,
                                  int dst_ld, int64_t n, int c, const float *gate);

/* u[t] = SiLU(b + sum_k w[k] x[token(q - K + 1 + k)]) for t = token(q) in
 * the sequence's order (positions before the start contribute nothing); w
 * is (K, di), x has di channels ldx apart, u is (L, di). */
cudaError_t sm_cuk_conv1d_silu(cudaStream_t s, const float *x, int64_t ldx, const float *w,
                               const float *b, int K, int di, const sm_cuk_seq *seq, float *u);

/* One direction's selective scan over all channels, the arguments of the
 * CPU kernel's sm_scan_args (simd/scan.h): y[t, c] += (sum_n C[t,n] h[c,n]
 * + D[c] u[t,c]) * SiLU(z[t,c]) with h[c,n] = exp(dt A[c,n]) h[c,n] +
 * dt B[t,n] u[t,c] and dt = softplus(delta[t,c] + delta_bias[c]). */
typedef struct sm_cuk_scan_args {
    sm_cuk_seq seq; /* the tokens and the order they are visited in */
    int d_inner, n_state;
    const float *u;
    int64_t ld_u;
    const float *delta;
    int64_t ld_delta;
    const float *delta_bias;
    const float *A; /* (d_inner, n_state) = -exp(A_log) */
    const float *B, *C;
    int64_t ld_bc;
    const float *D;
    const float *z;
    int64_t ld_z;
    float *y;
    int64_t ld_y;
} sm_cuk_scan_args;

/* Tokens per chunk that keep both the chunks' sequential walk and the
 * carry's walk across chunks short: about sqrt(L), between 16 and 256. */
int64_t sm_cuk_scan_default_chunk(int64_t L);

/* Floats of work the scan needs: two states per chunk, channel and n. */
int64_t sm_cuk_scan_work_floats(const sm_cuk_scan_args *a, int64_t chunk);

/* The scan in chunks of chunk positions of the order: (1) each chunk, from
 * a zero state, gives its end state and the product of its decays; (2) a
 * walk over the chunks turns those into each chunk's true start state;
 * (3) each chunk rescans from its start state and adds its gated output.
 * softplus, exp, the D skip and the SiLU(z) gate are fused into (1) and (3).
 * work: sm_cuk_scan_work_floats floats. */
cudaError_t sm_cuk_scan(cudaStream_t s, const sm_cuk_scan_args *a, int64_t chunk, float *work);

#ifdef __cplusplus
}
#endif

#endif
