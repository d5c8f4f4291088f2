/* The graph runner's memory reuse: packed values (a narrower dense tensor in
 * a wider buffer's memory) and the pointwise-convolution node that may write
 * a strided view or over its own input, against a double-precision 1x1x1
 * convolution, with every convolution backend built in. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "engine/graph.h"

enum { D = 3, H = 4, W = 5, NVOX = D * H * W, CIN = 6, COUT = 3 };

static float weight[COUT * CIN]; /* PyTorch (cout, cin, 1, 1, 1) */
static float input[CIN * NVOX];  /* NCDHW */

static sm_conv *pointwise_conv(sm_conv_kind kind)
{
    const sm_conv_params p = {.cin = CIN, .cout = COUT, .k = 1, .stride = 1};
    sm_conv *c = NULL;
    CHECK(sm_conv_create(kind, &p, weight, NULL, &c) == SEGMAMBA_OK);
    return c;
}

/* Channel co of voxel v of the 1x1x1 convolution of the input. */
static double conv_ref(int co, int v)
{
    double s = 0;
    for (int ci = 0; ci < CIN; ci++) s += (double)weight[co * CIN + ci] * input[ci * NVOX + v];
    return s;
}

/* out is NCDHW with the convolution's channels from channel c0 on. */
static double max_conv_err(const float *out, int c0)
{
    double e = 0;
    for (int co = 0; co < COUT; co++)
        for (int v = 0; v < NVOX; v++) {
            double d = fabs(conv_ref(co, v) - out[(c0 + co) * NVOX + v]);
            if (!(d <= e)) e = d;
        }
    return e;
}

/* x (CIN channels) -> its projection packed in x's own memory from base
 * times the voxels on; the run's status, the output and the arena size. */
static sm_status run_packed_projection(sm_conv_kind kind, int base, float *out, size_t *arena)
{
    sm_graph *g = sm_graph_create();
    const int x = sm_graph_tensor(g, CIN, 0);
    const int r = sm_graph_packed(g, x, base, COUT);
    sm_graph_node(g, SM_OP_POINTWISE, x, -1, r, SM_ACT_NONE, pointwise_conv(kind), 0);
    CHECK(sm_graph_finish(g, x, r) == SEGMAMBA_OK);
    const sm_status st = sm_graph_run(g, sm_kernels_get(), input, D, H, W, out);
    *arena = g->planned_floats;
    sm_graph_free(g);
    return st;
}

/* The projection overwrites its input: the result takes the first COUT
 * channels' worth of the input buffer's memory, and the arena holds that
 * buffer only. */
static void test_in_place(sm_conv_kind kind)
{
    float out[COUT * NVOX];
    size_t arena = 0;
    CHECK(run_packed_projection(kind, 0, out, &arena) == SEGMAMBA_OK);
    const double e = max_conv_err(out, 0);
    CHECK_MSG(e < 1e-5, "%s: in-place pointwise: max err %g", sm_conv_kind_name(kind), e);
    CHECK_MSG(arena == (NVOX * CIN + 15) / 16 * 16, "arena %zu floats", arena);
}

/* Into a channel slice of a wider buffer whose other channels hold a copy
 * of the input, which must come through untouched. */
static void test_strided(sm_conv_kind kind)
{
    sm_graph *g = sm_graph_create();
    const int x = sm_graph_tensor(g, CIN, 0);
    const int y = sm_graph_tensor(g, CIN + COUT, 0);
    sm_graph_node(g, SM_OP_ACT, x, -1, sm_graph_slice(g, y, 0, CIN), SM_ACT_NONE, NULL, 0);
    sm_graph_node(g, SM_OP_POINTWISE, x, -1, sm_graph_slice(g, y, CIN, COUT), SM_ACT_NONE,
                  pointwise_conv(kind), 0);
    CHECK(sm_graph_finish(g, x, y) == SEGMAMBA_OK);
    float out[(CIN + COUT) * NVOX];
    CHECK(sm_graph_run(g, sm_kernels_get(), input, D, H, W, out) == SEGMAMBA_OK);
    CHECK(memcmp(out, input, sizeof input) == 0);
    const double e = max_conv_err(out, CIN);
    CHECK_MSG(e < 1e-5, "%s: strided pointwise: max err %g", sm_conv_kind_name(kind), e);
    sm_graph_free(g);
}

