/* Row-major single-precision GEMM, C = alpha * op(A) * op(B) + beta * C.
 *
 * sm_sgemm is the engine's GEMM (Mamba projections, transposed
 * convolutions, the GEMM convolution backend): oneDNN's sgemm when oneDNN
 * is built in, which runs on the same OpenMP threads as everything else and
 * picks its AVX-512/AVX2 kernels itself; OpenBLAS otherwise. */
#ifndef SM_GEMM_H
#define SM_GEMM_H

void sm_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
              const float *b, int ldb, float beta, float *c, int ldc);

void sm_blas_set_threads(int n);

/* The two GEMMs sm_sgemm (gemm.c) chooses between, same arguments:
 * OpenBLAS's (gemm_openblas.c), and oneDNN's (gemm_onednn.c, built only
 * with oneDNN), which returns 0 when it declines the call. */
void sm_sgemm_openblas(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                       int lda, const float *b, int ldb, float beta, float *c, int ldc);
int sm_sgemm_onednn(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                    int lda, const float *b, int ldb, float beta, float *c, int ldc);

#endif
