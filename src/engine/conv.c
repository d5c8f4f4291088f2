/* 3D convolution: argument checks, weight repacking, dispatch to a backend,
 * and the plain C reference every backend is tested against. */
#include "engine/conv.h"

#include "engine/conv_internal.h"
#include "sm_config.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

int sm_conv_available(sm_conv_kind kind)
{
    switch (kind) {
    case SM_CONV_REF:
    case SM_CONV_BLAS:
    case SM_CONV_WINOGRAD: return 1;
    case SM_CONV_ONEDNN: return SM_HAVE_ONEDNN;
    }
    return 0;
}

const char *sm_conv_kind_name(sm_conv_kind kind)
{
    switch (kind) {
    case SM_CONV_REF: return "ref";
    case SM_CONV_BLAS: return "blas";
    case SM_CONV_ONEDNN: return "onednn";
    case SM_CONV_WINOGRAD: return "winograd";
    }
    return "unknown";
}

const char *sm_precision_name(sm_precision precision)
{
    switch (precision) {
    case SM_PREC_F32: return "fp32";
    case SM_PREC_BF16: return "bf16";
    }
    return "unknown";
}

int sm_conv_bf16_supported(void)
{
#if SM_HAVE_ONEDNN
    return sm_conv_onednn_bf16_supported();
#else
    return 0;
#endif
}

int sm_conv_out_size(const sm_conv_params *p, int n)
{
    /* Checked first: C division truncates toward zero, so a negative span
     * would otherwise still give one output. */
    long span = (long)n + 2L * p->pad - ((long)sm_conv_dilation(p) * (p->k - 1) + 1);
    if (span < 0) return 0;
    return (int)(span / p->stride + 1);
}

static sm_status check_params(const sm_conv_params *p)
{
    /* The bound keeps k^3 * cin * cout (the weight count) far inside size_t
     * and each GEMM dimension inside int. */
    const int limit = 1 << 16;
    if (p->cin < 1 || p->cout < 1 || p->k < 1 || p->stride < 1 || p->pad < 0 || p->cin > limit ||
        p->cout > limit || p->k > 64 || p->stride > 64 || p->dilation < 0 || p->dilation > 64)
        return sm_fail(SEGMAMBA_E_ARG,
                       "convolution: invalid parameters cin %d cout %d k %d "
                       "stride %d pad %d dilation %d",
                       p->cin, p->cout, p->k, p->stride, p->pad, p->dilation);
    /* Wider padding only adds outputs that see no input at all; refusing it
     * lets every backend assume each output window overlaps the volume. */
    const int span = sm_conv_dilation(p) * (p->k - 1) + 1;
    if (p->pad >= span)
        return sm_fail(SEGMAMBA_E_UNSUPPORTED,
                       "convolution: padding %d is not smaller than "
                       "the kernel's span %d",
                       p->pad, span);
    if (p->act != SM_ACT_NONE && p->act != SM_ACT_RELU)
        return sm_fail(SEGMAMBA_E_ARG, "convolution: unknown activation %d", (int)p->act);
    if (p->precision != SM_PREC_F32 && p->precision != SM_PREC_BF16)
        return sm_fail(SEGMAMBA_E_ARG, "convolution: unknown precision %d", (int)p->precision);
    if (p->tile != 0 && (p->tile < 2 || p->tile > 4))
        return sm_fail(SEGMAMBA_E_ARG, "convolution: Winograd tile %d is not 2, 3 or 4", p->tile);
    if (sm_conv_reduction_len(p) > INT_MAX)
        return sm_fail(SEGMAMBA_E_UNSUPPORTED, "convolution: k^3*cin = %zu is too large",
                       sm_conv_reduction_len(p));
    return SEGMAMBA_OK;
}

/* PyTorch (cout, cin, kd, kh, kw) -> (kd, kh, kw, cin, cout); see sm_conv.weight. */
static void pack_weight(const sm_conv_params *p, const float *w, float *out)
{
    const size_t taps = (size_t)p->k * p->k * p->k;
    for (size_t co = 0; co < (size_t)p->cout; co++)
        for (size_t ci = 0; ci < (size_t)p->cin; ci++)
            for (size_t t = 0; t < taps; t++)
                out[(t * p->cin + ci) * p->cout + co] = w[(co * p->cin + ci) * taps + t];
}

