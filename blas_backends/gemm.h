/* Row-major single-precision GEMM, C = alpha * op(A) * op(B) + beta * C,
 * through OpenBLAS (the only GEMM the engine uses, so its thread count is
 * set in one place). */
#ifndef SM_GEMM_H
#define SM_GEMM_H

void sm_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
              int lda, const float *b, int ldb, float beta, float *c, int ldc);

void sm_blas_set_threads(int n);

#endif
