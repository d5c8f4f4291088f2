#include "engine/graph.h"

#include <stdlib.h>
#include <string.h>

sm_graph *sm_graph_create(void) { return calloc(1, sizeof(sm_graph)); }

/* Grows *items to hold one more element of size sz. */
static int grow(void **items, int *cap, int count, size_t sz)
{
    if (count < *cap) return 1;
    int ncap = *cap ? *cap * 2 : 32;
    void *p = realloc(*items, (size_t)ncap * sz);
    if (!p) return 0;
    *items = p;
    *cap = ncap;
    return 1;
}

static int add_value(sm_graph *g, int buf, int c0, int c, int ld, int base)
{
    if (g->status != SEGMAMBA_OK) return -1;
    if (!grow((void **)&g->values, &g->cap_values, g->n_values, sizeof *g->values)) {
        g->status = sm_fail(SEGMAMBA_E_NOMEM, "building the graph: out of memory");
        return -1;
    }
    g->values[g->n_values] = (sm_value){.buf = buf, .c0 = c0, .c = c, .ld = ld, .base = base};
    return g->n_values++;
}

int sm_graph_tensor(sm_graph *g, int channels, int level)
{
    if (g->status != SEGMAMBA_OK) return -1;
    if (!grow((void **)&g->bufs, &g->cap_bufs, g->n_bufs, sizeof *g->bufs)) {
        g->status = sm_fail(SEGMAMBA_E_NOMEM, "building the graph: out of memory");
        return -1;
    }
    g->bufs[g->n_bufs] = (sm_buffer){.channels = channels, .level = level, .first = -1, .last = -1};
    g->n_bufs++;
    return add_value(g, g->n_bufs - 1, 0, channels, channels, 0);
}

int sm_graph_workspace(sm_graph *g, size_t floats)
{
    const int v = sm_graph_tensor(g, 1, 0);
    if (v >= 0) g->bufs[g->values[v].buf].fixed = floats;
    return v;
}

int sm_graph_slice(sm_graph *g, int v, int c0, int c)
{
    if (g->status != SEGMAMBA_OK) return -1;
    const sm_value *p = &g->values[v];
    return add_value(g, p->buf, p->c0 + c0, c, p->ld, p->base);
}

int sm_graph_packed(sm_graph *g, int v, int base, int c)
{
    if (g->status != SEGMAMBA_OK) return -1;
    const int buf = g->values[v].buf, channels = g->bufs[buf].channels;
    if (base < 0 || c < 1 || base > channels - c) {
        g->status = sm_fail(SEGMAMBA_E_ARG,
                            "building the graph: %d channels from %d do not fit "
                            "in a buffer of %d",
                            c, base, channels);
        return -1;
    }
    return add_value(g, buf, 0, c, c, base);
}

int sm_graph_channels(const sm_graph *g, int v) { return g->values[v].c; }
int sm_graph_level(const sm_graph *g, int v) { return g->bufs[g->values[v].buf].level; }

/* The op table (below). */
static int runnable(sm_opcode op);
static void free_obj(sm_opcode op, void *obj);

void sm_graph_set_flops(sm_graph *g, double flops_per_voxel)
{
    if (g->status == SEGMAMBA_OK && g->n_nodes > 0)
        g->nodes[g->n_nodes - 1].flops_per_voxel = flops_per_voxel;
}

void sm_graph_node(sm_graph *g, sm_opcode op, int in0, int in1, int out, sm_act act, void *obj,
                   int64_t nslices)
{
    if (g->status == SEGMAMBA_OK && !runnable(op))
        g->status =
            sm_fail(SEGMAMBA_E_ARG, "building the graph: op %d is not in the op table", (int)op);
    if (g->status == SEGMAMBA_OK &&
        !grow((void **)&g->nodes, &g->cap_nodes, g->n_nodes, sizeof *g->nodes))
        g->status = sm_fail(SEGMAMBA_E_NOMEM, "building the graph: out of memory");
    if (g->status != SEGMAMBA_OK) {
        free_obj(op, obj);
        return;
    }
    g->nodes[g->n_nodes++] = (sm_node){
        .op = op, .in0 = in0, .in1 = in1, .out = out, .act = act, .obj = obj, .nslices = nslices};
}

