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
    test_op_table();
    return check_report("test_graph");
}
