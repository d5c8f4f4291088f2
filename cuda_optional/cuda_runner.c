/* The CUDA runner (src/engine/runner.h): a model's graph on the device,
 * each node through the op set of cuda_backend.h, every activation in one
 * device arena placed by sm_graph_place. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_optional/cuda_internal.h"
#include "cuda_optional/cuda_runner.h"
#include "sm_config.h"

/* A value on the device: pointer, voxel stride, channels and level. */
typedef struct dev_view {
    float *p;
    int ld, c, level;
} dev_view;

/* One node's run: its device object, its in0 and out views, in0's sides
 * and voxel count. */
typedef struct dev_call {
    sm_cuda_ctx *ctx;
    const sm_node *nd;
    const void *obj;
    dev_view a, o;
    dev_view b; /* in1's view, for the ops that read one */
    int d, h, w;
    int64_t n;
} dev_call;

/* The device side of each op of the graph (src/engine/graph.h): its name
 * and profile kind are the CPU table's (sm_opcode_name, sm_graph_op_kind). */
typedef struct dev_op_desc {
    /* Makes the node's device object from its CPU one; NULL for ops without. */
    sm_status (*upload)(const sm_graph *g, const sm_node *nd, void **obj);
    sm_status (*run)(const dev_call *c);
    void (*free)(void *obj); /* NULL for ops without an object */
} dev_op_desc;

static sm_status upload_conv(const sm_graph *g, const sm_node *nd, void **obj)
{
    (void)g;
    sm_cuda_conv *c = NULL;
    SM_TRY(sm_cuda_conv_upload(nd->obj, &c));
    *obj = c;
    return SEGMAMBA_OK;
}

static sm_status upload_convt2(const sm_graph *g, const sm_node *nd, void **obj)
{
    (void)g;
    sm_cuda_convt2 *t = NULL;
    SM_TRY(sm_cuda_convt2_upload(nd->obj, &t));
    *obj = t;
    return SEGMAMBA_OK;
}

static sm_status upload_mamba(const sm_graph *g, const sm_node *nd, void **obj)
{
    sm_cuda_mamba *m = NULL;
    SM_TRY(sm_cuda_mamba_upload(nd->obj, &m));
    *obj = m;
    /* The scratch buffer is the graph's, sized by the CPU layer's needs. */
    if (sm_graph_channels(g, nd->in1) < sm_cuda_mamba_scratch_per_token(m))
        return sm_fail(SEGMAMBA_E_BACKEND,
                       "CUDA backend: the graph gives the Mamba layer %d scratch floats per "
                       "token and the CUDA layer needs %lld (the graph builder asks "
                       "sm_mamba_scratch_per_token for the device's)",
                       sm_graph_channels(g, nd->in1),
                       (long long)sm_cuda_mamba_scratch_per_token(m));
    return SEGMAMBA_OK;
}

static sm_status upload_se(const sm_graph *g, const sm_node *nd, void **obj)
{
    (void)g;
    sm_cuda_se *se = NULL;
    SM_TRY(sm_cuda_se_upload(nd->obj, &se));
    *obj = se;
    return SEGMAMBA_OK;
}

static void free_conv(void *obj) { sm_cuda_conv_free(obj); }
static void free_convt2(void *obj) { sm_cuda_convt2_free(obj); }
static void free_mamba(void *obj) { sm_cuda_mamba_free(obj); }
static void free_se(void *obj) { sm_cuda_se_free(obj); }

static sm_status run_conv(const dev_call *c)
{
    return sm_cuda_conv_forward(c->ctx, c->obj, c->a.p, c->a.ld, c->d, c->h, c->w, c->o.p, c->o.ld);
}

static sm_status run_convt2(const dev_call *c)
{
    return sm_cuda_convt2_forward(c->ctx, c->obj, c->a.p, c->a.ld, c->d, c->h, c->w, c->o.p,
                                  c->o.ld);
}