static void touch(sm_graph *g, int v, int node)
{
    if (v < 0) return;
    sm_buffer *b = &g->bufs[g->values[v].buf];
    if (b->first < 0 || node < b->first) b->first = node;
    if (node > b->last) b->last = node;
}

sm_status sm_graph_finish(sm_graph *g, int input, int output)
{
    if (g->status != SEGMAMBA_OK) return g->status;
    g->input = input;
    g->output = output;
    for (int i = 0; i < g->n_nodes; i++) {
        touch(g, g->nodes[i].in0, i);
        touch(g, g->nodes[i].in1, i);
        touch(g, g->nodes[i].out, i);
    }
    /* The input exists before the first node, the output after the last. */
    touch(g, input, -1);
    g->bufs[g->values[input].buf].first = -1;
    touch(g, output, g->n_nodes);
    return SEGMAMBA_OK;
}

typedef struct run_dims {
    int d[8], h[8], w[8];
} run_dims;

static int64_t level_voxels(const run_dims *rd, int level)
{
    return (int64_t)rd->d[level] * rd->h[level] * rd->w[level];
}

/* Pointer, pixel stride and level of a value. */
typedef struct view {
    float *p;
    int ld, c, level;
} view;

static view get_view(const sm_graph *g, int v, const run_dims *rd)
{
    const sm_value *val = &g->values[v];
    const sm_buffer *b = &g->bufs[val->buf];
    return (view){.p = b->data + (size_t)val->base * (size_t)level_voxels(rd, b->level) + val->c0,
                  .ld = val->ld,
                  .c = val->c,
                  .level = b->level};
}

/* ---- the op table ----------------------------------------------------------
 * Every op is described once here: its name, where its time goes in the
 * profile, how a node of it runs and how its object is freed. */

typedef struct run_ctx {
    sm_graph *g;
    const run_dims *rd;
    const sm_kernels *k; /* the model's kernel table */
} run_ctx;

/* One node's run: the node, its in0 and out views and in0's voxel count. */
typedef struct op_call {
    const run_ctx *ctx;
    const sm_node *nd;
    view a, out;
    int64_t n;
} op_call;

typedef struct op_desc {
    const char *name;
    sm_op_kind kind;  /* where the node's time goes in the profile */
    int times_itself; /* adds the time of its parts to the profile itself (a Mamba layer) */
    sm_status (*run)(const op_call *c);
    void (*free)(void *obj); /* frees the node's obj; NULL for ops without one */
} op_desc;

static view in1_view(const op_call *c) { return get_view(c->ctx->g, c->nd->in1, c->ctx->rd); }

static sm_status run_conv(const op_call *c)
{
    const run_dims *rd = c->ctx->rd;
    const int l = c->a.level;
    return sm_conv_forward_ws(c->nd->obj, c->a.p, c->a.ld, rd->d[l], rd->h[l], rd->w[l], c->out.p,
                              c->out.ld, c->nd->in1 >= 0 ? in1_view(c).p : NULL);
}

static sm_status run_convt2(const op_call *c)
{
    const run_dims *rd = c->ctx->rd;
    const int l = c->a.level;
    return sm_convt2_forward(c->nd->obj, c->a.p, c->a.ld, rd->d[l], rd->h[l], rd->w[l], c->out.p,
                             c->out.ld);
}

static sm_status run_inorm(const op_call *c)
{
    return sm_instance_norm(c->ctx->k, c->a.p, c->a.ld, c->out.p, c->out.ld, c->n, c->a.c,
                            c->nd->act);
}

static sm_status inorm_add(const op_call *c, int norm_b)
{
    const view b = in1_view(c);
    return sm_instance_norm_add(c->ctx->k, c->a.p, c->a.ld, b.p, b.ld, norm_b, c->out.p, c->out.ld,
                                c->n, c->a.c, c->nd->act);
}

static sm_status run_inorm_add(const op_call *c) { return inorm_add(c, 0); }
static sm_status run_inorm_add_inorm(const op_call *c) { return inorm_add(c, 1); }

