/* The vectorised Winograd kernels (simd/winograd.h), written once over the
 * vector operations of an ISA header (vec_avx512.h, vec_avx2.h,
 * vec_neon.h), which the including file provides first, with
 * WINO_INPUT_FN, WINO_OUTPUT_FN and WINO_GEMM_FN naming the kernels and
 * WINO_GEMM_R x WINO_GEMM_K (rows x vectors of columns) the GEMM's
 * register block.
 *
 * One lane per channel. The transforms run the three axes one after the
 * other on an n^3 array of vectors (at most 216, 13.5 KiB at 16 lanes, in
 * L1) with the one-dimensional transforms written out below: the matrices
 * of winograd_scalar.c, factored so that shared partial sums are computed
 * once (B^T of F(4,3) in 16 operations instead of 26 multiply-adds).
 * Sums are grouped differently from the scalar kernels', so results agree
 * to rounding, not bit for bit. */
#include "winograd.h"

#if defined(__GNUC__)
#define WI static inline __attribute__((always_inline))
#else
#define WI static inline
#endif

/* ---- one-dimensional transforms, on n = M + 2 values --------------------- */

/* x = B^T x. */
WI void bt_line(const int M, vf *x)
{
    if (M == 2) {
        const vf r0 = V_SUB(x[2], x[0]), r1 = V_ADD(x[1], x[2]), r2 = V_SUB(x[2], x[1]),
                 r3 = V_SUB(x[3], x[1]);
        x[0] = r0, x[1] = r1, x[2] = r2, x[3] = r3;
    } else if (M == 3) {
        /* rows -2 -1 2 1 0 | 0 2 3 1 0 | 0 -2 1 1 0 | 0 -1 0 1 0 | 0 -2 -1 2 1 */
        const vf r3 = V_SUB(x[3], x[1]), p = V_ADD(x[2], x[3]);
        const vf r0 = V_FMA(V_SET1(2.0f), V_SUB(x[2], x[0]), r3);
        const vf r4 = V_FMA(V_SET1(2.0f), r3, V_SUB(x[4], x[2]));
        const vf r1 = V_FMA(V_SET1(2.0f), V_ADD(x[1], x[2]), p);
        const vf r2 = V_FMA(V_SET1(-2.0f), x[1], p);
        x[0] = r0, x[1] = r1, x[2] = r2, x[3] = r3, x[4] = r4;
    } else {
        /* rows of winograd_scalar.c's F(4,3) B^T, with a = x3 - x1, b = x4 - x2 */
        const vf a = V_SUB(x[3], x[1]), b = V_SUB(x[4], x[2]);
        const vf r3 = V_FMA(V_SET1(2.0f), a, b), r4 = V_FMA(V_SET1(-0.5f), a, b);
        const vf r0 = V_FMA(V_SET1(1.5f), a, V_FMA(V_SET1(-2.0f), x[2], V_ADD(x[0], x[4])));
        const vf r5 = V_FMA(V_SET1(1.5f), b, V_FMA(V_SET1(-2.0f), x[3], V_ADD(x[5], x[1])));
        const vf q = V_FMA(V_SET1(0.5f), V_ADD(x[2], x[3]), x[4]);
        const vf r1 = V_SUB(V_FMA(V_SET1(2.0f), x[3], q), x[1]);
        const vf r2 = V_ADD(V_FMA(V_SET1(-3.0f), x[2], q), x[1]);
        x[0] = r0, x[1] = r1, x[2] = r2, x[3] = r3, x[4] = r4, x[5] = r5;
    }
}

/* y[0..M) = A^T x. */
WI void at_line(const int M, const vf *x, vf *y)
{
    if (M == 2) {
        const vf s = V_ADD(x[1], x[2]);
        y[0] = V_ADD(x[0], s);
        y[1] = V_ADD(V_SUB(x[1], x[2]), x[3]);
    } else if (M == 3) {
        const vf s = V_ADD(x[1], x[2]), d = V_SUB(x[1], x[2]);
        y[0] = V_ADD(V_ADD(x[0], s), x[3]);
        y[1] = V_FMA(V_SET1(-2.0f), x[3], d);
        y[2] = V_ADD(V_FMA(V_SET1(4.0f), x[3], s), x[4]);
    } else {
        const vf s = V_ADD(x[1], x[2]), d = V_SUB(x[1], x[2]);
        y[0] = V_ADD(V_ADD(V_ADD(x[0], s), x[3]), x[4]);
        y[1] = V_FMA(V_SET1(-2.0f), x[4], V_FMA(V_SET1(0.5f), x[3], d));
        y[2] = V_FMA(V_SET1(4.0f), x[4], V_FMA(V_SET1(0.25f), x[3], s));
        y[3] = V_ADD(V_FMA(V_SET1(-8.0f), x[4], V_FMA(V_SET1(0.125f), x[3], d)), x[5]);
    }
}

