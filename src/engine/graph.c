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
    g->bufs[g->n_bufs] = (sm_buffer){.channels = channels,
                                     .level = level,
                                     .first = -1,
                                     .last = -1,
                                     .head_last = -1,
                                     .late_first = -1};
    g->n_bufs++;
    return add_value(g, g->n_bufs - 1, 0, channels, channels, 0);
}

int sm_graph_planes(sm_graph *g, int channels, int level, int planes)
{
    const int v = sm_graph_tensor(g, channels, level);
    if (v >= 0) g->bufs[g->values[v].buf].planes = planes;
    return v;
}

/* Splits v's buffer after channels channels' worth; NULL (g->status set)
 * when it cannot be split there. */
static sm_buffer *split_buffer(sm_graph *g, int v, int channels)
{
    if (g->status != SEGMAMBA_OK) return NULL;
    sm_buffer *b = &g->bufs[g->values[v].buf];
    if (channels < 1 || channels >= b->channels || b->fixed || b->planes ||
        (b->split && b->split != channels)) {
        g->status =
            sm_fail(SEGMAMBA_E_ARG, "building the graph: a buffer of %d channels split after %d",
                    b->channels, channels);
        return NULL;
    }
    b->split = channels;
    return b;
}

void sm_graph_late(sm_graph *g, int v, int channels)
{
    sm_buffer *b = split_buffer(g, v, channels);
    if (b) b->late_first = g->n_nodes;
}

void sm_graph_early(sm_graph *g, int v, int channels)
{
    sm_buffer *b = split_buffer(g, v, channels);
    if (b) b->head_last = g->n_nodes - 1;
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
    g->nodes[g->n_nodes++] = (sm_node){.op = op,
                                       .in0 = in0,
                                       .in1 = in1,
                                       .out = out,
                                       .out2 = -1,
                                       .act = act,
                                       .obj = obj,
                                       .nslices = nslices};
}

static void free_slab_conv(void *obj)
{
    sm_slab_conv *s = obj;
    if (!s) return;
    sm_conv_free(s->conv);
    sm_conv_free(s->proj);
    free(s);
}

void sm_graph_slab_conv(sm_graph *g, sm_conv *conv, sm_conv *proj, int x, int out, int out2)
{
    sm_slab_conv *s = NULL;
    const int tile = sm_conv_tile(conv);
    if (g->status == SEGMAMBA_OK &&
        (!tile || sm_conv_workspace_floats(conv) || !proj != (out2 < 0)))
        g->status = sm_fail(SEGMAMBA_E_ARG, "building the graph: a slab convolution needs a "
                                            "Winograd layer that keeps its weights, and a "
                                            "projection with its output or neither");
    if (g->status == SEGMAMBA_OK && !(s = malloc(sizeof *s)))
        g->status = sm_fail(SEGMAMBA_E_NOMEM, "building the graph: out of memory");
    if (g->status != SEGMAMBA_OK) {
        sm_conv_free(conv);
        sm_conv_free(proj);
        return;
    }
    *s = (sm_slab_conv){conv, proj};
    const sm_conv_params *p = sm_conv_get_params(conv);
    const int cout2 = proj ? sm_conv_get_params(proj)->cout : 0;
    const int ring = sm_graph_planes(g, p->cout + cout2, sm_graph_level(g, x), 2 * tile);
    sm_graph_node(g, SM_OP_CONV_SLABS, x, ring, out, SM_ACT_NONE, s, 0);
    if (g->status != SEGMAMBA_OK) return;
    g->nodes[g->n_nodes - 1].out2 = out2;
    sm_graph_set_flops(g, 2.0 * 27 * p->cin * p->cout + 2.0 * p->cin * cout2);
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
        const sm_node *nd = &g->nodes[i];
        const int vs[4] = {nd->in0, nd->in1, nd->out, nd->out2};
        for (int j = 0; j < 4; j++) {
            touch(g, vs[j], i);
            if (vs[j] < 0) continue;
            /* Where only one part of a split buffer is live, the buffer
             * is used only through dense values within that part. */
            const sm_value *v = &g->values[vs[j]];
            const sm_buffer *b = &g->bufs[v->buf];
            const int dense = v->ld == v->c;
            if (b->split && i < b->late_first && (!dense || v->base + v->c > b->split))
                return sm_fail(SEGMAMBA_E_ARG,
                               "building the graph: node %d uses the late part of a buffer "
                               "before node %d",
                               i, b->late_first);
            if (b->split && b->head_last >= 0 && i > b->head_last && (!dense || v->base < b->split))
                return sm_fail(SEGMAMBA_E_ARG,
                               "building the graph: node %d uses the first part of a buffer "
                               "after node %d",
                               i, b->head_last);
        }
    }
    /* The input exists before the first node, the output after the last
     * (in this order: a first of -1 reads as unset to touch). */
    touch(g, output, g->n_nodes);
    touch(g, input, -1);
    g->bufs[g->values[input].buf].first = -1;
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
    void (*free)(void *obj);                 /* frees the node's obj; NULL for ops without one */
    size_t (*weight_bytes)(const void *obj); /* the obj's weights, NULL: none */
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

