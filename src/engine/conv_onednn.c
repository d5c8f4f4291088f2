/* 3D convolution through oneDNN (C API, fp32 or bf16 inference).
 *
 * A primitive is made for one spatial size and the caller's strides and kept
 * until a call brings another (the network runs each convolution at one
 * size, so one cached plan is enough). Weights are given to oneDNN with
 * format `any` and reordered once into the layout the primitive chose; that
 * copy is kept and redone only when a new primitive wants another layout.
 *
 * Source and destination are dense channels-last (ndhwc) for the primitive.
 * A caller's view with a row stride wider than its channels (one part of a
 * concatenated buffer) is copied to or from a dense temporary by a reorder:
 * oneDNN 2.6 accepts such strided descriptors, but only its slow reference
 * convolution ("ref:any") takes them, while dense ndhwc gets the JIT kernels
 * ("brgconv:avx512_core" on AVX-512 machines).
 *
 * In bf16 the primitive takes a bf16 source and bf16 weights and writes a
 * float destination (oneDNN sums in float), with a float bias. The caller's
 * float source is converted by the same kind of reorder into a dense bf16
 * temporary made for the call; the weights are reordered straight from
 * float into the bf16 layout the primitive chose. */
#include "engine/conv_internal.h"

#include <dnnl.h>
#include <dnnl_debug.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#if defined(__GLIBC__)
#include <malloc.h> /* malloc_trim */
#endif

/* One CPU engine for the process, made on first use and kept to the end,
 * as oneDNN keeps its own global state; threads may share an engine. A
 * stream they may not: each thread that runs convolutions gets its own,
 * made on its first use and destroyed when the thread ends. */
static dnnl_engine_t engine;
static dnnl_status_t engine_status;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;
static pthread_key_t stream_key;

static void stream_free(void *s) { dnnl_stream_destroy(s); }

static void engine_init(void)
{
    engine_status = dnnl_engine_create(&engine, dnnl_cpu, 0);
    if (engine_status == dnnl_success && pthread_key_create(&stream_key, stream_free) != 0)
        engine_status = dnnl_out_of_memory;
}

/* The calling thread's stream. */
static dnnl_status_t thread_stream(dnnl_stream_t *out)
{
    dnnl_stream_t s = pthread_getspecific(stream_key);
    if (!s) {
        const dnnl_status_t st = dnnl_stream_create(&s, engine, dnnl_stream_default_flags);
        if (st != dnnl_success) return st;
        if (pthread_setspecific(stream_key, s) != 0) {
            dnnl_stream_destroy(s);
            return dnnl_out_of_memory;
        }
    }
    *out = s;
    return dnnl_success;
}

/* Everything that depends on the call's size and strides. */
typedef struct onednn_plan {
    int d, h, w;
    size_t src_ld, dst_ld;
    dnnl_memory_desc_t src_view, dst_view;   /* the caller's buffers */
    dnnl_memory_desc_t src_dense, dst_dense; /* src_dense is bf16 in bf16 mode */
    dnnl_primitive_t conv;
    /* src_view -> src_dense, NULL when src is dense float and so is taken as it is */
    dnnl_primitive_t src_pack;
    dnnl_primitive_t dst_unpack; /* dst_dense -> dst_view, NULL when dst is dense */
} onednn_plan;

struct sm_conv_onednn {
    onednn_plan plan;          /* zeroed (d == 0) when there is none */
    dnnl_memory_t user_weight; /* sm_conv.weight as it is, until the first reorder */
    dnnl_memory_t weight;      /* reordered for plan.conv, or NULL */
    dnnl_memory_t bias;        /* sm_conv.bias, or NULL */
};