/* ---- input transform ------------------------------------------------------ */

/* Channels [off, off + lanes) of one window, lanes <= VW. */
WI void input_vector(const int M, const sm_wino_window *w, int off, int lanes, float *v,
                     size_t tstride)
{
    enum { NMAX = SM_WINO_MAX_N };
    const int N = M + 2;
    const vf zero = V_SET1(0.0f);
    vf a[NMAX][NMAX][NMAX];
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            vf x[NMAX];
            if (i >= w->lo[0] && i < w->hi[0] && j >= w->lo[1] && j < w->hi[1]) {
                const float *row =
                    w->src + (i - w->lo[0]) * w->stride[0] + (j - w->lo[1]) * w->stride[1] + off;
                /* The next tile along x reads the M voxels after this
                 * window in each of its n^2 rows, more streams than the
                 * hardware prefetcher follows: ask for them now (48->48
                 * channels at 128^3, F(4,3), 2 threads: 236-258 ms against
                 * 275-278 on AVX-512, 267-271 against 289-304 on AVX2).
                 * The address is made as an integer: it may lie past the
                 * volume, where a prefetch is harmless but a pointer is not. */
                for (int k = 0; k < M; k++) {
                    const uintptr_t ahead = (uintptr_t)((N + k - w->lo[2]) * w->stride[2]);
                    __builtin_prefetch((const void *)((uintptr_t)row + ahead * sizeof(float)));
                }
                for (int k = 0; k < N; k++) {
                    const float *p = row + (k - w->lo[2]) * w->stride[2];
                    x[k] = k < w->lo[2] || k >= w->hi[2] ? zero
                           : lanes == VW                 ? V_LOAD(p)
                                                         : V_LOADN(p, lanes);
                }
                bt_line(M, x);
            } else {
                for (int k = 0; k < N; k++) x[k] = zero;
            }
            for (int k = 0; k < N; k++) a[i][j][k] = x[k];
        }
    for (int i = 0; i < N; i++)
        for (int k = 0; k < N; k++) {
            vf x[NMAX];
            for (int j = 0; j < N; j++) x[j] = a[i][j][k];
            bt_line(M, x);
            for (int j = 0; j < N; j++) a[i][j][k] = x[j];
        }
    for (int j = 0; j < N; j++)
        for (int k = 0; k < N; k++) {
            vf x[NMAX];
            for (int i = 0; i < N; i++) x[i] = a[i][j][k];
            bt_line(M, x);
            for (int i = 0; i < N; i++)
                V_STORE(v + (size_t)((i * N + j) * N + k) * tstride + off, x[i]);
        }
}

WI void input_tile(const int M, const sm_wino_window *w, int c, float *v, size_t tstride)
{
    int off = 0;
    for (; off + VW <= c; off += VW) input_vector(M, w, off, VW, v, tstride);
    if (off < c) input_vector(M, w, off, c - off, v, tstride);
}

void WINO_INPUT_FN(int m, const sm_wino_window *w, int c, float *v, size_t tstride)
{
    switch (m) {
    case 2: input_tile(2, w, c, v, tstride); break;
    case 3: input_tile(3, w, c, v, tstride); break;
    default: input_tile(4, w, c, v, tstride); break;
    }
}

/* ---- output transform ----------------------------------------------------- */