/* Whether o and a (n voxels each) lie apart in memory: both are in the
 * arena, so their addresses compare. */
static int views_apart(const view *a, const view *o, int64_t n)
{
    return o->p + (n - 1) * o->ld + o->c <= a->p || o->p >= a->p + (n - 1) * a->ld + a->c;
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
    const int apart = views_apart(&a, &out, n);
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

/* SM_OP_COPY (graph.h). */
static sm_status run_copy(const op_call *c)
{
    const view a = c->a, out = c->out;
    const run_dims *rd = c->ctx->rd;
    const int l = a.level;
    const int64_t plane = (int64_t)rd->h[l] * rd->w[l];
    const int64_t n = plane * rd->d[l];
    const int apart = views_apart(&a, &out, n);
    if (out.c != a.c || (!apart && (out.p < a.p || out.ld < a.ld)))
        return sm_fail(SEGMAMBA_E_ARG, "graph: a copy's output overlaps input it has still to "
                                       "read");
    float *tmp = malloc((size_t)plane * (size_t)a.c * sizeof *tmp);
    if (!tmp) return sm_fail(SEGMAMBA_E_NOMEM, "copy: out of memory");
    for (int64_t z = rd->d[l] - 1; z >= 0; z--) {
        sm_activate(c->ctx->k, a.p + z * plane * a.ld, a.ld, tmp, a.c, plane, a.c, SM_ACT_NONE);
        sm_activate(c->ctx->k, tmp, a.c, out.p + z * plane * out.ld, out.ld, plane, a.c,
                    SM_ACT_NONE);
    }
    free(tmp);
    return SEGMAMBA_OK;
}

/* Whether o may be written over in0 (a) with SM_OP_CONV_SLABS's lag of a
 * slab: apart from it, or each plane of o ending no later than a's plane
 * of the same index. */
static int slab_safe(const view *a, const view *o, int64_t plane, int64_t n)
{
    return views_apart(a, o, n) || (o->ld <= a->ld && o->p + (plane - 1) * o->ld + o->c <=
                                                          a->p + (plane - 1) * a->ld + a->c);
}

/* Writes slab z0..z1 of the ring (r1: conv's out.c channels dense, then
 * r2: proj's) to out and out2. */
static void slab_flush(const op_call *c, const view *o2, int64_t plane, int z0, int z1,
                       const float *r1, const float *r2)
{
    const view o1 = c->out;
    const int64_t n = (int64_t)(z1 - z0) * plane;
    sm_activate(c->ctx->k, r1, o1.c, o1.p + z0 * plane * o1.ld, o1.ld, n, o1.c, SM_ACT_NONE);
    if (o2->p)
        sm_activate(c->ctx->k, r2, o2->c, o2->p + z0 * plane * o2->ld, o2->ld, n, o2->c,
                    SM_ACT_NONE);
}

/* SM_OP_CONV_SLABS (graph.h). The projection runs a plane at a time, as
 * SM_OP_POINTWISE does, so that both give the same values. */
static sm_status run_conv_slabs(const op_call *c)
{
    const sm_slab_conv *s = c->nd->obj;
    const view a = c->a;
    const view o2 = c->nd->out2 >= 0 ? get_view(c->ctx->g, c->nd->out2, c->ctx->rd) : (view){0};
    const run_dims *rd = c->ctx->rd;
    const int l = a.level, d = rd->d[l], h = rd->h[l], w = rd->w[l];
    const int64_t plane = (int64_t)h * w;
    if (!slab_safe(&a, &c->out, plane, c->n) || (o2.p && !slab_safe(&a, &o2, plane, c->n)))
        return sm_fail(SEGMAMBA_E_ARG, "graph: a slab convolution's output overlaps input it "
                                       "has still to read");
    const int slab = sm_conv_tile(s->conv), c1 = c->out.c, c2 = o2.p ? o2.c : 0;
    const size_t slot_floats = (size_t)slab * (size_t)plane * (size_t)(c1 + c2);
    float *ring = in1_view(c).p;
    sm_status st = SEGMAMBA_OK;
    int prev = -1; /* the first plane of the slab waiting in the ring, or -1 */
    for (int z0 = 0; z0 < d && st == SEGMAMBA_OK; z0 += slab) {
        const int z1 = z0 + slab < d ? z0 + slab : d;
        float *r1 = ring + (size_t)(z0 / slab % 2) * slot_floats;
        float *r2 = r1 + (size_t)slab * (size_t)plane * (size_t)c1;
        st = sm_conv_forward_planes(s->conv, a.p, a.ld, d, h, w, z0, z1, r1, c1, NULL);
        for (int z = z0; z < z1 && st == SEGMAMBA_OK && s->proj; z++)
            st = sm_conv_forward(s->proj, a.p + z * plane * a.ld, a.ld, 1, h, w,
                                 r2 + (size_t)(z - z0) * (size_t)plane * (size_t)c2, c2);
        if (st == SEGMAMBA_OK && prev >= 0) {
            const float *p1 = ring + (size_t)(prev / slab % 2) * slot_floats;
            slab_flush(c, &o2, plane, prev, z0, p1, p1 + (size_t)slab * (size_t)plane * c1);
        }
        prev = z0;
    }
    if (st == SEGMAMBA_OK && prev >= 0) {
        const float *p1 = ring + (size_t)(prev / slab % 2) * slot_floats;
        slab_flush(c, &o2, plane, prev, d, p1, p1 + (size_t)slab * (size_t)plane * c1);
    }
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
static size_t conv_bytes(const void *obj) { return sm_conv_weight_bytes(obj); }
static size_t se_bytes(const void *obj) { return sm_se_weight_bytes(obj); }
static size_t convt2_bytes(const void *obj) { return sm_convt2_weight_bytes(obj); }
static size_t mamba_bytes(const void *obj) { return sm_mamba_weight_bytes(obj); }

static size_t slab_conv_bytes(const void *obj)
{
    const sm_slab_conv *s = obj;
    return sm_conv_weight_bytes(s->conv) + sm_conv_weight_bytes(s->proj);
}

static const op_desc ops[] = {
    [SM_OP_CONV] = {"conv", SM_KIND_CONV, 0, run_conv, free_conv, conv_bytes},
    [SM_OP_CONVT2] = {"convT2", SM_KIND_CONV, 0, run_convt2, free_convt2, convt2_bytes},
    [SM_OP_INORM] = {"inorm", SM_KIND_NORM, 0, run_inorm, NULL, NULL},
    [SM_OP_ADD] = {"add", SM_KIND_OTHER, 0, run_add, NULL, NULL},
    [SM_OP_ACT] = {"act", SM_KIND_OTHER, 0, run_act, NULL, NULL},
    [SM_OP_FUE] = {"fue", SM_KIND_OTHER, 0, run_fue, NULL, NULL},
    [SM_OP_MAMBA] = {"mamba", SM_KIND_OTHER, 1, run_mamba, free_mamba, mamba_bytes},
    [SM_OP_INORM_ADD] = {"inorm+add", SM_KIND_NORM, 0, run_inorm_add, NULL, NULL},
    [SM_OP_INORM_ADD_INORM] = {"inorm+add+inorm", SM_KIND_NORM, 0, run_inorm_add_inorm, NULL, NULL},
    [SM_OP_POINTWISE] = {"pointwise", SM_KIND_CONV, 0, run_pointwise, free_conv, conv_bytes},
    [SM_OP_SE] = {"se", SM_KIND_OTHER, 0, run_se, free_se, se_bytes},
    [SM_OP_COPY] = {"copy", SM_KIND_OTHER, 0, run_copy, NULL, NULL},
    [SM_OP_CONV_SLABS] = {"conv slabs", SM_KIND_CONV, 0, run_conv_slabs, free_slab_conv,
                          slab_conv_bytes},
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

size_t sm_graph_weight_bytes(const sm_graph *g)
{
    size_t bytes = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const sm_node *nd = &g->nodes[i];
        if (nd->obj && ops[nd->op].weight_bytes) bytes += ops[nd->op].weight_bytes(nd->obj);
    }
    return bytes;
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
    const int64_t voxels = b->planes ? (int64_t)b->planes * rd->h[b->level] * rd->w[b->level]
                                     : level_voxels(rd, b->level);
    size_t n = b->fixed ? b->fixed : (size_t)voxels * (size_t)b->channels;
    return (n + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
}

/* A buffer and the value it is sorted by: qsort has no context argument,
 * so the key travels with the index (no file-scope graph pointer, so that
 * two graphs can be planned on two threads at once). */
typedef struct keyed {
    int64_t key;
    int64_t end; /* a forbidden range's end (below) */
    int buf;
} keyed;

static int by_key_desc(const void *x, const void *y)
{
    const keyed *a = x, *b = y;
    return a->key < b->key ? 1 : a->key > b->key ? -1 : a->buf - b->buf;
}

static int by_key(const void *x, const void *y) { return by_key_desc(y, x); }

/* A part of a buffer's memory with its own lifetime: the whole buffer, or
 * its first and late parts when it is split. */
typedef struct piece {
    int64_t at, size; /* floats from the buffer's offset */
    int first, last;
} piece;

static int pieces_of(const sm_buffer *b, const run_dims *rd, piece p[2])
{
    if (!b->split) {
        p[0] = (piece){0, (int64_t)b->size, b->first, b->last};
        return 1;
    }
    const int64_t head = (int64_t)b->split * level_voxels(rd, b->level);
    p[0] = (piece){0, head, b->first, b->head_last >= 0 ? b->head_last : b->last};
    p[1] = (piece){head, (int64_t)b->size - head, b->late_first >= 0 ? b->late_first : b->first,
                   b->last};
    return 2;
}

static sm_status place(sm_graph *g, const run_dims *rd, size_t *arena_floats)
{
    /* Per buffer: its place in the order, then up to 4 forbidden ranges
     * for each buffer placed before it (2 pieces against 2). */
    keyed *order = malloc((size_t)g->n_bufs * 5 * sizeof *order);
    if (!order) return sm_fail(SEGMAMBA_E_NOMEM, "forward: out of memory planning buffers");
    keyed *ranges = order + g->n_bufs;
    for (int i = 0; i < g->n_bufs; i++) {
        g->bufs[i].size = buffer_floats(&g->bufs[i], rd);
        order[i] = (keyed){(int64_t)g->bufs[i].size, 0, i};
    }
    qsort(order, (size_t)g->n_bufs, sizeof *order, by_key_desc);
    size_t total = 0;
    for (int k = 0; k < g->n_bufs; k++) {
        sm_buffer *b = &g->bufs[order[k].buf];
        piece pb[2], po[2];
        const int nb = pieces_of(b, rd, pb);
        /* Offsets at which a piece of b would overlap a piece of a buffer
         * already placed that is live at the same time: [key, end). */
        int n = 0;
        for (int j = 0; j < k; j++) {
            const sm_buffer *o = &g->bufs[order[j].buf];
            const int no = pieces_of(o, rd, po);
            for (int x = 0; x < nb; x++)
                for (int y = 0; y < no; y++) {
                    if (pb[x].first > po[y].last || po[y].first > pb[x].last) continue;
                    const int64_t lo = (int64_t)o->offset + po[y].at;
                    ranges[n++] = (keyed){lo - pb[x].at - pb[x].size + 1,
                                          lo + po[y].size - pb[x].at, order[j].buf};
                }
        }
        qsort(ranges, (size_t)n, sizeof *ranges, by_key);
        /* The lowest offset outside them; a split buffer's parts end
         * anywhere, so each candidate is rounded up to the alignment. */
        int64_t at = 0;
        for (int j = 0; j < n && ranges[j].key <= at; j++)
            if (ranges[j].end > at)
                at = (ranges[j].end + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
        b->offset = (size_t)at;
        if (b->offset + b->size > total) total = b->offset + b->size;
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
