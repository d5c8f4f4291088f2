/* The Winograd transforms evaluated in double for the tests (test_simd,
 * test_conv), from the matrices of simd/winograd.h. */
#ifndef SM_TEST_WINO_REF_H
#define SM_TEST_WINO_REF_H

#include <math.h>

#include "simd/winograd.h"

/* How wino_apply3 combines an entry e of the matrix with a value d. */
typedef enum wino_mode {
    WINO_SIGNED = 0, /* e d: the transform itself */
    WINO_ABS = 1,    /* |e| |d|: the magnitude first-order rounding bounds scale with */
    WINO_SQUARES = 2 /* e^2 d, for d already squared: sums of squared terms */
} wino_mode;

static inline double wino_term(double e, double d, wino_mode mode)
{
    return mode == WINO_SIGNED ? e * d : mode == WINO_ABS ? fabs(e) * fabs(d) : e * e * d;
}

/* y = M x along the three axes of an n^3 array (z, y, x order; results
 * keep the n^3 strides): rows outputs per axis, n for B^T, m for A^T. */
static inline void wino_apply3(const double (*mat)[SM_WINO_MAX_N], int rows, int n, const double *x,
                               double *y, wino_mode mode)
{
    enum { N = SM_WINO_MAX_N };
    double a[N][N][N], b[N][N][N];
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            for (int k = 0; k < rows; k++) {
                double v = 0;
                for (int q = 0; q < n; q++) v += wino_term(mat[k][q], x[(i * n + j) * n + q], mode);
                a[i][j][k] = v;
            }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < rows; j++)
            for (int k = 0; k < rows; k++) {
                double v = 0;
                for (int q = 0; q < n; q++) v += wino_term(mat[j][q], a[i][q][k], mode);
                b[i][j][k] = v;
            }
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < rows; j++)
            for (int k = 0; k < rows; k++) {
                double v = 0;
                for (int q = 0; q < n; q++) v += wino_term(mat[i][q], b[q][j][k], mode);
                y[(i * n + j) * n + k] = v;
            }
}

#endif
