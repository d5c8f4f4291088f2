/* The Winograd matrices and the scalar kernels: the reference every vector
 * kernel is tested against, written straight from the matrices. */
#include "winograd.h"

/* Cook-Toom F(m, 3) with the points below and infinity. The points set the
 * rounding error: for m = 4, {0, 1, -1, 1/2, -2} gives about a third of the
 * error of the usual {0, 1, -1, 2, -2} on 3D tiles (measured on random
 * data, 48 channels: 4e-6 against 1.3e-5 of the largest output), while
 * keeping every entry of A^T and B^T a short binary fraction (exact in
 * float). m = 3 uses {0, 1, -1, -2}, m = 2 {0, 1, -1}. */
static const sm_wino_matrices matrices[3] = {
    {.m = 2,
     .n = 4,
     .at = {{1, 1, 1, 0}, {0, 1, -1, 1}},
     .g = {{-1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}},
     .bt = {{-1, 0, 1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, -1, 0, 1}}},
    {.m = 3,
     .n = 5,
     .at = {{1, 1, 1, 1, 0}, {0, 1, -1, -2, 0}, {0, 1, 1, 4, 1}},
     .g = {{-1.0 / 2, 0, 0},
           {1.0 / 6, 1.0 / 6, 1.0 / 6},
           {1.0 / 2, -1.0 / 2, 1.0 / 2},
           {-1.0 / 6, 1.0 / 3, -2.0 / 3},
           {0, 0, 1}},
     .bt = {{-2, -1, 2, 1, 0},
            {0, 2, 3, 1, 0},
            {0, -2, 1, 1, 0},
            {0, -1, 0, 1, 0},
            {0, -2, -1, 2, 1}}},
    {.m = 4,
     .n = 6,
     .at = {{1, 1, 1, 1, 1, 0},
            {0, 1, -1, 0.5, -2, 0},
            {0, 1, 1, 0.25, 4, 0},
            {0, 1, -1, 0.125, -8, 1}},
     .g = {{1, 0, 0},
           {1.0 / 3, 1.0 / 3, 1.0 / 3},
           {-1.0 / 3, 1.0 / 3, -1.0 / 3},
           {-16.0 / 15, -8.0 / 15, -4.0 / 15},
           {1.0 / 15, -2.0 / 15, 4.0 / 15},
           {0, 0, 1}},
     .bt = {{1, -1.5, -2, 1.5, 1, 0},
            {0, -1, 0.5, 2.5, 1, 0},
            {0, 1, -2.5, 0.5, 1, 0},
            {0, -2, -1, 2, 1, 0},
            {0, 0.5, -1, -0.5, 1, 0},
            {0, 1, -1.5, -2, 1.5, 1}}},
};

const sm_wino_matrices *sm_wino_matrices_get(int m)
{
    return m >= 2 && m <= SM_WINO_MAX_M ? &matrices[m - 2] : NULL;
}

/* y = M x for the rows x cols matrix M, with x and y strided; terms in
 * column order, in float (the entries are exact in float). */
static void apply(const double (*mat)[SM_WINO_MAX_N], int rows, int cols, const float *x, size_t xs,
                  float *y, size_t ys)
{
    for (int i = 0; i < rows; i++) {
        float s = 0.0f;
        for (int j = 0; j < cols; j++) s += (float)mat[i][j] * x[j * xs];
        y[i * ys] = s;
    }
}

/* B^T d B along the three axes of an n^3 array (z, y, x order), in place;
 * rows = cols = n. For the output transform rows = m and the array
 * shrinks axis by axis, the strides staying those of the n^3 array. */
static void transform3(const double (*mat)[SM_WINO_MAX_N], int rows, int n, float *a)
{
    float line[SM_WINO_MAX_N];
    const size_t sz = (size_t)n * n, sy = (size_t)n;
    for (int i = 0; i < n; i++) /* along x */
        for (int j = 0; j < n; j++) {
            apply(mat, rows, n, a + i * sz + j * sy, 1, line, 1);
            for (int k = 0; k < rows; k++) a[i * sz + j * sy + k] = line[k];
        }
    for (int i = 0; i < n; i++) /* along y */
        for (int k = 0; k < rows; k++) {
            apply(mat, rows, n, a + i * sz + k, sy, line, 1);
            for (int j = 0; j < rows; j++) a[i * sz + j * sy + k] = line[j];
        }
    for (int j = 0; j < rows; j++) /* along z */
        for (int k = 0; k < rows; k++) {
            apply(mat, rows, n, a + j * sy + k, sz, line, 1);
            for (int i = 0; i < rows; i++) a[i * sz + j * sy + k] = line[i];
        }
}

void sm_wino_input_scalar(int m, const sm_wino_window *w, int c, float *v, size_t tstride)
{
    const sm_wino_matrices *t = sm_wino_matrices_get(m);
    const int n = t->n;
    float a[SM_WINO_MAX_N * SM_WINO_MAX_N * SM_WINO_MAX_N];
    for (int ch = 0; ch < c; ch++) {
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                for (int k = 0; k < n; k++) {
                    const int in = i >= w->lo[0] && i < w->hi[0] && j >= w->lo[1] && j < w->hi[1] &&
                                   k >= w->lo[2] && k < w->hi[2];
                    a[(i * n + j) * n + k] =
                        in ? w->src[(i - w->lo[0]) * w->stride[0] + (j - w->lo[1]) * w->stride[1] +
                                    (k - w->lo[2]) * w->stride[2] + ch]
                           : 0.0f;
                }
        transform3(t->bt, n, n, a);
        for (int p = 0; p < n * n * n; p++) v[(size_t)p * tstride + ch] = a[p];
    }
}

void sm_wino_output_scalar(int m, const float *mt, size_t tstride, int c, const sm_wino_tile_out *o)
{
    const sm_wino_matrices *t = sm_wino_matrices_get(m);
    const int n = t->n;
    float a[SM_WINO_MAX_N * SM_WINO_MAX_N * SM_WINO_MAX_N];
    for (int ch = 0; ch < c; ch++) {
        for (int p = 0; p < n * n * n; p++) a[p] = mt[(size_t)p * tstride + ch];
        transform3(t->at, m, n, a);
        for (int i = 0; i < o->cnt[0]; i++)
            for (int j = 0; j < o->cnt[1]; j++)
                for (int k = 0; k < o->cnt[2]; k++) {
                    float y = a[(i * n + j) * n + k] + o->bias[ch];
                    if (o->relu && !(y > 0.0f)) y = 0.0f;
                    o->dst[i * o->stride[0] + j * o->stride[1] + k * o->stride[2] + ch] = y;
                }
    }
}

void sm_wino_gemm_scalar(int rows, int k, int cols, const float *a, size_t lda, const float *b,
                         float *c)
{
    for (int r = 0; r < rows; r++) {
        float *cr = c + (size_t)r * cols;
        for (int j = 0; j < cols; j++) cr[j] = 0.0f;
        for (int q = 0; q < k; q++) {
            const float x = a[(size_t)r * lda + q];
            const float *br = b + (size_t)q * cols;
            for (int j = 0; j < cols; j++) cr[j] += x * br[j];
        }
    }
}
