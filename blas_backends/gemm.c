/* sm_sgemm: oneDNN's sgemm when oneDNN is built in, OpenBLAS otherwise or
 * when oneDNN declines the call. */
#include "gemm.h"

#include "sm_config.h"

void sm_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
              const float *b, int ldb, float beta, float *c, int ldc)
{
#if SM_HAVE_ONEDNN
    if (sm_sgemm_onednn(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)) return;
#endif
    sm_sgemm_openblas(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
