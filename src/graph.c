#include "graph.h"

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

static int add_value(sm_graph *g, int buf, int c0, int c)
{
    if (g->status != SEGMAMBA_OK) return -1;
    if (!grow((void **)&g->values, &g->cap_values, g->n_values, sizeof *g->values)) {
        g->status = sm_fail(SEGMAMBA_E_NOMEM, "building the graph: out of memory");
        return -1;
    }
    g->values[g->n_values] = (sm_value){.buf = buf, .c0 = c0, .c = c};
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
    return add_value(g, g->n_bufs++, 0, channels);
}

int sm_graph_slice(sm_graph *g, int v, int c0, int c)
{
    if (g->status != SEGMAMBA_OK) return -1;
    const sm_value *p = &g->values[v];
    return add_value(g, p->buf, p->c0 + c0, c);
}

int sm_graph_channels(const sm_graph *g, int v) { return g->values[v].c; }
int sm_graph_level(const sm_graph *g, int v) { return g->bufs[g->values[v].buf].level; }

static void free_obj(sm_opcode op, void *obj)
{
    switch (op) {
    case SM_OP_CONV: sm_conv_free(obj); break;
    case SM_OP_CONVT2: sm_convt2_free(obj); break;
    case SM_OP_MAMBA: sm_mamba_free(obj); break;
    default: break;
    }
}

void sm_graph_set_flops(sm_graph *g, double flops_per_voxel)
{
    if (g->status == SEGMAMBA_OK && g->n_nodes > 0)
        g->nodes[g->n_nodes - 1].flops_per_voxel = flops_per_voxel;
}

void sm_graph_node(sm_graph *g, sm_opcode op, int in0, int in1, int out, sm_pw_act act,
                   void *obj, int64_t nslices)
{
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

static sm_op_kind op_kind(sm_opcode op)
{
    switch (op) {
    case SM_OP_CONV:
    case SM_OP_CONVT2: return SM_KIND_CONV;
    case SM_OP_INORM: return SM_KIND_NORM;
    default: return SM_KIND_OTHER;
    }
}

/* Pointer, pixel stride and level of a value. */
typedef struct view {
    float *p;
    int ld, c, level;
} view;

static view get_view(const sm_graph *g, int v)
{
    const sm_value *val = &g->values[v];
    const sm_buffer *b = &g->bufs[val->buf];
    return (view){.p = b->data + val->c0, .ld = b->channels, .c = val->c, .level = b->level};
}

static sm_status run_node(sm_graph *g, const sm_node *nd, const run_dims *rd)
{
    view out = get_view(g, nd->out);
    view a = get_view(g, nd->in0);
    const int64_t n = level_voxels(rd, a.level);
    const int l = a.level;
    switch (nd->op) {
    case SM_OP_CONV:
        return sm_conv_forward(nd->obj, a.p, a.ld, rd->d[l], rd->h[l], rd->w[l], out.p, out.ld);
    case SM_OP_CONVT2:
        return sm_convt2_forward(nd->obj, a.p, a.ld, rd->d[l], rd->h[l], rd->w[l], out.p, out.ld);
    case SM_OP_INORM: return sm_instance_norm(a.p, a.ld, out.p, out.ld, n, a.c, nd->act);
    case SM_OP_ADD: {
        view b = get_view(g, nd->in1);
        sm_add(a.p, a.ld, b.p, b.ld, out.p, out.ld, n, a.c, nd->act);
        return SEGMAMBA_OK;
    }
    case SM_OP_ACT: sm_activate(a.p, a.ld, out.p, out.ld, n, a.c, nd->act); return SEGMAMBA_OK;
    case SM_OP_FUE: sm_fue(a.p, a.ld, out.p, out.ld, n, a.c); return SEGMAMBA_OK;
    case SM_OP_MAMBA:
        return sm_mamba_forward(nd->obj, a.p, a.ld, out.p, out.ld, n, nd->nslices, g->seconds);
    }
    return sm_fail(SEGMAMBA_E_ARG, "graph: unknown op %d", (int)nd->op);
}

static void release(sm_graph *g)
{
    for (int i = 0; i < g->n_bufs; i++) {
        free(g->bufs[i].data);
        g->bufs[i].data = NULL;
    }
}

static sm_status allocate(sm_graph *g, int node, const run_dims *rd)
{
    for (int i = 0; i < g->n_bufs; i++) {
        sm_buffer *b = &g->bufs[i];
        if (b->first != node || b->data) continue;
        size_t count = (size_t)level_voxels(rd, b->level) * (size_t)b->channels;
        b->data = malloc(count * sizeof(float));
        if (!b->data)
            return sm_fail(SEGMAMBA_E_NOMEM, "forward: cannot allocate %zu MiB for an activation",
                           count * sizeof(float) >> 20);
    }
    return SEGMAMBA_OK;
}

static void free_dead(sm_graph *g, int node)
{
    for (int i = 0; i < g->n_bufs; i++) {
        if (g->bufs[i].last == node) {
            free(g->bufs[i].data);
            g->bufs[i].data = NULL;
        }
    }
}

sm_status sm_graph_run(sm_graph *g, const float *input, int d, int h, int w, float *output)
{
    run_dims rd;
    for (int l = 0; l < 8; l++) {
        rd.d[l] = d >> l;
        rd.h[l] = h >> l;
        rd.w[l] = w >> l;
    }
    memset(g->seconds, 0, sizeof g->seconds);
    g->flops = 0.0;
    sm_status st = allocate(g, -1, &rd);
    if (st == SEGMAMBA_OK) {
        view in = get_view(g, g->input);
        sm_to_channels_last(input, in.c, level_voxels(&rd, in.level), in.p, in.ld);
    }
    for (int i = 0; i < g->n_nodes && st == SEGMAMBA_OK; i++) {
        st = allocate(g, i, &rd);
        if (st != SEGMAMBA_OK) break;
        const sm_node *nd = &g->nodes[i];
        double t0 = sm_now_seconds();
        st = run_node(g, nd, &rd);
        /* A Mamba layer reports its own parts (norm, scan, GEMMs). */
        if (nd->op != SM_OP_MAMBA) g->seconds[op_kind(nd->op)] += sm_now_seconds() - t0;
        g->flops += nd->flops_per_voxel *
                    (double)level_voxels(&rd, g->bufs[g->values[nd->in0].buf].level);
        free_dead(g, i);
    }
    if (st == SEGMAMBA_OK) {
        view out = get_view(g, g->output);
        sm_from_channels_last(out.p, out.ld, out.c, level_voxels(&rd, out.level), output);
    }
    release(g);
    return st;
}

void sm_graph_free(sm_graph *g)
{
    if (!g) return;
    release(g);
    for (int i = 0; i < g->n_nodes; i++) free_obj(g->nodes[i].op, g->nodes[i].obj);
    free(g->nodes);
    free(g->values);
    free(g->bufs);
    free(g);
}