static sm_status onednn_fail(const sm_conv *c, const char *what, dnnl_status_t st)
{
    const sm_status code = st == dnnl_out_of_memory ? SEGMAMBA_E_NOMEM : SEGMAMBA_E_BACKEND;
    return sm_fail(code, "oneDNN convolution %dx%dx%d (%d -> %d channels): %s: %s", c->p.k, c->p.k,
                   c->p.k, c->p.cin, c->p.cout, what, dnnl_status2str(st));
}

/* Channels-last volume, voxel stride ld >= channels. */
static dnnl_status_t volume_md(dnnl_memory_desc_t *md, int channels, int d, int h, int w, size_t ld,
                               dnnl_data_type_t type)
{
    const dnnl_dim_t row = (dnnl_dim_t)ld * w, plane = row * h;
    const dnnl_dims_t dims = {1, channels, d, h, w};
    const dnnl_dims_t strides = {plane * d, 1, plane, row, (dnnl_dim_t)ld};
    return dnnl_memory_desc_init_by_strides(md, 5, dims, type, strides);
}

/* Logical dims (cout, cin, kd, kh, kw) over the (kd, kh, kw, cin, cout) packing. */
static dnnl_status_t user_weight_md(const sm_conv_params *p, dnnl_memory_desc_t *md)
{
    const dnnl_dim_t k = p->k, cin = p->cin, cout = p->cout;
    const dnnl_dims_t dims = {cout, cin, k, k, k};
    const dnnl_dims_t strides = {1, cout, k * k * cin * cout, k * cin * cout, cin * cout};
    return dnnl_memory_desc_init_by_strides(md, 5, dims, dnnl_f32, strides);
}

static dnnl_status_t reorder_primitive(const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                                       dnnl_primitive_t *out)
{
    dnnl_primitive_desc_t pd;
    dnnl_status_t st = dnnl_reorder_primitive_desc_create(&pd, from, engine, to, engine, NULL);
    if (st != dnnl_success) return st;
    st = dnnl_primitive_create(out, pd);
    dnnl_primitive_desc_destroy(pd);
    return st;
}

static dnnl_status_t run_reorder(dnnl_stream_t stream, dnnl_primitive_t r, dnnl_memory_t from,
                                 dnnl_memory_t to)
{
    const dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    return dnnl_primitive_execute(r, stream, 2, args);
}

static dnnl_data_type_t operand_type(const sm_conv_params *p)
{
    return p->precision == SM_PREC_BF16 ? dnnl_bf16 : dnnl_f32;
}

static dnnl_status_t conv_primitive_desc(const sm_conv *c, const onednn_plan *pl,
                                         dnnl_primitive_desc_t *pd)
{
    const sm_conv_params *p = &c->p;
    dnnl_memory_desc_t weight_md, bias_md;
    const dnnl_dims_t weight_dims = {p->cout, p->cin, p->k, p->k, p->k};
    const dnnl_dims_t bias_dims = {p->cout};
    const dnnl_dims_t strides = {p->stride, p->stride, p->stride};
    const dnnl_dims_t pads = {p->pad, p->pad, p->pad};
    /* oneDNN counts the gaps between taps: 0 for adjacent ones. */
    const dnnl_dim_t gap = sm_conv_dilation(p) - 1;
    const dnnl_dims_t dilates = {gap, gap, gap};
    dnnl_status_t st;
    if ((st = dnnl_memory_desc_init_by_tag(&weight_md, 5, weight_dims, operand_type(p),
                                           dnnl_format_tag_any)) != dnnl_success ||
        (st = dnnl_memory_desc_init_by_tag(&bias_md, 1, bias_dims, dnnl_f32, dnnl_x)) !=
            dnnl_success)
        return st;
    dnnl_convolution_desc_t desc;
    st = dnnl_dilated_convolution_forward_desc_init(
        &desc, dnnl_forward_inference, dnnl_convolution_direct, &pl->src_dense, &weight_md,
        c->bias ? &bias_md : NULL, &pl->dst_dense, strides, dilates, pads, pads);
    if (st != dnnl_success) return st;

    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    if (p->act == SM_ACT_RELU &&
        ((st = dnnl_primitive_attr_create(&attr)) != dnnl_success ||
         (st = dnnl_post_ops_create(&ops)) != dnnl_success ||
         (st = dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f)) !=
             dnnl_success ||
         (st = dnnl_primitive_attr_set_post_ops(attr, ops)) != dnnl_success))
        goto done;
    st = dnnl_primitive_desc_create(pd, &desc, attr, engine, NULL);
