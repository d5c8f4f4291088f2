/* The CUDA norms and pointwise ops: instance and layer norm, add,
 * activation, FUE (cuda_backend.h). */
#include "cuda_optional/cuda_internal.h"

/* The kernels take these as plain ints. */
#define SAME(a, b) ((int)(a) == (int)(b))
_Static_assert(SAME(SM_CUK_NONE, SM_ACT_NONE) && SAME(SM_CUK_RELU, SM_ACT_RELU) &&
                   SAME(SM_CUK_LRELU, SM_ACT_LRELU) && SAME(SM_CUK_GELU, SM_ACT_GELU),
               "kernel activation codes follow sm_act");
#undef SAME

sm_status sm_cuda_instance_norm(sm_cuda_ctx *ctx, const float *src, int src_ld, float *dst,
                                int dst_ld, int64_t n, int c, sm_act act)
{
    if (n < 1 || c < 1) return sm_fail(SEGMAMBA_E_ARG, "CUDA instance norm: empty input");
    /* About a thousand voxels per partial sum, at most 1024 partial sums. */
    const int groups = (int)(n / 1024 < 1 ? 1 : n / 1024 > 1024 ? 1024 : n / 1024);
    float *wk;
    SM_TRY(sm_cuda_work(ctx, 2 * ((size_t)groups * c + 2 * (size_t)c), &wk));
    double *partial = (double *)wk, *mean = partial + (size_t)groups * c, *scale = mean + c;
    cudaStream_t s = ctx->stream;
    CU_TRY(sm_cuk_channel_partials(s, src, src_ld, n, c, NULL, groups, partial), "instance norm");
    CU_TRY(sm_cuk_channel_mean(s, partial, groups, c, n, mean), "instance norm");
    CU_TRY(sm_cuk_channel_partials(s, src, src_ld, n, c, mean, groups, partial), "instance norm");
    CU_TRY(sm_cuk_channel_scale(s, partial, groups, c, n, 1e-5, scale), "instance norm");
    CU_TRY(sm_cuk_normalize(s, src, src_ld, dst, dst_ld, n, c, mean, scale, (int)act),
           "instance norm");
    return SEGMAMBA_OK;
}

sm_status sm_cuda_layer_norm(sm_cuda_ctx *ctx, const float *src, int src_ld, float *dst, int dst_ld,
                             int64_t n, int c, const float *weight, const float *bias)
{
    CU_TRY(sm_cuk_layer_norm(ctx->stream, src, src_ld, dst, dst_ld, n, c, weight, bias),
           "layer norm");
    return SEGMAMBA_OK;
}

sm_status sm_cuda_add(sm_cuda_ctx *ctx, const float *a, int lda, const float *b, int ldb,
                      float *dst, int dst_ld, int64_t n, int c, sm_act act)
{
    CU_TRY(sm_cuk_add(ctx->stream, a, lda, b, ldb, dst, dst_ld, n, c, (int)act), "add");
    return SEGMAMBA_OK;
}

sm_status sm_cuda_activate(sm_cuda_ctx *ctx, const float *src, int src_ld, float *dst, int dst_ld,
                           int64_t n, int c, sm_act act)
{
    CU_TRY(sm_cuk_act(ctx->stream, src, src_ld, dst, dst_ld, n, c, (int)act), "activation");
    return SEGMAMBA_OK;
}

sm_status sm_cuda_fue(sm_cuda_ctx *ctx, const float *src, int src_ld, float *dst, int dst_ld,
                      int64_t n, int c)
{
    CU_TRY(sm_cuk_fue(ctx->stream, src, src_ld, dst, dst_ld, n, c), "FUE");
    return SEGMAMBA_OK;
}
