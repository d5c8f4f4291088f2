#include "gemm.h"

#include <cblas.h>

#include "sm_config.h"
#if SM_HAVE_ONEDNN
#include <dnnl.h>
#endif

void openblas_set_num_threads(int num_threads);

static void sgemm_openblas(int trans_a, int trans_b, int m, int n, int k, float alpha,
                           const float *a, int lda, const float *b, int ldb, float beta, float *c,
                           int ldc)
{
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c,
                ldc);
}

void sm_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
              int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
#if SM_HAVE_ONEDNN
    /* Only invalid arguments make it fail, and OpenBLAS then reports them. */
    if (dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb,
                   beta, c, ldc) == dnnl_success)
        return;
#endif
    sgemm_openblas(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void sm_blas_set_threads(int n) { openblas_set_num_threads(n); }
