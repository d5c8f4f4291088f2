/* Kernels of the Winograd 3x3x3 convolution (src/engine/conv_winograd.c).
 *
 * F(m^3, 3^3) computes an m x m x m block of outputs (a tile) from an
 * n x n x n window of the input, n = m + 2, as
 *     Y = A^T [ sum_ci (G g G^T)[co, ci] . (B^T d B)[ci] ] A
 * applied along each of the three axes: the input transform B^T turns
 * each channel of a window into n^3 points t, the weight transform G turns
 * each 3x3x3 filter into n^3 points (done once, in double, by the
 * backend), and at each point t the sum over input channels is a GEMM
 * (tiles x cin) . (cin x cout). The output transform A^T turns each output
 * channel's n^3 points back into m^3 voxels.
 *
 * Transformed tiles are stored point-major: point t of channel c of a tile
 * at v + t * tstride + c, so that the GEMM at point t reads consecutive
 * tiles' rows. Channels are vector lanes in every kernel (the activations
 * are channels-last). The scalar kernels are the reference, written from
 * the matrices; the vector kernels (winograd_template.h) use factored
 * formulas of the same matrices and agree with them to rounding. */
#ifndef SM_SIMD_WINOGRAD_H
#define SM_SIMD_WINOGRAD_H

#include <stddef.h>
#include <stdint.h>

#define SM_WINO_MAX_M 4
#define SM_WINO_MAX_N (SM_WINO_MAX_M + 2)

/* Transformed tiles and weights hold their channels in multiples of this
 * (the widest vector), so that every kernel works on whole vectors. */
#define SM_WINO_CPAD 16

/* The transform matrices of F(m, 3) (Cook-Toom with the points listed in
 * winograd_scalar.c): output transform A^T (m x n), weight transform G
 * (n x 3), input transform B^T (n x n). Entries outside m x n are zero. */
typedef struct sm_wino_matrices {
    int m, n;
    double at[SM_WINO_MAX_M][SM_WINO_MAX_N];
    double g[SM_WINO_MAX_N][3];
    double bt[SM_WINO_MAX_N][SM_WINO_MAX_N];
} sm_wino_matrices;

/* The matrices for output tile m (2, 3 or 4), NULL for any other m. */
const sm_wino_matrices *sm_wino_matrices_get(int m);

/* One tile's input window: point (i, j, k) (z, y, x order, each in
 * [0, n)) is the voxel at src + (i - lo[0]) * stride[0] + (j - lo[1]) *
 * stride[1] + (k - lo[2]) * stride[2] when lo[a] <= index < hi[a] on every
 * axis, and zero (the convolution's padding, or beyond the volume's end)
 * otherwise. src is the window's first voxel inside the volume. */
typedef struct sm_wino_window {
    const float *src;
    int64_t stride[3];
    int lo[3], hi[3];
} sm_wino_window;

/* B^T d B of channels [0, c) of one window into v + t * tstride + channel.
 * A vector kernel may also write the channels after c up to the next
 * multiple of SM_WINO_CPAD (zeros); nothing reads them. */
typedef void (*sm_wino_input_fn)(int m, const sm_wino_window *w, int c, float *v, size_t tstride);

/* One tile's outputs: voxel (i, j, k) of the tile (each in [0, m)) at
 * dst + i * stride[0] + j * stride[1] + k * stride[2]; only those with
 * i < cnt[0], j < cnt[1], k < cnt[2] lie in the volume and are written.
 * bias holds the channels rounded up to SM_WINO_CPAD (zeros for none). */
typedef struct sm_wino_tile_out {
    float *dst;
    int64_t stride[3];
    int cnt[3];
    const float *bias;
    int relu;
} sm_wino_tile_out;

/* A^T M A + bias, then ReLU when asked, of channels [0, c) of the tile's
 * points at mt + t * tstride + channel. Reads may reach channels up to the
 * next multiple of SM_WINO_CPAD; only [0, c) is written. */
typedef void (*sm_wino_output_fn)(int m, const float *mt, size_t tstride, int c,
                                  const sm_wino_tile_out *o);

/* c[r][j] = sum_k a[r][k] b[k][j] for r < rows, j < cols: a is rows x k
 * (row stride lda), b is dense k x cols, cols a multiple of
 * SM_WINO_CPAD, c dense rows x cols; c does not overlap a or b. */
typedef void (*sm_wino_gemm_fn)(int rows, int k, int cols, const float *a, size_t lda,
                                const float *b, float *c);

void sm_wino_input_scalar(int m, const sm_wino_window *w, int c, float *v, size_t tstride);
void sm_wino_input_avx2(int m, const sm_wino_window *w, int c, float *v, size_t tstride);
void sm_wino_input_avx512(int m, const sm_wino_window *w, int c, float *v, size_t tstride);
void sm_wino_input_neon(int m, const sm_wino_window *w, int c, float *v, size_t tstride);

void sm_wino_output_scalar(int m, const float *mt, size_t tstride, int c,
                           const sm_wino_tile_out *o);
void sm_wino_output_avx2(int m, const float *mt, size_t tstride, int c, const sm_wino_tile_out *o);
void sm_wino_output_avx512(int m, const float *mt, size_t tstride, int c,
                           const sm_wino_tile_out *o);
void sm_wino_output_neon(int m, const float *mt, size_t tstride, int c, const sm_wino_tile_out *o);

void sm_wino_gemm_scalar(int rows, int k, int cols, const float *a, size_t lda, const float *b,
                         float *c);
void sm_wino_gemm_avx2(int rows, int k, int cols, const float *a, size_t lda, const float *b,
                       float *c);
void sm_wino_gemm_avx512(int rows, int k, int cols, const float *a, size_t lda, const float *b,
                         float *c);
void sm_wino_gemm_neon(int rows, int k, int cols, const float *a, size_t lda, const float *b,
                       float *c);

#endif