/* A result that starts after its input in the same memory would overwrite
 * voxels not yet read: refused when it runs. */
static void test_overlap_refused(void)
{
    float out[COUT * NVOX];
    size_t arena = 0;
    CHECK(run_packed_projection(SM_CONV_REF, 1, out, &arena) == SEGMAMBA_E_ARG);
    /* And a packed value must fit in its buffer. */
    sm_graph *g = sm_graph_create();
    const int t = sm_graph_tensor(g, CIN, 0);
    CHECK(sm_graph_packed(g, t, CIN - COUT + 1, COUT) == -1);
    CHECK(g->status == SEGMAMBA_E_ARG);
    sm_graph_free(g);
}

/* A Winograd layer whose transformed weights are not kept (above 4 MiB:
 * 200 -> 100 channels, F(4,3), 18.5 MiB) gets a workspace in the arena of
 * a fixed size, whatever the input size, beside the live buffers; its
 * output is the same, bit for bit, as a forward with a buffer of its own. */
static void test_workspace(void)
{
    enum { WC = 200, WO = 100 };
    float *w = malloc((size_t)WO * WC * 27 * sizeof *w);
    float *x = malloc((size_t)WC * NVOX * 2 * sizeof *x);
    float *got = malloc((size_t)WO * NVOX * 2 * sizeof *got);
    float *want = malloc((size_t)WO * NVOX * 2 * sizeof *want);
    float *xl = malloc((size_t)WC * NVOX * 2 * sizeof *xl);
    CHECK(w && x && got && want && xl);
    for (size_t i = 0; i < (size_t)WO * WC * 27; i++) w[i] = (float)check_uniform(-0.1, 0.1);
    for (size_t i = 0; i < (size_t)WC * NVOX * 2; i++) x[i] = (float)check_uniform(-1, 1);
    const sm_conv_params p = {.cin = WC, .cout = WO, .k = 3, .stride = 1, .pad = 1, .tile = 4};
    sm_conv *c = NULL;
    CHECK(sm_conv_create(SM_CONV_WINOGRAD, &p, w, NULL, &c) == SEGMAMBA_OK);
    const size_t ws = sm_conv_workspace_floats(c);
    CHECK_MSG(ws == (size_t)216 * WC * 112, "workspace %zu floats", ws);
    sm_graph *g = sm_graph_create();
    const int in = sm_graph_tensor(g, WC, 0);
    const int out = sm_graph_tensor(g, WO, 0);
    sm_graph_node(g, SM_OP_CONV, in, sm_graph_workspace(g, ws), out, SM_ACT_NONE, c, 0);
    CHECK(sm_graph_finish(g, in, out) == SEGMAMBA_OK);
    /* two input sizes: the workspace keeps its size, the tensors follow */
    static const int sizes[2][3] = {{D, H, W}, {2 * D, H, W}};
    for (int k = 0; k < 2; k++) {
        const int d = sizes[k][0], nvox = d * H * W;
        CHECK(sm_graph_run(g, sm_kernels_get(), x, d, H, W, got) == SEGMAMBA_OK);
        const size_t round = 16, tensors = ((size_t)nvox * WC + round - 1) / round * round +
                                           ((size_t)nvox * WO + round - 1) / round * round;
        CHECK_MSG(g->planned_floats == tensors + ws, "arena %zu floats, expected %zu",
                  g->planned_floats, tensors + ws);
        /* the same layer alone, through sm_conv_forward (channels-last) */
        for (int v = 0; v < nvox; v++)
            for (int ci = 0; ci < WC; ci++) xl[(size_t)v * WC + ci] = x[(size_t)ci * nvox + v];
        float *yl = malloc((size_t)nvox * WO * sizeof *yl);
        CHECK(yl && sm_conv_forward(c, xl, WC, d, H, W, yl, WO) == SEGMAMBA_OK);
        for (int v = 0; v < nvox; v++)
            for (int co = 0; co < WO; co++) want[(size_t)co * nvox + v] = yl[(size_t)v * WO + co];
        CHECK_MSG(memcmp(got, want, (size_t)nvox * WO * sizeof *got) == 0,
                  "a layer with its workspace in the arena differs from one without (%dx%dx%d)", d,
                  H, W);
        free(yl);
    }
    sm_graph_free(g);
    free(w);
    free(x);
    free(got);
    free(want);
    free(xl);
}