WI void output_vector(const int M, const float *mt, size_t tstride, int off, int lanes,
                      const sm_wino_tile_out *o)
{
    enum { NMAX = SM_WINO_MAX_N };
    const int N = M + 2;
    vf a[NMAX][NMAX][NMAX];
    for (int j = 0; j < N; j++) /* along z: n^3 -> m x n x n */
        for (int k = 0; k < N; k++) {
            vf x[NMAX], y[NMAX];
            for (int i = 0; i < N; i++)
                x[i] = V_LOAD(mt + (size_t)((i * N + j) * N + k) * tstride + off);
            at_line(M, x, y);
            for (int i = 0; i < M; i++) a[i][j][k] = y[i];
        }
    for (int i = 0; i < M; i++) /* along y: -> m x m x n */
        for (int k = 0; k < N; k++) {
            vf x[NMAX], y[NMAX];
            for (int j = 0; j < N; j++) x[j] = a[i][j][k];
            at_line(M, x, y);
            for (int j = 0; j < M; j++) a[i][j][k] = y[j];
        }
    const vf bias = V_LOAD(o->bias + off), zero = V_SET1(0.0f);
    for (int i = 0; i < M && i < o->cnt[0]; i++) /* along x, into the volume */
        for (int j = 0; j < M && j < o->cnt[1]; j++) {
            vf y[NMAX];
            at_line(M, a[i][j], y);
            float *row = o->dst + i * o->stride[0] + j * o->stride[1] + off;
            for (int k = 0; k < M && k < o->cnt[2]; k++) {
                vf r = V_ADD(y[k], bias);
                if (o->relu) r = V_MAX(r, zero);
                if (lanes == VW)
                    V_STORE(row + k * o->stride[2], r);
                else
                    V_STOREN(row + k * o->stride[2], r, lanes);
            }
        }
}

WI void output_tile(const int M, const float *mt, size_t tstride, int c, const sm_wino_tile_out *o)
{
    int off = 0;
    for (; off + VW <= c; off += VW) output_vector(M, mt, tstride, off, VW, o);
    if (off < c) output_vector(M, mt, tstride, off, c - off, o);
}

void WINO_OUTPUT_FN(int m, const float *mt, size_t tstride, int c, const sm_wino_tile_out *o)
{
    switch (m) {
    case 2: output_tile(2, mt, tstride, c, o); break;
    case 3: output_tile(3, mt, tstride, c, o); break;
    default: output_tile(4, mt, tstride, c, o); break;
    }
}

/* ---- GEMM ------------------------------------------------------------------ */

/* R rows x K vectors of c, all k terms in registers. */
WI void gemm_block(const int R, const int K, int k, const float *a, size_t lda, const float *b,
                   int cols, float *c)
{
    vf acc[WINO_GEMM_R][WINO_GEMM_K];
    for (int r = 0; r < R; r++)
        for (int j = 0; j < K; j++) acc[r][j] = V_SET1(0.0f);
    for (int q = 0; q < k; q++) {
        vf bv[WINO_GEMM_K];
        for (int j = 0; j < K; j++) bv[j] = V_LOAD(b + (size_t)q * cols + j * VW);
        for (int r = 0; r < R; r++) {
            const vf x = V_SET1(a[(size_t)r * lda + q]);
            for (int j = 0; j < K; j++) acc[r][j] = V_FMA(x, bv[j], acc[r][j]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int j = 0; j < K; j++) V_STORE(c + (size_t)r * cols + j * VW, acc[r][j]);
}

/* Every row of one panel of K vectors: blocks of WINO_GEMM_R rows, then the
 * rest as 4, 2 and 1. */
WI void gemm_panel(const int K, int rows, int k, const float *a, size_t lda, const float *b,
                   int cols, float *c)
{
    int r = 0;
    for (; r + WINO_GEMM_R <= rows; r += WINO_GEMM_R)
        gemm_block(WINO_GEMM_R, K, k, a + (size_t)r * lda, lda, b, cols, c + (size_t)r * cols);
#if WINO_GEMM_R > 4
    if (r + 4 <= rows) {
        gemm_block(4, K, k, a + (size_t)r * lda, lda, b, cols, c + (size_t)r * cols);
        r += 4;
    }
#endif
    if (r + 2 <= rows) {
        gemm_block(2, K, k, a + (size_t)r * lda, lda, b, cols, c + (size_t)r * cols);
        r += 2;
    }
    if (r < rows) gemm_block(1, K, k, a + (size_t)r * lda, lda, b, cols, c + (size_t)r * cols);
}

void WINO_GEMM_FN(int rows, int k, int cols, const float *a, size_t lda, const float *b, float *c)
{
    const int panel = WINO_GEMM_K * VW;
    int j = 0;
    for (; j + panel <= cols; j += panel)
        gemm_panel(WINO_GEMM_K, rows, k, a, lda, b + j, cols, c + j);
#if WINO_GEMM_K > 1
    /* cols is a multiple of SM_WINO_CPAD; the rest of a panel is whole vectors. */
    switch ((cols - j) / VW) {
#if WINO_GEMM_K > 2
    case 2: gemm_panel(2, rows, k, a, lda, b + j, cols, c + j); break;
#endif
    case 1: gemm_panel(1, rows, k, a, lda, b + j, cols, c + j); break;
    default: break;
    }
#endif
}
