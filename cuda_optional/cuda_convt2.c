/* The CUDA k2 s2 transposed convolution: a GEMM and a scatter
 * (cuda_backend.h). */
#include <stdlib.h>

#include "cuda_optional/cuda_internal.h"

struct sm_cuda_convt2 {
    int cin, cout;
    float *block;
    float *weight; /* as sm_convt2_weights: (cin, 8 cout), column (a*4 + b*2 + c)*cout + co */
};

sm_status sm_cuda_convt2_upload(const sm_convt2 *t, sm_cuda_convt2 **out)
{
    *out = NULL;
    int cin, cout;
    /* The CPU op's GEMM operand is already this layout (src/engine/ops.h). */
    const float *weight = sm_convt2_weights(t, &cin, &cout);
    sm_cuda_convt2 *dt = calloc(1, sizeof *dt);
    if (!dt) return sm_fail(SEGMAMBA_E_NOMEM, "CUDA backend: out of memory");
    dt->cin = cin;
    dt->cout = cout;
    const sm_cuda_piece pieces[] = {{weight, (size_t)cin * 8 * (size_t)cout, &dt->weight}};
    sm_status st = sm_cuda_upload_pieces(pieces, 1, &dt->block);
    if (st != SEGMAMBA_OK) {
        free(dt);
        return st;
    }
    *out = dt;
    return SEGMAMBA_OK;
}

void sm_cuda_convt2_free(sm_cuda_convt2 *t)
{
    if (!t) return;
    cudaFree(t->block);
    free(t);
}

sm_status sm_cuda_convt2_forward(sm_cuda_ctx *ctx, const sm_cuda_convt2 *t, const float *src,
                                 int src_ld, int d, int h, int w, float *dst, int dst_ld)
{
    if (src_ld < t->cin || dst_ld < t->cout || d < 1 || h < 1 || w < 1)
        return sm_fail(SEGMAMBA_E_ARG, "CUDA transposed convolution: bad arguments");
    const int64_t n = (int64_t)d * h * w;
    const int cols = 8 * t->cout;
    const int64_t rows = sm_cuda_chunk_rows(ctx, n, cols);
    float *tmp;
    SM_TRY(sm_cuda_work(ctx, (size_t)(rows * cols), &tmp));
    for (int64_t v0 = 0; v0 < n; v0 += rows) {
        const int64_t r = n - v0 < rows ? n - v0 : rows;
        SM_TRY(sm_cuda_gemm(ctx, 0, r, cols, t->cin, src + v0 * src_ld, src_ld, t->weight, cols,
                            0.0f, tmp, cols));
        CU_TRY(sm_cuk_convt2_scatter(ctx->stream, tmp, v0, r, h, w, t->cout, dst, dst_ld),
               "transposed convolution scatter");
    }
    return SEGMAMBA_OK;
}