static sm_status run_add(const op_call *c)
{
    const view b = in1_view(c);
    sm_add(c->ctx->k, c->a.p, c->a.ld, b.p, b.ld, c->out.p, c->out.ld, c->n, c->a.c, c->nd->act);
    return SEGMAMBA_OK;
}

static sm_status run_act(const op_call *c)
{
    sm_activate(c->ctx->k, c->a.p, c->a.ld, c->out.p, c->out.ld, c->n, c->a.c, c->nd->act);
    return SEGMAMBA_OK;
}

static sm_status run_fue(const op_call *c)
{
    sm_fue(c->a.p, c->a.ld, c->out.p, c->out.ld, c->n, c->a.c);
    return SEGMAMBA_OK;
}

static sm_status run_mamba(const op_call *c)
{
    const run_dims *rd = c->ctx->rd;
    const int l = c->a.level;
    return sm_mamba_forward(c->nd->obj, c->ctx->k, c->a.p, c->a.ld, c->out.p, c->out.ld, rd->d[l],
                            rd->h[l], rd->w[l], c->nd->nslices, in1_view(c).p, c->ctx->g->seconds);
}

/* SM_OP_POINTWISE (graph.h). Plane z's result goes straight to a dense
 * out when it lies apart from the input or below input plane z (every
 * plane of a compacting projection but the first), else through the
 * temporary (a oneDNN convolution would make one per call for a strided
 * out). */
static sm_status run_pointwise(const op_call *c)
{
    sm_conv *conv = c->nd->obj;
    const view a = c->a, out = c->out;
    const run_dims *rd = c->ctx->rd;
    const int l = a.level;
    const int64_t plane = (int64_t)rd->h[l] * rd->w[l];
    const int64_t n = plane * rd->d[l];
    /* Both are in the arena, so their addresses compare. */
    const int apart =
        out.p + (n - 1) * out.ld + out.c <= a.p || out.p >= a.p + (n - 1) * a.ld + a.c;
    if (!apart && (out.p > a.p || out.ld > a.ld))
        return sm_fail(SEGMAMBA_E_ARG, "graph: a pointwise convolution's output overlaps input "
                                       "it has still to read");
    float *tmp = NULL;
    sm_status st = SEGMAMBA_OK;
    for (int z = 0; z < rd->d[l] && st == SEGMAMBA_OK; z++) {
        const float *src = a.p + z * plane * a.ld;
        float *dst = out.p + z * plane * out.ld;
        if (out.ld == out.c && (apart || dst + plane * out.c <= src)) {
            st = sm_conv_forward(conv, src, a.ld, 1, rd->h[l], rd->w[l], dst, out.ld);
            continue;
        }
        if (!tmp && !(tmp = malloc((size_t)plane * (size_t)out.c * sizeof *tmp)))
            return sm_fail(SEGMAMBA_E_NOMEM, "pointwise convolution: out of memory");
        st = sm_conv_forward(conv, src, a.ld, 1, rd->h[l], rd->w[l], tmp, out.c);
        if (st == SEGMAMBA_OK)
            sm_activate(c->ctx->k, tmp, out.c, dst, out.ld, plane, out.c, SM_ACT_NONE);
    }
    free(tmp);
    return st;
}

static sm_status run_se(const op_call *c)
{
    return sm_se_forward(c->nd->obj, c->a.p, c->a.ld, c->out.p, c->out.ld, c->n);
}

static void free_conv(void *obj) { sm_conv_free(obj); }
static void free_se(void *obj) { sm_se_free(obj); }
static void free_convt2(void *obj) { sm_convt2_free(obj); }
static void free_mamba(void *obj) { sm_mamba_free(obj); }