sm_status sm_conv_create(sm_conv_kind kind, const sm_conv_params *p, const float *weight,
                         const float *bias, sm_conv **out)
{
    *out = NULL;
    if (!p || !weight) return sm_fail(SEGMAMBA_E_ARG, "convolution: missing parameters or weights");
    /* Invalid parameters are an argument error whichever backend is built. */
    SM_TRY(check_params(p));
    if (!sm_conv_available(kind))
        return sm_fail(SEGMAMBA_E_UNSUPPORTED, "convolution backend '%s' is not built in",
                       sm_conv_kind_name(kind));
    if (p->precision == SM_PREC_BF16 && kind != SM_CONV_ONEDNN)
        return sm_fail(SEGMAMBA_E_UNSUPPORTED,
                       "convolution: bf16 runs only on the onednn "
                       "backend, not '%s'",
                       sm_conv_kind_name(kind));
    if (kind == SM_CONV_WINOGRAD &&
        (p->k != 3 || p->stride != 1 || p->pad != 1 || sm_conv_dilation(p) != 1))
        return sm_fail(SEGMAMBA_E_UNSUPPORTED,
                       "convolution: Winograd takes 3x3x3 kernels with "
                       "stride 1, padding 1 and no dilation, not k%d s%d p%d d%d",
                       p->k, p->stride, p->pad, sm_conv_dilation(p));
    if (p->precision == SM_PREC_BF16 && !sm_conv_bf16_supported())
        return sm_fail(SEGMAMBA_E_UNSUPPORTED,
                       "convolution: bf16 needs native bf16 dot products "
                       "(AVX512_BF16), which this CPU lacks or DNNL_MAX_CPU_ISA forbids");

    sm_conv *c = calloc(1, sizeof *c);
    if (!c) return sm_fail(SEGMAMBA_E_NOMEM, "convolution: out of memory");
    c->kind = kind;
    c->p = *p;
    if (!c->p.kernels) c->p.kernels = sm_kernels_get();
    size_t nweight = sm_conv_reduction_len(p) * (size_t)p->cout;
    c->weight = malloc(nweight * sizeof *c->weight);
    c->bias = bias ? malloc((size_t)p->cout * sizeof *c->bias) : NULL;
    if (!c->weight || (bias && !c->bias)) {
        sm_conv_free(c);
        return sm_fail(SEGMAMBA_E_NOMEM, "convolution: out of memory for %zu weights", nweight);
    }
    pack_weight(p, weight, c->weight);
    if (bias) memcpy(c->bias, bias, (size_t)p->cout * sizeof *c->bias);
    if (kind == SM_CONV_WINOGRAD) {
        sm_status s = sm_conv_winograd_init(c);
        if (s != SEGMAMBA_OK) {
            sm_conv_free(c);
            return s;
        }
    }

#if SM_HAVE_ONEDNN
    if (kind == SM_CONV_ONEDNN) {
        sm_status s = sm_conv_onednn_init(c);
        if (s != SEGMAMBA_OK) {
            sm_conv_free(c);
            return s;
        }
    }
#endif
    *out = c;
    return SEGMAMBA_OK;
}

sm_conv_choice sm_conv_pick(const sm_conv_params *p, sm_wino_use use, sm_conv_kind direct, int tile)
{
    const int m = sm_conv_winograd_pick(p, use, tile);
    if (m) return (sm_conv_choice){SM_CONV_WINOGRAD, m};
    if (use != SM_WINO_OFF && p->k == 2 && p->stride == 2 && p->precision == SM_PREC_F32)
        return (sm_conv_choice){SM_CONV_BLAS, 0};
    return (sm_conv_choice){direct, 0};
}

sm_conv_kind sm_conv_get_kind(const sm_conv *c) { return c->kind; }
const sm_conv_params *sm_conv_get_params(const sm_conv *c) { return &c->p; }

size_t sm_conv_weight_bytes(const sm_conv *c)
{
    if (!c) return 0;
    size_t bytes =
        (c->weight ? sm_conv_reduction_len(&c->p) * (size_t)c->p.cout : 0) * sizeof(float);
    if (c->bias) bytes += (size_t)c->p.cout * sizeof(float);
#if SM_HAVE_ONEDNN
    bytes += sm_conv_onednn_weight_bytes(c);
#endif
    return bytes + sm_conv_winograd_weight_bytes(c);
}

void sm_conv_free(sm_conv *c)
{
    if (!c) return;
#if SM_HAVE_ONEDNN
    sm_conv_onednn_release(c);
#endif
    sm_conv_winograd_release(c);
    free(c->weight);
    free(c->bias);
    free(c);
}

/* Reference: one output voxel at a time, straight from the definition, summed
 * in float like the other backends. Output voxels are independent, so they
 * are shared among threads. */
static void ref_forward(const sm_conv *c, const sm_conv_dims *g, const float *src, size_t src_ld,
                        float *dst, size_t dst_ld)
{
    const sm_conv_params *p = &c->p;
    const long nvox = (long)sm_conv_out_voxels(g);
    const size_t cin = (size_t)p->cin, cout = (size_t)p->cout;
    const int dil = sm_conv_dilation(p);
#if SM_HAVE_OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (long v = 0; v < nvox; v++) {
        const int x = (int)(v % g->ow), y = (int)(v / g->ow % g->oh), z = (int)(v / g->ow / g->oh);
        float *restrict out = dst + (size_t)v * dst_ld;
        for (size_t co = 0; co < cout; co++) out[co] = c->bias ? c->bias[co] : 0.0f;
        for (int kd = 0; kd < p->k; kd++) {
            const int iz = z * p->stride - p->pad + kd * dil;
            if (iz < 0 || iz >= g->d) continue;
            for (int kh = 0; kh < p->k; kh++) {
                const int iy = y * p->stride - p->pad + kh * dil;
                if (iy < 0 || iy >= g->h) continue;
                for (int kw = 0; kw < p->k; kw++) {
                    const int ix = x * p->stride - p->pad + kw * dil;
                    if (ix < 0 || ix >= g->w) continue;
                    const float *in = src + (((size_t)iz * g->h + iy) * g->w + ix) * src_ld;
                    const float *restrict wt =
                        c->weight + (((size_t)kd * p->k + kh) * p->k + kw) * cin * cout;
                    for (size_t ci = 0; ci < cin; ci++) {
                        const float a = in[ci];
                        for (size_t co = 0; co < cout; co++) out[co] += a * wt[ci * cout + co];
                    }
                }
            }
        }
        if (p->act == SM_ACT_RELU)
            for (size_t co = 0; co < cout; co++) out[co] = out[co] > 0.0f ? out[co] : 0.0f;
    }
}

