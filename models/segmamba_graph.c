/* The graph builder: the network as graph nodes, on the tensors the
 * checkpoint holds (checked first by sm_segmamba_check_weights). */
#include "segmamba_internal.h"

#include <stdarg.h>
#include <stdio.h>

/* ---- the graph ----------------------------------------------------------- */

typedef struct builder {
    sm_graph *g;
    sm_weights *w;
    const segmamba_config *cfg;
    const sm_kernels *kernels;
    sm_conv_kind kind;
    sm_wino_use wino;
    int wino_tile;
    int slabs; /* the full-resolution blocks run in place (full_res_in_slabs) */
} builder;

static const float *tensor(builder *b, const char *fmt, ...) SM_PRINTF(2, 3);

/* Looks up a tensor already validated by sm_segmamba_check_weights. */
static const float *tensor(builder *b, const char *fmt, ...)
{
    char name[NAME_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const sm_tensor_entry *e = sm_weights_find(b->w, name);
    if (!e && b->g->status == SEGMAMBA_OK)
        b->g->status = sm_fail(SEGMAMBA_E_MODEL, "tensor '%s' is missing", name);
    return e ? e->data : NULL;
}

static void release(builder *b, const char *fmt, ...) SM_PRINTF(2, 3);

/* Frees a tensor the graph holds its own copy of. */
static void release(builder *b, const char *fmt, ...)
{
    char name[NAME_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    sm_weights_release(b->w, name);
}

/* The convolution named prefix, of cin -> cout channels, on the backend
 * the builder's choice gives it; NULL (g->status set) on failure. */
static sm_conv *make_conv(builder *b, int cin, int cout, int k, int stride, int pad, int dil,
                          int bias, sm_act act, const char *prefix)
{
    sm_graph *g = b->g;
    if (g->status != SEGMAMBA_OK) return NULL;
    const float *wt = tensor(b, "%s.weight", prefix);
    const float *bs = bias ? tensor(b, "%s.bias", prefix) : NULL;
    if (g->status != SEGMAMBA_OK) return NULL;
    sm_conv_params p = {.cin = cin,
                        .cout = cout,
                        .k = k,
                        .stride = stride,
                        .pad = pad,
                        .act = act,
                        .precision = b->cfg->bf16 ? SM_PREC_BF16 : SM_PREC_F32,
                        .kernels = b->kernels,
                        .dilation = dil};
    const sm_conv_choice use = sm_conv_pick(&p, b->wino, b->kind, b->wino_tile);
    p.tile = use.tile;
    sm_conv *c = NULL;
    sm_status st = sm_conv_create(use.kind, &p, wt, bs, &c);
    if (st != SEGMAMBA_OK) {
        g->status = sm_fail_wrap(st, "%s", prefix);
        return NULL;
    }
    release(b, "%s.weight", prefix);
    if (bias) release(b, "%s.bias", prefix);
    return c;
}

/* A convolution node of opcode op (SM_OP_CONV, or SM_OP_POINTWISE for a
 * 1x1x1 one): out = act(conv(x)), a new tensor unless out >= 0 is given. */
static int conv_op(builder *b, sm_opcode op, int x, int out, int cout, int k, int stride, int pad,
                   int dil, int bias, sm_act act, const char *prefix)
{
    sm_graph *g = b->g;
    sm_conv *c =
        make_conv(b, sm_graph_channels(g, x), cout, k, stride, pad, dil, bias, act, prefix);
    if (!c) return -1;
    if (out < 0) out = sm_graph_tensor(g, cout, sm_graph_level(g, x) + (stride == 2 ? 1 : 0));
    /* Scratch the layer needs while it runs (Winograd weights transformed
     * per forward) goes in the arena, where it shares memory with
     * activations that are not live then. */
    const size_t ws = op == SM_OP_CONV ? sm_conv_workspace_floats(c) : 0;
    const int work = ws ? sm_graph_workspace(g, ws) : -1;
    sm_graph_node(g, op, x, work, out, SM_ACT_NONE, c, 0);
    sm_graph_set_flops(g, 2.0 * k * k * k * sm_graph_channels(g, x) * cout /
                              ((double)stride * stride * stride));
    return out;
}

static int conv(builder *b, int x, int out, int cout, int k, int stride, int pad, int bias,
                sm_act act, const char *prefix)
{
    return conv_op(b, SM_OP_CONV, x, out, cout, k, stride, pad, 0, bias, act, prefix);
}

static int inorm(builder *b, int x, int out, sm_act act)
{
    if (out < 0) out = sm_graph_tensor(b->g, sm_graph_channels(b->g, x), sm_graph_level(b->g, x));
    sm_graph_node(b->g, SM_OP_INORM, x, -1, out, act, NULL, 0);
    return out;
}

static int add(builder *b, int x, int y, int out, sm_act act)
{
    if (out < 0) out = sm_graph_tensor(b->g, sm_graph_channels(b->g, x), sm_graph_level(b->g, x));
    sm_graph_node(b->g, SM_OP_ADD, x, y, out, act, NULL, 0);
    return out;
}

static int conv_same(builder *b, sm_opcode op, int x, int out, int cout, int k, int bias,
                     const char *fmt, va_list ap) SM_PRINTF(8, 0);

/* conv(x) for a stride-1 "same" convolution named by fmt, into out (a new
 * tensor if < 0). */
static int conv_same(builder *b, sm_opcode op, int x, int out, int cout, int k, int bias,
                     const char *fmt, va_list ap)
{
    char p[NAME_CAP];
    vsnprintf(p, sizeof p, fmt, ap);
    return conv_op(b, op, x, out, cout, k, 1, k / 2, 0, bias, SM_ACT_NONE, p);
}

static int conv_norm(builder *b, int x, int out, int cout, int k, int bias, sm_act act,
                     const char *fmt, ...) SM_PRINTF(8, 9);

/* act(IN(conv(x))), the norm in place on the convolution's output. */
static int conv_norm(builder *b, int x, int out, int cout, int k, int bias, sm_act act,
                     const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int y = conv_same(b, SM_OP_CONV, x, out, cout, k, bias, fmt, ap);
    va_end(ap);
    return inorm(b, y, y, act);
}

static int conv_plain(builder *b, sm_opcode op, int x, int out, int cout, int k, const char *fmt,
                      ...) SM_PRINTF(7, 8);

/* conv(x) without bias, its norm left to the node that consumes it. */
static int conv_plain(builder *b, sm_opcode op, int x, int out, int cout, int k, const char *fmt,
                      ...)
{
    va_list ap;
    va_start(ap, fmt);
    int y = conv_same(b, op, x, out, cout, k, 0, fmt, ap);
    va_end(ap);
    return y;
}

/* Where a residual block puts its tensors: values of the block's output
 * channels at its level, or -1 for fresh ones; out -1 writes the result
 * over a2. The full-resolution blocks are what set the peak memory, and
 * they run in memory their neighbours have finished with. */
typedef struct block_slots {
    int a1, a2; /* conv1's and conv2's outputs (dense: a convolution's) */
    int r;      /* the residual projection (any stride) */
    int out;
} block_slots;

static const block_slots FRESH = {-1, -1, -1, -1};

static int same_buffer(const sm_graph *g, int u, int v)
{
    return u >= 0 && v >= 0 && g->values[u].buf == g->values[v].buf;
}

/* MONAI UnetResBlock: lrelu(IN(conv2(a)) + r), r = IN(conv3(x)) when the
 * channels change, else x. The tail (both norms, the sum, the activation)
 * is one fused node: on the full-resolution blocks each separate pass over
 * the tensor costs as much as the norm itself. */
static int resblock(builder *b, const char *prefix, int x, int cout, block_slots s)
{
    sm_graph *g = b->g;
    int a = conv_norm(b, x, s.a1, cout, 3, 0, SM_ACT_LRELU, "%s.conv1.conv", prefix);
    const int down = sm_graph_channels(g, x) != cout;
    /* A projection that overwrites x runs before conv2, whose output may
     * take the rest of x's memory; any other runs after it, so that its
     * slot is live as briefly as can be. */
    const int r_over_x = down && same_buffer(g, s.r, x);
    int r = x;
    if (r_over_x) r = conv_plain(b, SM_OP_POINTWISE, x, s.r, cout, 1, "%s.conv3.conv", prefix);
    a = conv_plain(b, SM_OP_CONV, a, s.a2, cout, 3, "%s.conv2.conv", prefix);
    if (down && !r_over_x)
        r = conv_plain(b, s.r >= 0 ? SM_OP_POINTWISE : SM_OP_CONV, x, s.r, cout, 1, "%s.conv3.conv",
                       prefix);
    /* The result may overwrite a, whose last use it is. */
    const int out = s.out >= 0 ? s.out : a;
    sm_graph_node(g, down ? SM_OP_INORM_ADD_INORM : SM_OP_INORM_ADD, a, r, out, SM_ACT_LRELU, NULL,
                  0);
    return out;
}

/* Whether a 3x3x3 convolution of cin -> cout channels (a ResBlock's,
 * bias-free) goes to the Winograd backend. */
static int runs_winograd(const builder *b, int cin, int cout)
{
    const sm_conv_params p = {.cin = cin,
                              .cout = cout,
                              .k = 3,
                              .stride = 1,
                              .pad = 1,
                              .precision = b->cfg->bf16 ? SM_PREC_BF16 : SM_PREC_F32};
    return sm_conv_pick(&p, b->wino, b->kind, b->wino_tile).kind == SM_CONV_WINOGRAD;
}

/* Where an encoder ResBlock on x writes the skip of cat, into cat's
 * second half (skip). The first half of cat is free until the up block's
 * transposed convolution. Winograd convolutions read and write such
 * strided views directly (oneDNN would copy through full-size
 * temporaries), so with them the whole block runs inside cat: conv1 into
 * the first half, conv2 into the second, the projection into the first
 * once conv2 has read conv1's output. Otherwise encoder1 (full resolution,
 * where the peak memory is) still puts its projection in the first half;
 * the others take fresh tensors. */
static block_slots skip_slots(builder *b, int x, int cat, int skip, int first_level)
{
    sm_graph *g = b->g;
    if (g->status != SEGMAMBA_OK) return FRESH;
    const int cout = sm_graph_channels(g, skip);
    block_slots s = {.a1 = -1, .a2 = -1, .r = -1, .out = skip};
    const int inside =
        runs_winograd(b, sm_graph_channels(g, x), cout) && runs_winograd(b, cout, cout);
    if (inside || first_level) s.r = sm_graph_slice(g, cat, 0, cout);
    if (inside) {
        s.a1 = s.r;
        s.a2 = skip;
    }
    return s;
}

/* Whether the full-resolution blocks can run in place, in slabs of planes:
 * on the CPU, with the 3x3x3 layers of f -> f and 2f -> f channels on
 * Winograd with kept weights. The skip of encoder1 then stays dense in the
 * first half of its concatenation's memory, leaving the second half to the
 * layers between (sm_graph_late), and the up block's ResBlock and
 * decoder1 run inside the concatenation: the full resolution never holds
 * more than the concatenation's two halves (plus slab rings). Otherwise
 * conv1's output of each is a third full-resolution tensor. */
static int full_res_in_slabs(const builder *b)
{
    const segmamba_config *cfg = b->cfg;
    if (cfg->backend == SEGMAMBA_BACKEND_CUDA) return 0;
    const int f = cfg->feat[0];
    for (int i = 0; i < 2; i++) {
        const sm_conv_params p = {.cin = i ? f : 2 * f,
                                  .cout = f,
                                  .k = 3,
                                  .stride = 1,
                                  .pad = 1,
                                  .precision = cfg->bf16 ? SM_PREC_BF16 : SM_PREC_F32};
        const sm_conv_choice use = sm_conv_pick(&p, b->wino, b->kind, b->wino_tile);
        if (use.kind != SM_CONV_WINOGRAD || !sm_conv_winograd_keeps(&p, use.tile)) return 0;
    }
    return 1;
}

/* A full-resolution ResBlock in place (full_res_in_slabs): conv1 of x
 * into a1, with the projection of x into r when the channels change (then
 * both in slabs over x, whose memory a1 and r may take), the norm, conv2
 * in slabs over a1 into a1, and the tail into out (a1 when < 0; or a
 * denser value in the same memory, starting no later), which it returns. */
static int resblock_in_place(builder *b, const char *prefix, int x, int cout, int a1, int r,
                             int out)
{
    sm_graph *g = b->g;
    char p[NAME_CAP];
    const int cin = sm_graph_channels(g, x), down = cin != cout;
    if (down) {
        snprintf(p, sizeof p, "%s.conv1.conv", prefix);
        sm_conv *c1 = make_conv(b, cin, cout, 3, 1, 1, 0, 0, SM_ACT_NONE, p);
        snprintf(p, sizeof p, "%s.conv3.conv", prefix);
        sm_conv *c3 = c1 ? make_conv(b, cin, cout, 1, 1, 0, 0, 0, SM_ACT_NONE, p) : NULL;
        if (!c3) {
            sm_conv_free(c1);
            return -1;
        }
        sm_graph_slab_conv(g, c1, c3, x, a1, r);
    } else {
        conv_plain(b, SM_OP_CONV, x, a1, cout, 3, "%s.conv1.conv", prefix);
        r = x;
    }
    inorm(b, a1, a1, SM_ACT_LRELU);
    snprintf(p, sizeof p, "%s.conv2.conv", prefix);
    sm_conv *c2 = make_conv(b, cout, cout, 3, 1, 1, 0, 0, SM_ACT_NONE, p);
    if (!c2) return -1;
    sm_graph_slab_conv(g, c2, NULL, a1, a1, -1);
    if (out < 0) out = a1;
    sm_graph_node(g, down ? SM_OP_INORM_ADD_INORM : SM_OP_INORM_ADD, a1, r, out, SM_ACT_LRELU, NULL,
                  0);
    return out;
}

/* Gated spatial convolution; the released code adds the two branches. */
static int gsc(builder *b, int i, int x)
{
    const int C = sm_graph_channels(b->g, x);
    int x1 = conv_norm(b, x, -1, C, 3, 1, SM_ACT_RELU, "vit.gscs.%d.proj", i);
    x1 = conv_norm(b, x1, -1, C, 3, 1, SM_ACT_RELU, "vit.gscs.%d.proj2", i);
    int x2 = conv_norm(b, x, -1, C, 1, 1, SM_ACT_RELU, "vit.gscs.%d.proj3", i);
    add(b, x1, x2, x1, SM_ACT_NONE);
    int o = conv_norm(b, x1, -1, C, 1, 1, SM_ACT_RELU, "vit.gscs.%d.proj4", i);
    return add(b, o, x, o, SM_ACT_NONE);
}

/* SegMamba-V2's CB(k, p, dil) at vit.gscs.i.j.<path>: ReLU(IN(conv + bias)). */
static int conv_block_v2(builder *b, int x, int i, int j, int which)
{
    char p[NAME_CAP];
    snprintf(p, sizeof p, "vit.gscs.%d.%d.%s.block.0", i, j, lkc_convs[which].path);
    const int C = sm_graph_channels(b->g, x);
    int y = conv_op(b, SM_OP_CONV, x, -1, C, lkc_convs[which].k, 1, lkc_convs[which].pad,
                    lkc_convs[which].dil, 1, SM_ACT_NONE, p);
    if (y < 0) return -1;
    return inorm(b, y, y, SM_ACT_RELU);
}

/* SegMamba-V2's LargeKernelConv block vit.gscs.i.j: s = deep + short + x,
 * then the squeeze-excitation gate, in place on s. */
static int large_kernel_block(builder *b, int i, int j, int x)
{
    sm_graph *g = b->g;
    int d = conv_block_v2(b, x, i, j, 0);
    d = conv_block_v2(b, d, i, j, 1);
    d = conv_block_v2(b, d, i, j, 2);
    int s = conv_block_v2(b, x, i, j, 3);
    s = conv_block_v2(b, s, i, j, 4);
    if (g->status != SEGMAMBA_OK) return -1;
    add(b, d, s, d, SM_ACT_NONE);
    add(b, d, x, d, SM_ACT_NONE);
    const int C = sm_graph_channels(g, x), hid = se_hidden(C);
    const float *w1 = tensor(b, "vit.gscs.%d.%d.se.fc.0.weight", i, j),
                *b1 = tensor(b, "vit.gscs.%d.%d.se.fc.0.bias", i, j),
                *w2 = tensor(b, "vit.gscs.%d.%d.se.fc.2.weight", i, j),
                *b2 = tensor(b, "vit.gscs.%d.%d.se.fc.2.bias", i, j);
    if (g->status != SEGMAMBA_OK) return -1;
    sm_se *se = NULL;
    sm_status st = sm_se_create(C, hid, w1, b1, w2, b2, &se);
    if (st != SEGMAMBA_OK) {
        g->status = sm_fail_wrap(st, "vit.gscs.%d.%d.se", i, j);
        return -1;
    }
    release(b, "vit.gscs.%d.%d.se.fc.0.weight", i, j);
    release(b, "vit.gscs.%d.%d.se.fc.0.bias", i, j);
    release(b, "vit.gscs.%d.%d.se.fc.2.weight", i, j);
    release(b, "vit.gscs.%d.%d.se.fc.2.bias", i, j);
    sm_graph_node(g, SM_OP_SE, d, -1, d, SM_ACT_NONE, se, 0);
    sm_graph_set_flops(g, 2.0 * C);
    return d;
}

static void mamba_layer(builder *b, int i, int j, int x)
{
    sm_graph *g = b->g;
    if (g->status != SEGMAMBA_OK) return;
    const segmamba_config *cfg = b->cfg;
    const char *pre = "vit.stages";
    const int n_dir = type_directions(cfg->mamba_type);
    sm_mamba_weights w = {.n_dir = n_dir,
                          .orderings = is_v2(cfg) ? SM_V2_ORDERINGS : 1,
                          .norm_w = tensor(b, "%s.%d.%d.norm.weight", pre, i, j),
                          .norm_b = tensor(b, "%s.%d.%d.norm.bias", pre, i, j),
                          .in_proj = tensor(b, "%s.%d.%d.mamba.in_proj.weight", pre, i, j),
                          .out_proj = tensor(b, "%s.%d.%d.mamba.out_proj.weight", pre, i, j)};
    for (int s = 0; s < n_dir; s++) {
        const char *x = dir_suffix[s];
        w.dir[s].conv_w = tensor(b, "%s.%d.%d.mamba.conv1d%s.weight", pre, i, j, x);
        w.dir[s].conv_b = tensor(b, "%s.%d.%d.mamba.conv1d%s.bias", pre, i, j, x);
        w.dir[s].x_proj = tensor(b, "%s.%d.%d.mamba.x_proj%s.weight", pre, i, j, x);
        w.dir[s].dt_proj = tensor(b, "%s.%d.%d.mamba.dt_proj%s.weight", pre, i, j, x);
        w.dir[s].dt_bias = tensor(b, "%s.%d.%d.mamba.dt_proj%s.bias", pre, i, j, x);
        w.dir[s].A_log = tensor(b, "%s.%d.%d.mamba.A%s_log", pre, i, j, x);
        w.dir[s].D = tensor(b, "%s.%d.%d.mamba.D%s", pre, i, j, x);
    }
    if (g->status != SEGMAMBA_OK) return;
    sm_mamba *m = NULL;
    sm_status st = sm_mamba_create(cfg->feat[i], cfg->expand * cfg->feat[i], cfg->d_state,
                                   cfg->dt_rank[i], cfg->d_conv, &w, &m);
    if (st != SEGMAMBA_OK) {
        g->status = sm_fail_wrap(st, "Mamba layer %d.%d", i, j);
        return;
    }
    /* The layer holds its own copies of these. */
    for (int s = 0; s < n_dir; s++) {
        release(b, "%s.%d.%d.mamba.A%s_log", pre, i, j, dir_suffix[s]);
        release(b, "%s.%d.%d.mamba.conv1d%s.weight", pre, i, j, dir_suffix[s]);
    }
    const double flops = sm_mamba_flops_per_token(m);
    const int scratch = sm_graph_tensor(
        g, (int)sm_mamba_scratch_per_token(m, cfg->backend == SEGMAMBA_BACKEND_CUDA),
        sm_graph_level(g, x));
    /* In place: the layer reads all of x before it writes its result.
     * Without the slice direction nslices is unused (and need not divide
     * the token count). */
    sm_graph_node(g, SM_OP_MAMBA, x, scratch, x, SM_ACT_NONE, m,
                  n_dir == SM_DIRECTIONS ? cfg->nslices[i] : 1);
    sm_graph_set_flops(g, flops);
}

/* The skip feature of encoder stage i (both families): the MLP (1x1x1
 * convolutions with a GELU between) on the instance-normed stage output x,
 * and FUE when the model has it. */
static int skip_mlp(builder *b, int i, int x)
{
    const segmamba_config *cfg = b->cfg;
    char p[NAME_CAP];
    if (b->g->status != SEGMAMBA_OK) return -1;
    int n = inorm(b, x, -1, SM_ACT_NONE);
    snprintf(p, sizeof p, "vit.mlps.%d.fc1", i);
    int f1 = conv(b, n, -1, 2 * cfg->feat[i], 1, 1, 0, 1, SM_ACT_NONE, p);
    sm_graph_node(b->g, SM_OP_ACT, f1, -1, f1, SM_ACT_GELU, NULL, 0);
    snprintf(p, sizeof p, "vit.mlps.%d.fc2", i);
    int o = conv(b, f1, -1, cfg->feat[i], 1, 1, 0, 1, SM_ACT_NONE, p);
    if (cfg->fue) sm_graph_node(b->g, SM_OP_FUE, o, -1, o, SM_ACT_NONE, NULL, 0);
    return o;
}

/* Encoder stage i: returns the stage output (which continues to the next
 * stage) and stores the skip feature o_i in *skip. */
static int encoder_stage(builder *b, int i, int x, int *skip)
{
    const segmamba_config *cfg = b->cfg;
    char p[NAME_CAP];
    down_name(p, sizeof p, i);
    if (i == 0) {
        x = conv(b, x, -1, cfg->feat[0], 7, 2, 3, 1, SM_ACT_NONE, p);
    } else {
        int n = inorm(b, x, -1, SM_ACT_NONE);
        x = conv(b, n, -1, cfg->feat[i], 2, 2, 0, 1, SM_ACT_NONE, p);
    }
    x = gsc(b, i, x);
    for (int j = 0; j < cfg->depths[i]; j++) mamba_layer(b, i, j, x);
    *skip = skip_mlp(b, i, x);
    return x;
}

/* SegMamba-V2's encoder stage i (spec 7.2) on x (enc1 for stage 0). */
static int encoder_stage_v2(builder *b, int i, int x, int *skip)
{
    const segmamba_config *cfg = b->cfg;
    char p[NAME_CAP];
    snprintf(p, sizeof p, "vit.downsample_layers.%d.0", i);
    x = conv(b, x, -1, cfg->feat[i], 3, 2, 1, 1, SM_ACT_NONE, p);
    for (int j = 0; j < cfg->depths[i]; j++) x = large_kernel_block(b, i, j, x);
    if (i >= 2)
        for (int j = 0; j < cfg->depths[i]; j++) mamba_layer(b, i, j, x);
    *skip = skip_mlp(b, i, x);
    return x;
}

/* UNETR up block: the transposed convolution fills the first half of cat
 * (whose second half already holds the skip), then a ResBlock, which
 * projects cat into the first half of cat's memory and writes conv2's
 * output and its result into the second: the result is a packed value. */
static int up_block(builder *b, int k, int x, int cat)
{
    sm_graph *g = b->g;
    if (g->status != SEGMAMBA_OK) return -1;
    const int cin = sm_graph_channels(g, x), cout = sm_graph_channels(g, cat) / 2;
    const int in_place = k == 2 && b->slabs;
    if (in_place) { /* the skip, dense in the first half, to its place in cat */
        sm_graph_late(g, cat, cout);
        sm_graph_node(g, SM_OP_COPY, sm_graph_packed(g, cat, 0, cout), -1,
                      sm_graph_slice(g, cat, cout, cout), SM_ACT_NONE, NULL, 0);
    }
    sm_convt2 *t = NULL;
    const float *wt = tensor(b, "decoder%d.transp_conv.conv.weight", k);
    if (g->status != SEGMAMBA_OK) return -1;
    sm_status st = sm_convt2_create(cin, cout, wt, &t);
    if (st != SEGMAMBA_OK) {
        g->status = st;
        return -1;
    }
    release(b, "decoder%d.transp_conv.conv.weight", k);
    sm_graph_node(g, SM_OP_CONVT2, x, -1, sm_graph_slice(g, cat, 0, cout), SM_ACT_NONE, t, 0);
    sm_graph_set_flops(g, 2.0 * 8 * cin * cout);
    char p[NAME_CAP];
    snprintf(p, sizeof p, "decoder%d.conv_block", k);
    /* The result dense in the first half of cat's memory (the tail
     * compacts it there), so that decoder1 runs on dense tensors. */
    if (in_place)
        return resblock_in_place(b, p, cat, cout, sm_graph_slice(g, cat, 0, cout),
                                 sm_graph_slice(g, cat, cout, cout),
                                 sm_graph_packed(g, cat, 0, cout));
    const block_slots s = {.a1 = -1,
                           .a2 = sm_graph_packed(g, cat, cout, cout),
                           .r = sm_graph_packed(g, cat, 0, cout),
                           .out = -1};
    const int out = resblock(b, p, cat, cout, s);
    /* The result is dense in the second half; the first (the projection)
     * is free from here, but for cat[0] outside slabs, where decoder1 runs
     * conv1 into it. */
    if (k > 2) sm_graph_early(g, cat, cout);
    return out;
}

sm_status sm_segmamba_build(sm_weights *w, const segmamba_config *cfg, const sm_kernels *k,
                            sm_conv_kind kind, sm_wino_use wino, int wino_tile, sm_graph **out)
{
    *out = NULL;
    sm_graph *g = sm_graph_create();
    if (!g) return sm_fail(SEGMAMBA_E_NOMEM, "out of memory building the graph");
    builder b = {.g = g,
                 .w = w,
                 .cfg = cfg,
                 .kernels = k,
                 .kind = kind,
                 .wino = wino,
                 .wino_tile = wino_tile};
    b.slabs = full_res_in_slabs(&b);
    const int *f = cfg->feat;

    int input = sm_graph_tensor(g, cfg->in_chans, 0);
    /* Each skip is written straight into the second half of the buffer its
     * up block concatenates into: cat[k] at level k-2 for decoder k. */
    int cat[4];
    for (int k = 0; k < 4; k++) cat[k] = sm_graph_tensor(g, 2 * f[k], k);
    int skip_slot[4];
    for (int k = 0; k < 4; k++) skip_slot[k] = sm_graph_slice(g, cat[k], f[k], f[k]);

    /* In slabs, encoder1's skip stays dense in the first half of cat[0]
     * until decoder2 (conv2 writes it there, the tail over it). */
    const int head = sm_graph_packed(g, cat[0], 0, f[0]);
    const block_slots enc1_slots = b.slabs
                                       ? (block_slots){.a1 = -1, .a2 = head, .r = -1, .out = head}
                                       : skip_slots(&b, input, cat[0], skip_slot[0], 1);
    const int enc1 = resblock(&b, "encoder1.layer", input, f[0], enc1_slots);
    int x = input, o[4];
    if (cfg->family == SEGMAMBA_FAMILY_V2) { /* the encoder runs on enc1 */
        x = enc1;
        for (int i = 0; i < SEGMAMBA_STAGES; i++) x = encoder_stage_v2(&b, i, x, &o[i]);
    } else {
        for (int i = 0; i < SEGMAMBA_STAGES; i++) x = encoder_stage(&b, i, x, &o[i]);
    }
    char p[NAME_CAP];
    for (int i = 1; i < 4; i++) {
        snprintf(p, sizeof p, "encoder%d.layer", i + 1);
        resblock(&b, p, o[i - 1], f[i], skip_slots(&b, o[i - 1], cat[i], skip_slot[i], 0));
    }
    int h = resblock(&b, "encoder5.layer", o[3], cfg->hidden, FRESH);
    int d = h;
    for (int k = 5; k >= 2; k--) d = up_block(&b, k, d, cat[k - 2]);
    /* decoder2 left its result dense in one half of cat[0]'s memory (the
     * first in slabs, else the second), and has finished with the other. */
    if (b.slabs)
        d = resblock_in_place(&b, "decoder1.layer", d, f[0], sm_graph_packed(g, cat[0], f[0], f[0]),
                              -1, -1);
    else
        d = resblock(&b, "decoder1.layer", d, f[0],
                     (block_slots){.a1 = head, .a2 = -1, .r = -1, .out = -1});
    int logits = conv(&b, d, -1, cfg->out_chans, 1, 1, 0, 1, SM_ACT_NONE, "out.conv.conv");

    sm_status st = sm_graph_finish(g, input, logits);
    if (st != SEGMAMBA_OK) {
        sm_graph_free(g);
        return st;
    }
    *out = g;
    return SEGMAMBA_OK;
}