/* ---- blocks in place: slab convolutions, copies, split buffers ---------- */

enum { SC = 10, SO = 5 }; /* a 2 SO-channel concatenation and its halves */

static sm_conv *slab_conv3(const float *w, int cin, int cout, int tile)
{
    const sm_conv_params p = {
        .cin = cin, .cout = cout, .k = 3, .stride = 1, .pad = 1, .tile = tile};
    sm_conv *c = NULL;
    CHECK(sm_conv_create(SM_CONV_WINOGRAD, &p, w, NULL, &c) == SEGMAMBA_OK);
    return c;
}

static sm_conv *slab_proj(const float *w)
{
    const sm_conv_params p = {.cin = SC, .cout = SO, .k = 1, .stride = 1};
    sm_conv *c = NULL;
    CHECK(sm_conv_create(SM_CONV_REF, &p, w, NULL, &c) == SEGMAMBA_OK);
    return c;
}

/* An up block's ResBlock in place: conv1 (SC -> SO) and the projection of
 * x into x's own two halves in slabs, then conv2 in slabs over the first
 * half, into it. The same as plain convolution and pointwise nodes into a
 * fresh buffer, bit for bit, for every tile, at depths that are not
 * multiples of it; a projection without its output, and a direct
 * convolution, are refused when the node is added; an output that starts
 * after its input in the same memory, when it runs. */
static void test_slab_conv(void)
{
    float *w1 = check_random_floats(SO * SC * 27, -0.2, 0.2),
          *w2 = check_random_floats(SO * SO * 27, -0.3, 0.3);
    float *wp = check_random_floats(SO * SC, -0.5, 0.5);
    static const int depths[] = {1, 7, 11};
    for (int m = 2; m <= 4; m++)
        for (size_t k = 0; k < sizeof depths / sizeof *depths; k++) {
            const int d = depths[k], n = d * H * W;
            float *x = check_random_floats((int64_t)SC * n, -1, 1);
            float *want = check_filled_floats((int64_t)SC * n, 0),
                  *got = check_filled_floats((int64_t)SC * n, 0);
            /* plain nodes */
            sm_graph *g = sm_graph_create();
            int in = sm_graph_tensor(g, SC, 0), o = sm_graph_tensor(g, SC, 0),
                t = sm_graph_tensor(g, SO, 0);
            sm_graph_node(g, SM_OP_CONV, in, -1, sm_graph_slice(g, o, 0, SO), SM_ACT_NONE,
                          slab_conv3(w1, SC, SO, m), 0);
            sm_graph_node(g, SM_OP_POINTWISE, in, -1, sm_graph_slice(g, o, SO, SO), SM_ACT_NONE,
                          slab_proj(wp), 0);
            sm_graph_node(g, SM_OP_CONV, sm_graph_slice(g, o, 0, SO), -1, t, SM_ACT_NONE,
                          slab_conv3(w2, SO, SO, m), 0);
            sm_graph_node(g, SM_OP_ACT, t, -1, sm_graph_slice(g, o, 0, SO), SM_ACT_NONE, NULL, 0);
            CHECK(sm_graph_finish(g, in, o) == SEGMAMBA_OK);
            CHECK(sm_graph_run(g, sm_kernels_get(), x, d, H, W, want) == SEGMAMBA_OK);
            sm_graph_free(g);
            /* in place, in slabs */
            g = sm_graph_create();
            in = sm_graph_tensor(g, SC, 0);
            const int a1 = sm_graph_slice(g, in, 0, SO);
            sm_graph_slab_conv(g, slab_conv3(w1, SC, SO, m), slab_proj(wp), in, a1,
                               sm_graph_slice(g, in, SO, SO));
            sm_graph_slab_conv(g, slab_conv3(w2, SO, SO, m), NULL, a1, a1, -1);
            CHECK(sm_graph_finish(g, in, in) == SEGMAMBA_OK);
            CHECK(sm_graph_run(g, sm_kernels_get(), x, d, H, W, got) == SEGMAMBA_OK);
            /* the input's buffer and the two slab rings of 2 m planes */
            const size_t round = 16,
                         ring = ((size_t)2 * m * H * W * SC + round - 1) / round * round;
            CHECK_MSG(g->planned_floats == ((size_t)n * SC + round - 1) / round * round + ring,
                      "arena %zu floats", g->planned_floats);
            CHECK_MSG(memcmp(want, got, (size_t)SC * n * sizeof *got) == 0,
                      "tile %d, depth %d: the block in place in slabs differs from plain nodes", m,
                      d);
            sm_graph_free(g);
            free(x);
            free(want);
            free(got);
        }
    sm_graph *g = sm_graph_create();
    int in = sm_graph_tensor(g, SC, 0);
    sm_graph_slab_conv(g, slab_conv3(w1, SC, SO, 4), slab_proj(wp), in,
                       sm_graph_slice(g, in, 0, SO), -1);
    CHECK(g->status == SEGMAMBA_E_ARG && g->n_nodes == 0);
    sm_graph_free(g);
    g = sm_graph_create();
    in = sm_graph_tensor(g, SC, 0);
    sm_graph_slab_conv(g, slab_proj(wp), NULL, in, sm_graph_tensor(g, SO, 0), -1);
    CHECK(g->status == SEGMAMBA_E_ARG && g->n_nodes == 0);
    sm_graph_free(g);
    g = sm_graph_create();
    in = sm_graph_tensor(g, SC, 0);
    const int late = sm_graph_packed(g, in, SO, SO);
    sm_graph_slab_conv(g, slab_conv3(w1, SC, SO, 2), NULL, in, late, -1);
    CHECK(sm_graph_finish(g, in, late) == SEGMAMBA_OK);
    float *x = check_random_floats((int64_t)SC * 8 * H * W, -1, 1),
          *y = check_filled_floats((int64_t)SO * 8 * H * W, 0);
    CHECK(sm_graph_run(g, sm_kernels_get(), x, 8, H, W, y) == SEGMAMBA_E_ARG);
    sm_graph_free(g);
    free(x);
    free(y);
    free(w1);
    free(w2);
    free(wp);
}