static sm_status run_inorm(const dev_call *c)
{
    return sm_cuda_instance_norm(c->ctx, c->a.p, c->a.ld, c->o.p, c->o.ld, c->n, c->a.c,
                                 c->nd->act);
}

static sm_status run_add(const dev_call *c)
{
    return sm_cuda_add(c->ctx, c->a.p, c->a.ld, c->b.p, c->b.ld, c->o.p, c->o.ld, c->n, c->a.c,
                       c->nd->act);
}

/* Composed from the unfused kernels, in the CPU's order of operations. The
 * residual block's second input (conv3's output) is used by this node
 * only, so it is normed in place. */
static sm_status inorm_add(const dev_call *c, int norm_b)
{
    const dev_view a = c->a, b = c->b, o = c->o;
    if (o.p == b.p)
        return sm_fail(SEGMAMBA_E_ARG, "CUDA backend: norm + add into its second input");
    if (norm_b) SM_TRY(sm_cuda_instance_norm(c->ctx, b.p, b.ld, b.p, b.ld, c->n, a.c, SM_ACT_NONE));
    SM_TRY(sm_cuda_instance_norm(c->ctx, a.p, a.ld, o.p, o.ld, c->n, a.c, SM_ACT_NONE));
    return sm_cuda_add(c->ctx, o.p, o.ld, b.p, b.ld, o.p, o.ld, c->n, a.c, c->nd->act);
}

static sm_status run_inorm_add(const dev_call *c) { return inorm_add(c, 0); }
static sm_status run_inorm_add_inorm(const dev_call *c) { return inorm_add(c, 1); }

static sm_status run_act(const dev_call *c)
{
    return sm_cuda_activate(c->ctx, c->a.p, c->a.ld, c->o.p, c->o.ld, c->n, c->a.c, c->nd->act);
}

static sm_status run_fue(const dev_call *c)
{
    return sm_cuda_fue(c->ctx, c->a.p, c->a.ld, c->o.p, c->o.ld, c->n, c->a.c);
}

static sm_status run_mamba(const dev_call *c)
{
    return sm_cuda_mamba_forward(c->ctx, c->obj, c->a.p, c->a.ld, c->o.p, c->o.ld, c->d, c->h, c->w,
                                 c->nd->nslices, c->b.p, 0);
}

static sm_status run_se(const dev_call *c)
{
    return sm_cuda_se_forward(c->ctx, c->obj, c->a.p, c->a.ld, c->o.p, c->o.ld, c->n);
}

/* SM_OP_POINTWISE: as on the CPU, a plane at a time through a temporary,
 * which the stream's order makes safe when out overwrites a. */
static sm_status run_pointwise(const dev_call *c)
{
    const dev_view a = c->a, o = c->o;
    const int64_t plane = (int64_t)c->h * c->w;
    float *tmp;
    SM_TRY(sm_cuda_work(c->ctx, (size_t)plane * (size_t)o.c, &tmp));
    for (int z = 0; z < c->d; z++) {
        SM_TRY(sm_cuda_conv_forward(c->ctx, c->obj, a.p + z * plane * a.ld, a.ld, 1, c->h, c->w,
                                    tmp, o.c));
        SM_TRY(sm_cuda_activate(c->ctx, tmp, o.c, o.p + z * plane * o.ld, o.ld, plane, o.c,
                                SM_ACT_NONE));
    }
    return SEGMAMBA_OK;
}

