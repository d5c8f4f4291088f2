/* The CUDA convolution: im2col (dilation included) + cuBLAS SGEMM in
 * bounded chunks; a 1x1 stride-1 convolution is one GEMM on the
 * activations themselves (cuda_backend.h). */
#include <stdlib.h>

#include "engine/conv_internal.h"
#include "cuda_optional/cuda_internal.h"

struct sm_cuda_conv {
    sm_conv_params p;
    float *block;
    float *weight; /* (k^3 cin, cout), rows in im2col column order */
    float *bias;   /* cout, or NULL */
};

sm_status sm_cuda_conv_upload(const sm_conv *c, sm_cuda_conv **out)
{
    *out = NULL;
    if (!c->weight)
        return sm_fail(SEGMAMBA_E_BACKEND,
                       "CUDA backend: the convolution's packed weights were "
                       "released by its %s backend",
                       sm_conv_kind_name(c->kind));
    if (c->p.precision != SM_PREC_F32)
        return sm_fail(SEGMAMBA_E_UNSUPPORTED,
                       "CUDA backend: convolutions run in fp32 or TF32, "
                       "not %s",
                       sm_precision_name(c->p.precision));
    sm_cuda_conv *dc = calloc(1, sizeof *dc);
    if (!dc) return sm_fail(SEGMAMBA_E_NOMEM, "CUDA backend: out of memory");
    dc->p = c->p;
    const sm_cuda_piece pieces[] = {
        {c->weight, sm_conv_reduction_len(&c->p) * (size_t)c->p.cout, &dc->weight},
        {c->bias, (size_t)c->p.cout, &dc->bias},
    };
    sm_status st = sm_cuda_upload_pieces(pieces, 2, &dc->block);
    if (st != SEGMAMBA_OK) {
        free(dc);
        return st;
    }
    *out = dc;
    return SEGMAMBA_OK;
}

void sm_cuda_conv_free(sm_cuda_conv *c)
{
    if (!c) return;
    cudaFree(c->block);
    free(c);
}

sm_status sm_cuda_conv_forward(sm_cuda_ctx *ctx, const sm_cuda_conv *c, const float *src,
                               int src_ld, int d, int h, int w, float *dst, int dst_ld)
{
    const sm_conv_params *p = &c->p;
    if (src_ld < p->cin || dst_ld < p->cout || d < 1 || h < 1 || w < 1)
        return sm_fail(SEGMAMBA_E_ARG,
                       "CUDA convolution: bad arguments (src_ld %d for cin %d, "
                       "dst_ld %d for cout %d, %dx%dx%d)",
                       src_ld, p->cin, dst_ld, p->cout, d, h, w);
    const sm_cuk_conv_geom g = {.d = d,
                                .h = h,
                                .w = w,
                                .od = sm_conv_out_size(p, d),
                                .oh = sm_conv_out_size(p, h),
                                .ow = sm_conv_out_size(p, w),
                                .cin = p->cin,
                                .k = p->k,
                                .stride = p->stride,
                                .pad = p->pad,
                                .dilation = sm_conv_dilation(p)};
    if (g.od < 1 || g.oh < 1 || g.ow < 1)
        return sm_fail(SEGMAMBA_E_SHAPE,
                       "CUDA convolution: %dx%dx%d volume is smaller than the "
                       "%d^3 kernel (dilation %d) with padding %d",
                       d, h, w, p->k, g.dilation, p->pad);
    const int64_t nvox = (int64_t)g.od * g.oh * g.ow;
    const int K = (int)sm_conv_reduction_len(p); /* <= INT_MAX: sm_conv_create checked */
    if (p->k == 1 && p->stride == 1 && p->pad == 0) {
        /* The activations are already the GEMM's left operand. */
        SM_TRY(sm_cuda_gemm(ctx, 0, nvox, p->cout, K, src, src_ld, c->weight, p->cout, 0.0f, dst,
                            dst_ld));
    } else {
        const int64_t rows = sm_cuda_chunk_rows(ctx, nvox, K);
        float *col;
        SM_TRY(sm_cuda_work(ctx, (size_t)(rows * K), &col));
        for (int64_t v0 = 0; v0 < nvox; v0 += rows) {
            const int64_t r = nvox - v0 < rows ? nvox - v0 : rows;
            CU_TRY(sm_cuk_im2col(ctx->stream, src, src_ld, g, v0, r, col), "im2col");
            SM_TRY(sm_cuda_gemm(ctx, 0, r, p->cout, K, col, K, c->weight, p->cout, 0.0f,
                                dst + v0 * dst_ld, dst_ld));
        }
    }
    if (c->bias || p->act == SM_ACT_RELU)
        CU_TRY(sm_cuk_bias_act(ctx->stream, dst, dst_ld, nvox, p->cout, c->bias,
                               p->act == SM_ACT_RELU ? SM_CUK_RELU : SM_CUK_NONE),
               "convolution bias");
    return SEGMAMBA_OK;
}
