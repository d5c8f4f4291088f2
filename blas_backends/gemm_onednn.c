/* oneDNN's sgemm (built only with oneDNN; see gemm.h). */
#include "gemm.h"

#include <dnnl.h>

int sm_sgemm_onednn(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                    int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    /* Only invalid arguments make it fail, and OpenBLAS then reports them. */
    return dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb,
                      beta, c, ldc) == dnnl_success;
}