static const dev_op_desc dev_ops[] = {
    [SM_OP_CONV] = {upload_conv, run_conv, free_conv},
    [SM_OP_CONVT2] = {upload_convt2, run_convt2, free_convt2},
    [SM_OP_INORM] = {NULL, run_inorm, NULL},
    [SM_OP_ADD] = {NULL, run_add, NULL},
    [SM_OP_ACT] = {NULL, run_act, NULL},
    [SM_OP_FUE] = {NULL, run_fue, NULL},
    [SM_OP_MAMBA] = {upload_mamba, run_mamba, free_mamba},
    [SM_OP_INORM_ADD] = {NULL, run_inorm_add, NULL},
    [SM_OP_INORM_ADD_INORM] = {NULL, run_inorm_add_inorm, NULL},
    [SM_OP_POINTWISE] = {upload_conv, run_pointwise, free_conv},
    [SM_OP_SE] = {upload_se, run_se, free_se},
    /* The builder runs blocks in place in slabs only for the CPU. */
    [SM_OP_COPY] = {NULL, NULL, NULL},
    [SM_OP_CONV_SLABS] = {NULL, NULL, NULL},
};
/* Every opcode has an entry: a missing last one shortens the table, a
 * missing one before it has no run function, which model_create
 * refuses. */
_Static_assert(sizeof dev_ops / sizeof *dev_ops == SM_OP_COUNT,
               "the device op table covers every opcode");

typedef struct dev_op {
    sm_opcode op;
    void *obj; /* sm_cuda_conv, sm_cuda_convt2, sm_cuda_mamba, sm_cuda_se, or NULL */
} dev_op;

typedef struct cuda_model {
    sm_cuda_ctx *ctx;
    int n_nodes;
    dev_op *ops;  /* one per graph node */
    float *arena; /* every buffer of the graph, placed by sm_graph_place */
    size_t arena_floats;
    float *io; /* the inputs, then the outputs, NCDHW */
    size_t io_floats;
} cuda_model;

static void model_free(void *state)
{
    cuda_model *cm = state;
    if (!cm) return;
    for (int i = 0; cm->ops && i < cm->n_nodes; i++)
        if (cm->ops[i].obj) dev_ops[cm->ops[i].op].free(cm->ops[i].obj);
    free(cm->ops);
    cudaFree(cm->arena);
    cudaFree(cm->io);
    sm_cuda_ctx_free(cm->ctx);
    free(cm);
}

static sm_status upload_node(const sm_graph *g, const sm_node *nd, dev_op *o)
{
    o->op = nd->op;
    if ((unsigned)nd->op >= SM_OP_COUNT || !dev_ops[nd->op].run)
        return sm_fail(SEGMAMBA_E_UNSUPPORTED, "CUDA backend: op %d is not in the device op table",
                       (int)nd->op);
    return dev_ops[nd->op].upload ? dev_ops[nd->op].upload(g, nd, &o->obj) : SEGMAMBA_OK;
}

/* Uploads every node's weights and creates the context. */
static sm_status model_create(const sm_graph *g, const sm_runner_options *opts, void **out)
{
    *out = NULL;
    cuda_model *cm = calloc(1, sizeof *cm);
    if (!cm) return sm_fail(SEGMAMBA_E_NOMEM, "CUDA backend: out of memory");
    cm->ops = calloc(g->n_nodes > 0 ? (size_t)g->n_nodes : 1, sizeof *cm->ops);
    if (!cm->ops) {
        free(cm);
        return sm_fail(SEGMAMBA_E_NOMEM, "CUDA backend: out of memory");
    }
    cm->n_nodes = g->n_nodes;
    sm_status st = sm_cuda_ctx_create(opts->tf32, &cm->ctx);
    for (int i = 0; i < g->n_nodes && st == SEGMAMBA_OK; i++) {
        st = upload_node(g, &g->nodes[i], &cm->ops[i]);
        if (st != SEGMAMBA_OK)
            st = sm_fail_wrap(st, "CUDA backend: node %d (%s)", i, sm_opcode_name(g->nodes[i].op));
    }
    if (st != SEGMAMBA_OK) {
        model_free(cm);
        return st;
    }
    *out = cm;
    return SEGMAMBA_OK;
}

static const sm_buffer *value_buffer(const sm_graph *g, int v)
{
    return &g->bufs[g->values[v].buf];
}

static int64_t level_voxels(const int dims[3], int level)
{
    return (int64_t)(dims[0] >> level) * (dims[1] >> level) * (dims[2] >> level);
}