/* A skip kept dense in the first half of its concatenation while other
 * tensors come and go (they may take the second half's memory: the arena
 * is smaller than without the split, and every buffer stays 64-byte
 * aligned although the split is not), then copied in place into the
 * second half of the channels; a result from it goes to the first half.
 * The output, skip + relu(skip), is exact: nothing overwrote the skip.
 * Nodes that touch the part of a split buffer that is not live are refused
 * by sm_graph_finish, and a copy that would overwrite input it has still to
 * read by the run. */
static void test_split_buffers(void)
{
    enum { C = 3 };
    const int n = D * H * W;
    float *x = check_random_floats((int64_t)C * n, -1, 1),
          *y = check_filled_floats((int64_t)C * n, 0);
    size_t arena[2] = {0, 0};
    for (int split = 0; split <= 1; split++) {
        sm_graph *g = sm_graph_create();
        const int in = sm_graph_tensor(g, C, 0), cat = sm_graph_tensor(g, 2 * C, 0);
        const int head = sm_graph_packed(g, cat, 0, C);
        const int t1 = sm_graph_tensor(g, C, 0), t2 = sm_graph_tensor(g, C, 0);
        sm_graph_node(g, SM_OP_ACT, in, -1, head, SM_ACT_NONE, NULL, 0);
        sm_graph_node(g, SM_OP_ACT, in, -1, t1, SM_ACT_RELU, NULL, 0);
        sm_graph_node(g, SM_OP_ADD, in, t1, t2, SM_ACT_NONE, NULL, 0);
        if (split) sm_graph_late(g, cat, C);
        const int lo = sm_graph_slice(g, cat, 0, C), hi = sm_graph_slice(g, cat, C, C);
        sm_graph_node(g, SM_OP_COPY, head, -1, hi, SM_ACT_NONE, NULL, 0);
        sm_graph_node(g, SM_OP_ACT, hi, -1, lo, SM_ACT_RELU, NULL, 0);
        const int out = sm_graph_tensor(g, C, 0);
        sm_graph_node(g, SM_OP_ADD, lo, hi, out, SM_ACT_NONE, NULL, 0);
        CHECK(sm_graph_finish(g, in, out) == SEGMAMBA_OK);
        CHECK(sm_graph_run(g, sm_kernels_get(), x, D, H, W, y) == SEGMAMBA_OK);
        int ok = 1;
        for (int i = 0; i < C * n; i++) ok &= y[i] == x[i] + (x[i] > 0 ? x[i] : 0);
        CHECK_MSG(ok, "split %d: the output is wrong", split);
        for (int i = 0; i < g->n_bufs; i++)
            CHECK_MSG(g->bufs[i].offset % 16 == 0, "split %d: buffer %d at %zu floats", split, i,
                      g->bufs[i].offset);
        arena[split] = g->planned_floats;
        sm_graph_free(g);
    }
    CHECK_MSG(arena[1] < arena[0], "arena %zu floats with the split, %zu without", arena[1],
              arena[0]);
    /* the late part touched before its first node, the first part after its last */
    for (int early = 0; early <= 1; early++) {
        sm_graph *g = sm_graph_create();
        const int cat = sm_graph_tensor(g, 2 * C, 0);
        sm_graph_node(g, SM_OP_ACT, cat, -1, cat, SM_ACT_NONE, NULL, 0);
        if (early)
            sm_graph_early(g, cat, C);
        else
            sm_graph_late(g, cat, C);
        if (!early) sm_graph_node(g, SM_OP_ACT, cat, -1, cat, SM_ACT_NONE, NULL, 0);
        sm_graph_node(g, SM_OP_ACT, sm_graph_slice(g, cat, 0, C), -1, sm_graph_slice(g, cat, 0, C),
                      SM_ACT_NONE, NULL, 0);
        CHECK_MSG(sm_graph_finish(g, cat, cat) == SEGMAMBA_E_ARG, "early %d: not refused", early);
        sm_graph_free(g);
    }
    sm_graph *g = sm_graph_create();
    const int cat = sm_graph_tensor(g, 2 * C, 0);
    sm_graph_late(g, cat, 2 * C);
    CHECK(g->status == SEGMAMBA_E_ARG);
    sm_graph_free(g);
    /* a copy below its input in the same memory */
    g = sm_graph_create();
    const int b = sm_graph_tensor(g, 2 * C, 0), hi = sm_graph_slice(g, b, C, C);
    const int lo = sm_graph_packed(g, b, 0, C);
    sm_graph_node(g, SM_OP_COPY, hi, -1, lo, SM_ACT_NONE, NULL, 0);
    CHECK(sm_graph_finish(g, hi, lo) == SEGMAMBA_OK);
    CHECK(sm_graph_run(g, sm_kernels_get(), x, D, H, W, y) == SEGMAMBA_E_ARG);
    sm_graph_free(g);
    free(x);
    free(y);
}