static sm_status check_forward(const sm_conv *c, const float *src, int src_ld, int d, int h, int w,
                               const float *dst, int dst_ld, sm_conv_dims *g)
{
    const sm_conv_params *p = &c->p;
    if (!src || !dst || src_ld < p->cin || dst_ld < p->cout)
        return sm_fail(SEGMAMBA_E_ARG,
                       "convolution: bad buffers (src_ld %d for cin %d, "
                       "dst_ld %d for cout %d)",
                       src_ld, p->cin, dst_ld, p->cout);
    if (d < 1 || h < 1 || w < 1)
        return sm_fail(SEGMAMBA_E_ARG, "convolution: empty volume %dx%dx%d", d, h, w);
    *g = (sm_conv_dims){
        d, h, w, sm_conv_out_size(p, d), sm_conv_out_size(p, h), sm_conv_out_size(p, w), 0, 0};
    g->z1 = g->od;
    if (g->od < 1 || g->oh < 1 || g->ow < 1)
        return sm_fail(SEGMAMBA_E_SHAPE,
                       "convolution: %dx%dx%d volume is smaller than the "
                       "%d^3 kernel (dilation %d) with padding %d",
                       d, h, w, p->k, sm_conv_dilation(p), p->pad);
    /* Voxel counts stay below 2^31 so that they fit the GEMM's int dimensions. */
    if ((size_t)d * h * w > INT_MAX)
        return sm_fail(SEGMAMBA_E_UNSUPPORTED, "convolution: %dx%dx%d volume is too large", d, h,
                       w);
    return SEGMAMBA_OK;
}

sm_status sm_conv_forward(sm_conv *c, const float *src, int src_ld, int d, int h, int w, float *dst,
                          int dst_ld)
{
    return sm_conv_forward_ws(c, src, src_ld, d, h, w, dst, dst_ld, NULL);
}

sm_status sm_conv_forward_planes(sm_conv *c, const float *src, int src_ld, int d, int h, int w,
                                 int z0, int z1, float *dst, int dst_ld, float *work)
{
    if (!c) return sm_fail(SEGMAMBA_E_ARG, "convolution: no convolution");
    if (c->kind != SM_CONV_WINOGRAD)
        return sm_fail(SEGMAMBA_E_UNSUPPORTED,
                       "convolution: only Winograd computes a range of output planes (not %s)",
                       sm_conv_kind_name(c->kind));
    sm_conv_dims g;
    SM_TRY(check_forward(c, src, src_ld, d, h, w, dst, dst_ld, &g));
    if (z0 < 0 || z1 <= z0 || z1 > g.od)
        return sm_fail(SEGMAMBA_E_ARG, "convolution: output planes [%d, %d) outside [0, %d)", z0,
                       z1, g.od);
    g.z0 = z0;
    g.z1 = z1;
    return sm_conv_winograd_forward(c, &g, src, (size_t)src_ld, dst, (size_t)dst_ld, work);
}

size_t sm_conv_workspace_floats(const sm_conv *c)
{
    return c && c->kind == SM_CONV_WINOGRAD ? sm_conv_winograd_workspace(c) : 0;
}

sm_status sm_conv_forward_ws(sm_conv *c, const float *src, int src_ld, int d, int h, int w,
                             float *dst, int dst_ld, float *work)
{
    if (!c) return sm_fail(SEGMAMBA_E_ARG, "convolution: no convolution");
    sm_conv_dims g;
    SM_TRY(check_forward(c, src, src_ld, d, h, w, dst, dst_ld, &g));
    switch (c->kind) {
    case SM_CONV_REF:
        ref_forward(c, &g, src, (size_t)src_ld, dst, (size_t)dst_ld);
        return SEGMAMBA_OK;
    case SM_CONV_BLAS: return sm_conv_blas_forward(c, &g, src, (size_t)src_ld, dst, (size_t)dst_ld);
    case SM_CONV_WINOGRAD:
        return sm_conv_winograd_forward(c, &g, src, (size_t)src_ld, dst, (size_t)dst_ld, work);
    case SM_CONV_ONEDNN:
#if SM_HAVE_ONEDNN
        return sm_conv_onednn_forward(c, &g, src, (size_t)src_ld, dst, (size_t)dst_ld);
#else
        break;
#endif
    }
    return sm_fail(SEGMAMBA_E_UNSUPPORTED, "convolution backend %d is not built in", (int)c->kind);
}