/* As the CPU runner's (src/engine/graph.h, sm_value). */
static dev_view view_of(const cuda_model *cm, const sm_graph *g, int v, const int dims[3])
{
    const sm_value *val = &g->values[v];
    const sm_buffer *b = value_buffer(g, v);
    return (dev_view){.p = cm->arena + b->offset +
                           (size_t)val->base * (size_t)level_voxels(dims, b->level) + val->c0,
                      .ld = val->ld,
                      .c = val->c,
                      .level = b->level};
}

static sm_status run_node(cuda_model *cm, const sm_graph *g, int i, const int dims[3])
{
    const sm_node *nd = &g->nodes[i];
    const dev_view a = view_of(cm, g, nd->in0, dims);
    const dev_call c = {.ctx = cm->ctx,
                        .nd = nd,
                        .obj = cm->ops[i].obj,
                        .a = a,
                        .o = view_of(cm, g, nd->out, dims),
                        .b = nd->in1 >= 0 ? view_of(cm, g, nd->in1, dims) : (dev_view){0},
                        .d = dims[0] >> a.level,
                        .h = dims[1] >> a.level,
                        .w = dims[2] >> a.level,
                        .n = level_voxels(dims, a.level)};
    return dev_ops[nd->op].run(&c);
}

/* Device memory of at least need floats in *p (contents not kept). */
static sm_status ensure(float **p, size_t *have, size_t need, const char *what)
{
    if (need <= *have) return SEGMAMBA_OK;
    cudaFree(*p);
    *p = NULL;
    *have = 0;
    if (cudaMalloc((void **)p, need * sizeof(float)) != cudaSuccess) {
        *p = NULL;
        cudaGetLastError(); /* clear it: the model stays usable for smaller inputs */
        return sm_fail(SEGMAMBA_E_NOMEM,
                       "CUDA backend: cannot allocate %zu MiB of device memory "
                       "for %s",
                       need * sizeof(float) >> 20, what);
    }
    *have = need;
    return SEGMAMBA_OK;
}

/* Adds the time between consecutive marks to their kinds and nodes. */
static sm_status tally(sm_cuda_ctx *ctx, sm_graph *g)
{
    for (int j = 0; j + 1 < ctx->n_marks; j++) {
        float ms = 0.0f;
        CU_TRY(cudaEventElapsedTime(&ms, ctx->events[j], ctx->events[j + 1]), "reading a timer");
        const double s = 1e-3 * ms;
        g->seconds[ctx->marks[j].kind] += s;
        if (ctx->marks[j].node >= 0) g->nodes[ctx->marks[j].node].seconds += s;
    }
    return SEGMAMBA_OK;
}

