/* OpenBLAS's sgemm (see gemm.h), and its thread count. */
#include "gemm.h"

#include <cblas.h>

void openblas_set_num_threads(int num_threads);

void sm_sgemm_openblas(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                       int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void sm_blas_set_threads(int n) { openblas_set_num_threads(n); }