done:
    if (ops) dnnl_post_ops_destroy(ops);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return st;
}

/* Makes s->weight hold the weights in the layout conv_pd wants, reusing the
 * copy already there when the layout is the same. The first fit reorders
 * from sm_conv.weight and then frees it, so the weights are held once; a
 * later change of layout reorders from the previous oneDNN copy. */
static dnnl_status_t fit_weights(sm_conv *c, const_dnnl_primitive_desc_t conv_pd)
{
    struct sm_conv_onednn *s = c->onednn;
    const dnnl_memory_desc_t *want =
        dnnl_primitive_desc_query_md(conv_pd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *have;
    if (!want) return dnnl_runtime_error;
    if (s->weight && dnnl_memory_get_memory_desc(s->weight, &have) == dnnl_success &&
        dnnl_memory_desc_equal(have, want))
        return dnnl_success;

    dnnl_memory_t source = s->weight ? s->weight : s->user_weight;
    const dnnl_memory_desc_t *from;
    dnnl_memory_t weight = NULL;
    dnnl_primitive_t r = NULL;
    dnnl_stream_t stream;
    dnnl_status_t st;
    if ((st = thread_stream(&stream)) != dnnl_success ||
        (st = dnnl_memory_get_memory_desc(source, &from)) != dnnl_success ||
        (st = dnnl_memory_create(&weight, want, engine, DNNL_MEMORY_ALLOCATE)) != dnnl_success ||
        (st = reorder_primitive(from, want, &r)) != dnnl_success ||
        (st = run_reorder(stream, r, source, weight)) != dnnl_success ||
        (st = dnnl_stream_wait(stream)) != dnnl_success) {
        if (weight) dnnl_memory_destroy(weight);
    } else {
        if (s->weight) dnnl_memory_destroy(s->weight);
        s->weight = weight;
        if (s->user_weight) {
            dnnl_memory_destroy(s->user_weight);
            s->user_weight = NULL;
            free(c->weight);
            c->weight = NULL;
#if defined(__GLIBC__)
            /* glibc keeps freed blocks below its mmap threshold, which it
             * raises as large blocks are freed; the packed copies freed
             * here stayed resident (about 40 MiB at 128^3) through the
             * forward whose peak they add to. */
            malloc_trim(0);
#endif
        }
    }
    if (r) dnnl_primitive_destroy(r);
    return st;
}

static void plan_clear(onednn_plan *pl)
{
    if (pl->conv) dnnl_primitive_destroy(pl->conv);
    if (pl->src_pack) dnnl_primitive_destroy(pl->src_pack);
    if (pl->dst_unpack) dnnl_primitive_destroy(pl->dst_unpack);
    memset(pl, 0, sizeof *pl);
}

static int plan_matches(const onednn_plan *pl, const sm_conv_dims *g, size_t src_ld, size_t dst_ld)
{
    return pl->d == g->d && pl->h == g->h && pl->w == g->w && pl->src_ld == src_ld &&
           pl->dst_ld == dst_ld;
}

/* Replaces s->plan with one for this call; on failure leaves none. */
static dnnl_status_t plan_build(sm_conv *c, const sm_conv_dims *g, size_t src_ld, size_t dst_ld)
{
    struct sm_conv_onednn *s = c->onednn;
    onednn_plan *pl = &s->plan;
    const int cin = c->p.cin, cout = c->p.cout;
    const dnnl_data_type_t src_type = operand_type(&c->p);
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st;
    plan_clear(pl);
    if ((st = volume_md(&pl->src_view, cin, g->d, g->h, g->w, src_ld, dnnl_f32)) != dnnl_success ||
        (st = volume_md(&pl->src_dense, cin, g->d, g->h, g->w, (size_t)cin, src_type)) !=
            dnnl_success ||
        (st = volume_md(&pl->dst_view, cout, g->od, g->oh, g->ow, dst_ld, dnnl_f32)) !=
            dnnl_success ||
        (st = volume_md(&pl->dst_dense, cout, g->od, g->oh, g->ow, (size_t)cout, dnnl_f32)) !=
            dnnl_success ||
        (st = conv_primitive_desc(c, pl, &pd)) != dnnl_success ||
        (st = dnnl_primitive_create(&pl->conv, pd)) != dnnl_success ||
        (st = fit_weights(c, pd)) != dnnl_success)
        goto done;
    if ((src_ld != (size_t)cin || src_type != dnnl_f32) &&
        (st = reorder_primitive(&pl->src_view, &pl->src_dense, &pl->src_pack)) != dnnl_success)
        goto done;
    if (dst_ld != (size_t)cout &&
        (st = reorder_primitive(&pl->dst_dense, &pl->dst_view, &pl->dst_unpack)) != dnnl_success)
        goto done;
    pl->d = g->d;
    pl->h = g->h;
    pl->w = g->w;
    pl->src_ld = src_ld;
    pl->dst_ld = dst_ld;
done:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (st != dnnl_success) plan_clear(pl);
    return st;
}

/* Wraps the caller's buffers, packs a strided or float-for-bf16 source into a
 * dense temporary, convolves, unpacks a dense temporary into a strided
 * destination. */
static dnnl_status_t plan_run(const struct sm_conv_onednn *s, const float *src, float *dst)
{
    const onednn_plan *pl = &s->plan;
    /* Temporaries live for one call only: a kept bf16 copy of every
     * convolution's input would hold 192 MiB per convolution at 128^3. */
    dnnl_memory_t src_view = NULL, dst_view = NULL, src_own = NULL, dst_tmp = NULL;
    dnnl_memory_t src_tmp = NULL;
    dnnl_stream_t stream;
    dnnl_status_t st;
    /* The handle is not const in the API; oneDNN only reads a source. */
    if ((st = thread_stream(&stream)) != dnnl_success ||
        (st = dnnl_memory_create(&src_view, &pl->src_view, engine, (void *)src)) != dnnl_success ||
        (st = dnnl_memory_create(&dst_view, &pl->dst_view, engine, dst)) != dnnl_success)
        goto done;
    if (pl->src_pack) {
        if ((st = dnnl_memory_create(&src_own, &pl->src_dense, engine, DNNL_MEMORY_ALLOCATE)) !=
            dnnl_success)
            goto done;
        src_tmp = src_own;
    }
    if (pl->src_pack && (st = run_reorder(stream, pl->src_pack, src_view, src_tmp)) != dnnl_success)
        goto done;
    if (pl->dst_unpack && (st = dnnl_memory_create(&dst_tmp, &pl->dst_dense, engine,
                                                   DNNL_MEMORY_ALLOCATE)) != dnnl_success)
        goto done;

    const dnnl_exec_arg_t args[] = {
        {DNNL_ARG_SRC, src_tmp ? src_tmp : src_view},
        {DNNL_ARG_WEIGHTS, s->weight},
        {DNNL_ARG_DST, dst_tmp ? dst_tmp : dst_view},
        {DNNL_ARG_BIAS, s->bias},
    };
    if ((st = dnnl_primitive_execute(pl->conv, stream, s->bias ? 4 : 3, args)) != dnnl_success)
        goto done;
    if (pl->dst_unpack &&
        (st = run_reorder(stream, pl->dst_unpack, dst_tmp, dst_view)) != dnnl_success)
        goto done;
    st = dnnl_stream_wait(stream);
done:
    if (src_view) dnnl_memory_destroy(src_view);
    if (dst_view) dnnl_memory_destroy(dst_view);
    if (src_own) dnnl_memory_destroy(src_own);
    if (dst_tmp) dnnl_memory_destroy(dst_tmp);
    return st;
}

/* oneDNN's CPU ISA values are bit masks in which each level holds the bits
 * of those below (AMX's 0x3e7 contains avx512_core_bf16's 0xe7; AVX2-VNNI's
 * 0x407 does not), and the effective ISA is what CPUID and XGETBV report,
 * capped by DNNL_MAX_CPU_ISA: the level oneDNN will actually dispatch to.
 * Without avx512_core_bf16 oneDNN 2.6 still accepts bf16 convolutions, but
 * emulates the dot products on AVX-512 (slower than float) or runs its
 * reference code, so those CPUs are reported as unsupported. */
int sm_conv_onednn_bf16_supported(void)
{
    const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return ((unsigned)isa & (unsigned)dnnl_cpu_isa_avx512_core_bf16) ==
           (unsigned)dnnl_cpu_isa_avx512_core_bf16;
}

sm_status sm_conv_onednn_init(sm_conv *c)
{
    pthread_once(&engine_once, engine_init);
    if (engine_status != dnnl_success)
        return onednn_fail(c, "creating the CPU engine", engine_status);
    c->onednn = calloc(1, sizeof *c->onednn);
    if (!c->onednn) return sm_fail(SEGMAMBA_E_NOMEM, "oneDNN convolution: out of memory");
    struct sm_conv_onednn *s = c->onednn;

    dnnl_memory_desc_t md;
    const dnnl_dims_t bias_dims = {c->p.cout};
    dnnl_status_t st;
    if ((st = user_weight_md(&c->p, &md)) != dnnl_success ||
        (st = dnnl_memory_create(&s->user_weight, &md, engine, c->weight)) != dnnl_success)
        return onednn_fail(c, "wrapping the weights", st);
    if (c->bias &&
        ((st = dnnl_memory_desc_init_by_tag(&md, 1, bias_dims, dnnl_f32, dnnl_x)) != dnnl_success ||
         (st = dnnl_memory_create(&s->bias, &md, engine, c->bias)) != dnnl_success))
        return onednn_fail(c, "wrapping the bias", st);
    return SEGMAMBA_OK;
}

sm_status sm_conv_onednn_forward(sm_conv *c, const sm_conv_dims *g, const float *src, size_t src_ld,
                                 float *dst, size_t dst_ld)
{
    dnnl_status_t st;
    if (!plan_matches(&c->onednn->plan, g, src_ld, dst_ld) &&
        (st = plan_build(c, g, src_ld, dst_ld)) != dnnl_success)
        return onednn_fail(c, "creating the primitive", st);
    if ((st = plan_run(c->onednn, src, dst)) != dnnl_success) return onednn_fail(c, "running", st);
    return SEGMAMBA_OK;
}

size_t sm_conv_onednn_weight_bytes(const sm_conv *c)
{
    const struct sm_conv_onednn *s = c->onednn;
    const dnnl_memory_desc_t *md;
    if (!s || !s->weight || dnnl_memory_get_memory_desc(s->weight, &md) != dnnl_success) return 0;
    return dnnl_memory_desc_get_size(md);
}

void sm_conv_onednn_release(sm_conv *c)
{
    struct sm_conv_onednn *s = c->onednn;
    if (!s) return;
    plan_clear(&s->plan);
    if (s->weight) dnnl_memory_destroy(s->weight);
    if (s->user_weight) dnnl_memory_destroy(s->user_weight);
    if (s->bias) dnnl_memory_destroy(s->bias);
    free(s);
    c->onednn = NULL;
}