static sm_status run_all(cuda_model *cm, sm_graph *g, int count, const float *input,
                         const int dims[3], float *output)
{
    sm_cuda_ctx *ctx = cm->ctx;
    const dev_view in = view_of(cm, g, g->input, dims), out = view_of(cm, g, g->output, dims);
    const int64_t n_in = level_voxels(dims, in.level), n_out = level_voxels(dims, out.level);
    const size_t in_floats = (size_t)in.c * (size_t)n_in,
                 out_floats = (size_t)out.c * (size_t)n_out;
    float *dev_in = cm->io, *dev_out = cm->io + (size_t)count * in_floats;
    SM_TRY(sm_cuda_mark_time(ctx, SM_KIND_OTHER));
    SM_TRY(sm_cuda_upload(ctx, dev_in, input, (size_t)count * in_floats));
    for (int k = 0; k < count; k++) {
        ctx->node = -1;
        SM_TRY(sm_cuda_mark_time(ctx, SM_KIND_OTHER));
        CU_TRY(
            sm_cuk_to_channels_last(ctx->stream, dev_in + k * in_floats, in.c, n_in, in.p, in.ld),
            "input layout");
        for (int i = 0; i < g->n_nodes; i++) {
            ctx->node = i;
            SM_TRY(sm_cuda_mark_time(ctx, sm_graph_op_kind(g->nodes[i].op)));
            sm_status st = run_node(cm, g, i, dims);
            if (st != SEGMAMBA_OK)
                return sm_fail_wrap(st, "CUDA backend: node %d (%s)", i,
                                    sm_opcode_name(g->nodes[i].op));
            g->flops += g->nodes[i].flops_per_voxel *
                        (double)level_voxels(dims, value_buffer(g, g->nodes[i].in0)->level);
        }
        ctx->node = -1;
        SM_TRY(sm_cuda_mark_time(ctx, SM_KIND_OTHER));
        CU_TRY(sm_cuk_from_channels_last(ctx->stream, out.p, out.ld, out.c, n_out,
                                         dev_out + k * out_floats),
               "output layout");
    }
    CU_TRY(cudaMemcpyAsync(output, dev_out, (size_t)count * out_floats * sizeof(float),
                           cudaMemcpyDeviceToHost, ctx->stream),
           "copying the logits from the device");
    SM_TRY(sm_cuda_mark_time(ctx, SM_KIND_OTHER));
    CU_TRY(cudaStreamSynchronize(ctx->stream), "running the forward");
    return tally(ctx, g);
}

/* One upload, the graph run once per input with every activation in the
 * device arena (kept for the next call), one download; the times are CUDA
 * events'. */
static sm_status model_forward(void *state, sm_graph *g, int count, const float *input, int d,
                               int h, int w, float *output)
{
    cuda_model *cm = state;
    if (count < 1 || !input || !output) return sm_fail(SEGMAMBA_E_ARG, "CUDA forward: no inputs");
    const int dims[3] = {d, h, w};
    size_t total = 0;
    SM_TRY(sm_graph_place(g, d, h, w, &total));
    SM_TRY(ensure(&cm->arena, &cm->arena_floats, total, "the activations"));
    const int64_t n_in = level_voxels(dims, value_buffer(g, g->input)->level),
                  n_out = level_voxels(dims, value_buffer(g, g->output)->level);
    const size_t io = (size_t)count * ((size_t)sm_graph_channels(g, g->input) * (size_t)n_in +
                                       (size_t)sm_graph_channels(g, g->output) * (size_t)n_out);
    SM_TRY(ensure(&cm->io, &cm->io_floats, io, "the inputs and outputs"));
    memset(g->seconds, 0, sizeof g->seconds);
    g->flops = 0.0;
    for (int i = 0; i < g->n_nodes; i++) g->nodes[i].seconds = 0.0;
    cm->ctx->timing = 1;
    cm->ctx->n_marks = 0;
    cm->ctx->node = -1;
    sm_status st = run_all(cm, g, count, input, dims, output);
    cm->ctx->timing = 0;
    return st;
}

/* A forward keeps no host memory: the graph's arena, which a CPU forward
 * would have made, is released as the CPU runner's. */
static void model_release(void *state, sm_graph *g)
{
    (void)state;
    sm_graph_release_arena(g);
}

static const sm_runner cuda_runner = {
    .name = "cuda",
    .prepare = model_create,
    .run = model_forward,
    .release = model_release,
    .free = model_free,
};

int sm_cuda_build_kind(void) { return SM_CUDA_EMULATED ? 2 : 1; }

int sm_cuda_device_info(char *info, size_t cap)
{
    char buf[256];
    const int ok = sm_cuda_probe(buf, sizeof buf) == SEGMAMBA_OK;
    if (info && cap) snprintf(info, cap, "%s", ok ? buf : segmamba_get_last_error());
    return ok;
}

sm_status sm_cuda_runner(const sm_runner **out)
{
    *out = NULL;
    SM_TRY(sm_cuda_probe(NULL, 0));
    *out = &cuda_runner;
    return SEGMAMBA_OK;
}