static const op_desc ops[] = {
    [SM_OP_CONV] = {"conv", SM_KIND_CONV, 0, run_conv, free_conv},
    [SM_OP_CONVT2] = {"convT2", SM_KIND_CONV, 0, run_convt2, free_convt2},
    [SM_OP_INORM] = {"inorm", SM_KIND_NORM, 0, run_inorm, NULL},
    [SM_OP_ADD] = {"add", SM_KIND_OTHER, 0, run_add, NULL},
    [SM_OP_ACT] = {"act", SM_KIND_OTHER, 0, run_act, NULL},
    [SM_OP_FUE] = {"fue", SM_KIND_OTHER, 0, run_fue, NULL},
    [SM_OP_MAMBA] = {"mamba", SM_KIND_OTHER, 1, run_mamba, free_mamba},
    [SM_OP_INORM_ADD] = {"inorm+add", SM_KIND_NORM, 0, run_inorm_add, NULL},
    [SM_OP_INORM_ADD_INORM] = {"inorm+add+inorm", SM_KIND_NORM, 0, run_inorm_add_inorm, NULL},
    [SM_OP_POINTWISE] = {"pointwise", SM_KIND_CONV, 0, run_pointwise, free_conv},
    [SM_OP_SE] = {"se", SM_KIND_OTHER, 0, run_se, free_se},
};
/* Every opcode has an entry: a missing last one shortens the table, a
 * missing one before it has no run function, which sm_graph_node refuses. */
_Static_assert(sizeof ops / sizeof *ops == SM_OP_COUNT, "the op table covers every opcode");

static int runnable(sm_opcode op) { return (unsigned)op < SM_OP_COUNT && ops[op].run; }

static void free_obj(sm_opcode op, void *obj)
{
    if ((unsigned)op < SM_OP_COUNT && ops[op].free) ops[op].free(obj);
}

const char *sm_opcode_name(sm_opcode op)
{
    return (unsigned)op < SM_OP_COUNT && ops[op].name ? ops[op].name : "?";
}

sm_op_kind sm_graph_op_kind(sm_opcode op)
{
    return (unsigned)op < SM_OP_COUNT ? ops[op].kind : SM_KIND_OTHER;
}

static sm_status run_node(const run_ctx *ctx, const sm_node *nd)
{
    const view a = get_view(ctx->g, nd->in0, ctx->rd);
    const op_call c = {.ctx = ctx,
                       .nd = nd,
                       .a = a,
                       .out = get_view(ctx->g, nd->out, ctx->rd),
                       .n = level_voxels(ctx->rd, a.level)};
    return ops[nd->op].run(&c);
}

/* ---- memory plan ---------------------------------------------------------
 * Every buffer gets an offset in one arena: buffers whose lifetimes
 * [first, last] overlap must not overlap in memory, others may share it.
 * Placement is greedy, largest first, each at the lowest offset that fits
 * between the buffers already placed that are live at the same time. The
 * arena is kept for the next forward of the same size, so repeated calls
 * neither allocate nor fault in fresh pages. */

#define ARENA_ALIGN 16 /* floats: 64 bytes */