/* Every opcode is in the op table (a name, a run function: a node of it is
 * accepted), and a value that is not an opcode is refused. */
static void test_op_table(void)
{
    for (int op = 0; op < SM_OP_COUNT; op++) {
        CHECK_MSG(strcmp(sm_opcode_name((sm_opcode)op), "?") != 0, "op %d has no name", op);
        sm_graph *g = sm_graph_create();
        const int t = sm_graph_tensor(g, CIN, 0);
        sm_graph_node(g, (sm_opcode)op, t, -1, t, SM_ACT_NONE, NULL, 0);
        CHECK_MSG(g->status == SEGMAMBA_OK, "op %d (%s) refused: %s", op,
                  sm_opcode_name((sm_opcode)op), segmamba_get_last_error());
        sm_graph_free(g);
    }
    sm_graph *g = sm_graph_create();
    const int t = sm_graph_tensor(g, CIN, 0);
    sm_graph_node(g, SM_OP_COUNT, t, -1, t, SM_ACT_NONE, NULL, 0);
    CHECK(g->status == SEGMAMBA_E_ARG && g->n_nodes == 0);
    CHECK(strcmp(sm_opcode_name(SM_OP_COUNT), "?") == 0);
    sm_graph_free(g);
}

int main(void)
{
    check_seed(0x13198a2e03707344ull);
    for (int i = 0; i < COUT * CIN; i++) weight[i] = (float)check_uniform(-1, 1);
    for (int i = 0; i < CIN * NVOX; i++) input[i] = (float)check_uniform(-2, 2);
    for (int kind = SM_CONV_REF; kind <= SM_CONV_ONEDNN; kind++) {
        if (!sm_conv_available((sm_conv_kind)kind)) continue;
        test_in_place((sm_conv_kind)kind);
        test_strided((sm_conv_kind)kind);
    }
    test_overlap_refused();
    test_workspace();
    test_slab_conv();
    test_split_buffers();
    test_op_table();
    return check_report("test_graph");
}