static size_t buffer_floats(const sm_buffer *b, const run_dims *rd)
{
    size_t n = b->fixed ? b->fixed : (size_t)level_voxels(rd, b->level) * (size_t)b->channels;
    return (n + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
}

/* A buffer and the value it is sorted by: qsort has no context argument,
 * so the key travels with the index (no file-scope pointer, so that two
 * graphs can be planned on two threads at once). */
typedef struct keyed {
    size_t key;
    int buf;
} keyed;

static int by_key_desc(const void *x, const void *y)
{
    const keyed *a = x, *b = y;
    return a->key < b->key ? 1 : a->key > b->key ? -1 : a->buf - b->buf;
}

static int by_key(const void *x, const void *y) { return by_key_desc(y, x); }

static int live_together(const sm_buffer *a, const sm_buffer *b)
{
    return a->first <= b->last && b->first <= a->last;
}

static sm_status place(sm_graph *g, const run_dims *rd, size_t *arena_floats)
{
    keyed *order = malloc((size_t)g->n_bufs * 2 * sizeof *order);
    if (!order) return sm_fail(SEGMAMBA_E_NOMEM, "forward: out of memory planning buffers");
    keyed *conflicts = order + g->n_bufs;
    for (int i = 0; i < g->n_bufs; i++) {
        g->bufs[i].size = buffer_floats(&g->bufs[i], rd);
        order[i] = (keyed){g->bufs[i].size, i};
    }
    qsort(order, (size_t)g->n_bufs, sizeof *order, by_key_desc);
    size_t total = 0;
    for (int k = 0; k < g->n_bufs; k++) {
        sm_buffer *b = &g->bufs[order[k].buf];
        int n = 0;
        for (int j = 0; j < k; j++) {
            const sm_buffer *o = &g->bufs[order[j].buf];
            if (live_together(b, o)) conflicts[n++] = (keyed){o->offset, order[j].buf};
        }
        qsort(conflicts, (size_t)n, sizeof *conflicts, by_key);
        size_t at = 0;
        for (int j = 0; j < n; j++) {
            const sm_buffer *o = &g->bufs[conflicts[j].buf];
            if (at + b->size <= o->offset) break;
            if (o->offset + o->size > at) at = o->offset + o->size;
        }
        b->offset = at;
        if (at + b->size > total) total = at + b->size;
    }
    free(order);
    *arena_floats = total;
    return SEGMAMBA_OK;
}

static run_dims level_dims(int d, int h, int w)
{
    run_dims rd;
    for (int l = 0; l < 8; l++) {
        rd.d[l] = d >> l;
        rd.h[l] = h >> l;
        rd.w[l] = w >> l;
    }
    return rd;
}

sm_status sm_graph_place(sm_graph *g, int d, int h, int w, size_t *arena_floats)
{
    const run_dims rd = level_dims(d, h, w);
    return place(g, &rd, arena_floats);
}

static sm_status plan(sm_graph *g, const run_dims *rd)
{
    size_t total = 0;
    SM_TRY(place(g, rd, &total));
    if (total > g->arena_floats) {
        free(g->arena);
        g->arena = NULL;
        g->arena_floats = 0;
        if (total > SIZE_MAX / sizeof(float) ||
            !(g->arena = aligned_alloc(64, total * sizeof(float))))
            return sm_fail(
                SEGMAMBA_E_NOMEM,
                "forward: cannot allocate %zu MiB for the activations of a %dx%dx%d input",
                total * sizeof(float) >> 20, rd->d[0], rd->h[0], rd->w[0]);
        g->arena_floats = total;
    }
    g->planned_floats = total;
    for (int i = 0; i < g->n_bufs; i++) g->bufs[i].data = g->arena + g->bufs[i].offset;
    return SEGMAMBA_OK;
}

sm_status sm_graph_run(sm_graph *g, const sm_kernels *k, const float *input, int d, int h, int w,
                       float *output)
{
    const run_dims rd = level_dims(d, h, w);
    const run_ctx ctx = {.g = g, .rd = &rd, .k = k};
    memset(g->seconds, 0, sizeof g->seconds);
    g->flops = 0.0;
    SM_TRY(plan(g, &rd));
    view in = get_view(g, g->input, &rd);
    sm_to_channels_last(input, in.c, level_voxels(&rd, in.level), in.p, in.ld);
    sm_status st = SEGMAMBA_OK;
    for (int i = 0; i < g->n_nodes && st == SEGMAMBA_OK; i++) {
        const sm_node *nd = &g->nodes[i];
        double t0 = sm_now_seconds();
        st = run_node(&ctx, nd);
        const double dt = sm_now_seconds() - t0;
        g->nodes[i].seconds = dt;
        if (!ops[nd->op].times_itself) g->seconds[ops[nd->op].kind] += dt;
        g->flops +=
            nd->flops_per_voxel * (double)level_voxels(&rd, g->bufs[g->values[nd->in0].buf].level);
    }
    if (st == SEGMAMBA_OK) {
        view out = get_view(g, g->output, &rd);
        sm_from_channels_last(out.p, out.ld, out.c, level_voxels(&rd, out.level), output);
    }
    return st;
}

void sm_graph_release_arena(sm_graph *g)
{
    free(g->arena);
    g->arena = NULL;
    g->arena_floats = 0;
    g->planned_floats = 0;
    for (int i = 0; i < g->n_bufs; i++) g->bufs[i].data = NULL;
}

void sm_graph_free(sm_graph *g)
{
    if (!g) return;
    free(g->arena);
    for (int i = 0; i < g->n_nodes; i++) free_obj(g->nodes[i].op, g->nodes[i].obj);
    free(g->nodes);
    free(g->values);
    free(g->bufs);
    free(g);
}
