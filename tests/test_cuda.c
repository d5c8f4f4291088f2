/* The CUDA backend's ops (cuda_optional/cuda_backend.h) against the CPU
 * backend's, one by one, on seeded random inputs: convolutions of every
 * shape the model uses (with the im2col chunks forced small as well), the
 * k2s2 transposed convolution, instance and layer norm, add, activations,
 * FUE, SegMamba-V2's squeeze-excitation gate, the causal conv1d + SiLU and
 * the selective scan in every order (SegMamba-V2's volume orders included)
 * and chunking, and whole Mamba layers (v1's directions, SegMamba-V2's
 * three orderings). Every op reads and writes channel
 * slices of wider buffers: the channels around them must be ignored and
 * left untouched.
 *
 * Tolerances are those the CPU ops meet against their definitions
 * (test_ops.c, test_conv.c, test_simd.c), doubled where both sides round
 * independently. Without a CUDA device the test is skipped (exit 77). Under
 * -Demulate_cuda it runs the same backend code on the CPU. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clinical/card.h"
#include "check.h"
#include "engine/conv.h"
#include "cuda_optional/cuda_backend.h"
#include "engine/mamba.h"
#include "engine/ops.h"
#include "clinical/pipeline.h"
#include "engine/se.h"
#include "simd/conv1d.h"
#include "simd/scan.h"
#include "clinical/volume.h"

#define SENTINEL 12345.0f

static sm_cuda_ctx *ctx;

/* The largest error per op family as a fraction of its tolerance, printed
 * at the end: how much room the backend leaves (NaN when one was NaN). */
static struct {
    const char *family;
    double worst;
} margins[16];

static void note(const char *family, double err, double tol)
{
    int i = 0;
    while (margins[i].family && strcmp(margins[i].family, family) != 0) i++;
    margins[i].family = family;
    const double r = err / tol;
    if (!(r <= margins[i].worst)) margins[i].worst = r;
}

static float *to_device(const float *h, int64_t n)
{
    float *d = NULL;
    CHECK(sm_cuda_alloc((size_t)n, &d) == SEGMAMBA_OK);
    CHECK(sm_cuda_upload(ctx, d, h, (size_t)n) == SEGMAMBA_OK);
    return d;
}

/* Downloads n floats from d into a new host array and frees d. */
static float *from_device(float *d, int64_t n)
{
    float *h = malloc((size_t)n * sizeof *h);
    CHECK(sm_cuda_download(ctx, h, d, (size_t)n) == SEGMAMBA_OK);
    sm_cuda_free(d);
    return h;
}

typedef struct diff {
    double err, ref; /* largest |got - want|, largest |want| */
} diff;

/* Over n rows of c values (got ld_got apart, want ld_want apart); a NaN
 * makes err NaN. */
static diff compare(const float *got, int ld_got, const float *want, int ld_want, int64_t n, int c)
{
    diff d = {0, 0};
    for (int64_t v = 0; v < n; v++)
        for (int k = 0; k < c; k++) {
            const double e = fabs((double)got[v * ld_got + k] - want[v * ld_want + k]);
            if (!(e <= d.err)) d.err = e;
            if (fabs(want[v * ld_want + k]) > d.ref) d.ref = fabs(want[v * ld_want + k]);
        }
    return d;
}

/* The channels [c, ld) of every row still hold the sentinel. */
static int untouched(const float *p, int ld, int64_t n, int c)
{
    for (int64_t v = 0; v < n; v++)
        for (int k = c; k < ld; k++)
            if (p[v * ld + k] != SENTINEL) return 0;
    return 1;
}

/* ---- convolutions ---------------------------------------------------------- */

typedef struct conv_case {
    int cin, cout, k, stride, pad, bias, d, h, w;
    sm_act act;
    int dilation; /* 0 (left out): 1 */
} conv_case;

static void test_conv_case(const conv_case *t, size_t chunk_floats)
{
    const sm_conv_params p = {.cin = t->cin,
                              .cout = t->cout,
                              .k = t->k,
                              .stride = t->stride,
                              .pad = t->pad,
                              .act = t->act,
                              .dilation = t->dilation};
    const int src_ld = t->cin + 3, dst_ld = t->cout + 2;
    const int64_t n_in = (int64_t)t->d * t->h * t->w;
    const int64_t n_out = (int64_t)sm_conv_out_size(&p, t->d) * sm_conv_out_size(&p, t->h) *
                          sm_conv_out_size(&p, t->w);
    float *weight = check_random_floats((int64_t)t->cout * t->cin * t->k * t->k * t->k, -0.5, 0.5);
    float *bias = t->bias ? check_random_floats(t->cout, -1, 1) : NULL;
    float *src = check_random_floats(n_in * src_ld, -2, 2);
    float *want = check_filled_floats(n_out * dst_ld, SENTINEL),
          *out = check_filled_floats(n_out * dst_ld, SENTINEL);
    sm_conv *c = NULL;
    sm_cuda_conv *dc = NULL;
    CHECK(sm_conv_create(SM_CONV_REF, &p, weight, bias, &c) == SEGMAMBA_OK);
    CHECK(sm_conv_forward(c, src, src_ld, t->d, t->h, t->w, want, dst_ld) == SEGMAMBA_OK);
    CHECK(sm_cuda_conv_upload(c, &dc) == SEGMAMBA_OK);
    sm_cuda_ctx_set_chunk_floats(ctx, chunk_floats);
    float *d_src = to_device(src, n_in * src_ld), *d_out = to_device(out, n_out * dst_ld);
    CHECK(sm_cuda_conv_forward(ctx, dc, d_src, src_ld, t->d, t->h, t->w, d_out, dst_ld) ==
          SEGMAMBA_OK);
    sm_cuda_ctx_set_chunk_floats(ctx, 0);
    float *got = from_device(d_out, n_out * dst_ld);
    const diff e = compare(got, dst_ld, want, dst_ld, n_out, t->cout);
    /* Both sides sum K = k^3 cin float products in different orders (see
     * tolerance_f32 in test_conv.c). */
    const double K = (double)t->k * t->k * t->k * t->cin;
    const double tol = 4.0 * FLT_EPSILON * sqrt(K) * e.ref;
    note("convolution", e.err, tol);
    CHECK_MSG(e.err <= tol && e.ref > 0,
              "conv %d->%d k%d s%d p%d d%d bias %d act %d %dx%dx%d chunk %zu: max err %g, "
              "tol %g",
              t->cin, t->cout, t->k, t->stride, t->pad, sm_conv_dilation(&p), t->bias, (int)t->act,
              t->d, t->h, t->w, chunk_floats, e.err, tol);
    CHECK(untouched(got, dst_ld, n_out, t->cout));
    sm_cuda_free(d_src);
    sm_cuda_conv_free(dc);
    sm_conv_free(c);
    free(weight), free(bias), free(src), free(want), free(out), free(got);
}

static void test_convs(void)
{
    /* ResBlock and GSC 3^3 (with and without bias), the stem's k7 s2, the
     * downsampling k2 s2, the 1x1 (one GEMM on the activations), a ReLU;
     * SegMamba-V2's k3 s2 downsampling and its LargeKernelConv's k5 p2 and
     * dilation-2 k3 p2; a dilated k5 and a dilated stride-2 k3 (padding
     * that leaves border taps outside the volume). */
    static const conv_case cases[] = {
        {5, 6, 3, 1, 1, 0, 6, 5, 7, SM_ACT_NONE, 0},  {4, 7, 3, 1, 1, 1, 5, 4, 3, SM_ACT_NONE, 0},
        {2, 4, 7, 2, 3, 1, 9, 8, 10, SM_ACT_NONE, 0}, {4, 8, 2, 2, 0, 1, 8, 6, 4, SM_ACT_NONE, 0},
        {6, 3, 1, 1, 0, 1, 5, 6, 7, SM_ACT_NONE, 0},  {6, 5, 1, 1, 0, 0, 3, 4, 5, SM_ACT_NONE, 0},
        {3, 5, 3, 1, 1, 1, 4, 5, 6, SM_ACT_RELU, 0},  {4, 6, 3, 2, 1, 1, 8, 7, 6, SM_ACT_NONE, 0},
        {5, 5, 5, 1, 2, 1, 6, 7, 5, SM_ACT_NONE, 1},  {5, 5, 3, 1, 2, 1, 7, 5, 6, SM_ACT_NONE, 2},
        {3, 4, 5, 1, 3, 0, 9, 8, 7, SM_ACT_RELU, 2},  {3, 4, 3, 2, 2, 1, 9, 8, 7, SM_ACT_NONE, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        test_conv_case(&cases[i], 0);
        /* About 13 output voxels per chunk: many chunks, a ragged last one. */
        test_conv_case(&cases[i], 13 * (size_t)cases[i].k * cases[i].k * cases[i].k * cases[i].cin);
    }
}

static void test_convt2(void)
{
    const int cin = 6, cout = 5, d = 3, h = 4, w = 5, src_ld = 8, dst_ld = 12;
    const int64_t n = (int64_t)d * h * w, no = 8 * n;
    float *weight = check_random_floats((int64_t)cin * cout * 8, -0.5, 0.5);
    float *src = check_random_floats(n * src_ld, -2, 2);
    float *want = check_filled_floats(no * dst_ld, SENTINEL),
          *out = check_filled_floats(no * dst_ld, SENTINEL);
    sm_convt2 *t = NULL;
    sm_cuda_convt2 *dt = NULL;
    CHECK(sm_convt2_create(cin, cout, weight, &t) == SEGMAMBA_OK);
    CHECK(sm_convt2_forward(t, src, src_ld, d, h, w, want, dst_ld) == SEGMAMBA_OK);
    CHECK(sm_cuda_convt2_upload(t, &dt) == SEGMAMBA_OK);
    for (int chunked = 0; chunked < 2; chunked++) {
        /* 7 input voxels per GEMM when chunked. */
        sm_cuda_ctx_set_chunk_floats(ctx, chunked ? 7 * 8 * (size_t)cout : 0);
        float *d_src = to_device(src, n * src_ld), *d_out = to_device(out, no * dst_ld);
        CHECK(sm_cuda_convt2_forward(ctx, dt, d_src, src_ld, d, h, w, d_out, dst_ld) ==
              SEGMAMBA_OK);
        float *got = from_device(d_out, no * dst_ld);
        const diff e = compare(got, dst_ld, want, dst_ld, no, cout);
        note("transposed convolution", e.err, 2e-5);
        CHECK_MSG(e.err <= 2e-5 && e.ref > 0, "convt2 chunked %d: max err %g", chunked, e.err);
        CHECK(untouched(got, dst_ld, no, cout));
        sm_cuda_free(d_src);
        free(got);
    }
    sm_cuda_ctx_set_chunk_floats(ctx, 0);
    sm_cuda_convt2_free(dt);
    sm_convt2_free(t);
    free(weight), free(src), free(want), free(out);
}

/* ---- norms and pointwise ops ------------------------------------------------- */

static void test_instance_norm(void)
{
    /* 5000 voxels: several partial-sum groups, the last one shorter. */
    const int64_t n = 5000;
    const int c = 5, ld = 7, dld = 9;
    float *x = check_random_floats(n * ld, -3, 5);
    for (int64_t v = 0; v < n; v++)
        x[v * ld + 2] = x[v * ld + 2] * 0.001f + 100.0f; /* large mean */
    float *out = check_filled_floats(n * dld, SENTINEL),
          *want = check_filled_floats(n * dld, SENTINEL);
    for (int act = SM_ACT_NONE; act <= SM_ACT_GELU; act++) {
        CHECK(sm_instance_norm(sm_kernels_get(), x, ld, want, dld, n, c, (sm_act)act) ==
              SEGMAMBA_OK);
        float *d_x = to_device(x, n * ld), *d_out = to_device(out, n * dld);
        CHECK(sm_cuda_instance_norm(ctx, d_x, ld, d_out, dld, n, c, (sm_act)act) == SEGMAMBA_OK);
        float *got = from_device(d_out, n * dld);
        const diff e = compare(got, dld, want, dld, n, c);
        note("instance norm", e.err, 2e-4);
        CHECK_MSG(e.err < 2e-4, "instance norm act %d: max err %g", act, e.err);
        CHECK(untouched(got, dld, n, c));
        sm_cuda_free(d_x);
        free(got);
    }
    free(x), free(out), free(want);
}

static void test_layer_norm(void)
{
    const int64_t n = 300;
    const int c = 48, ld = 50, dld = 51;
    float *x = check_random_floats(n * ld, -2, 3), *w = check_random_floats(c, 0.5, 1.5),
          *b = check_random_floats(c, -1, 1);
    float *want = check_filled_floats(n * dld, SENTINEL),
          *out = check_filled_floats(n * dld, SENTINEL);
    sm_layer_norm(x, ld, want, dld, n, c, w, b);
    float *d_x = to_device(x, n * ld), *d_w = to_device(w, c), *d_b = to_device(b, c);
    float *d_out = to_device(out, n * dld);
    CHECK(sm_cuda_layer_norm(ctx, d_x, ld, d_out, dld, n, c, d_w, d_b) == SEGMAMBA_OK);
    float *got = from_device(d_out, n * dld);
    const diff e = compare(got, dld, want, dld, n, c);
    note("layer norm", e.err, 2e-5);
    CHECK_MSG(e.err < 2e-5, "layer norm: max err %g", e.err);
    CHECK(untouched(got, dld, n, c));
    sm_cuda_free(d_x), sm_cuda_free(d_w), sm_cuda_free(d_b);
    free(x), free(w), free(b), free(want), free(out), free(got);
}

static void test_pointwise(void)
{
    const int64_t n = 700;
    const int c = 7, lda = 9, ldb = 8, dld = 10;
    float *a = check_random_floats(n * lda, -4, 4), *b = check_random_floats(n * ldb, -4, 4);
    float *want = check_filled_floats(n * dld, SENTINEL),
          *out = check_filled_floats(n * dld, SENTINEL);
    float *d_a = to_device(a, n * lda), *d_b = to_device(b, n * ldb);
    for (int act = SM_ACT_NONE; act <= SM_ACT_GELU; act++) {
        sm_add(sm_kernels_get(), a, lda, b, ldb, want, dld, n, c, (sm_act)act);
        float *d_out = to_device(out, n * dld);
        CHECK(sm_cuda_add(ctx, d_a, lda, d_b, ldb, d_out, dld, n, c, (sm_act)act) == SEGMAMBA_OK);
        float *got = from_device(d_out, n * dld);
        diff e = compare(got, dld, want, dld, n, c);
        note("add", e.err, 2e-5);
        CHECK_MSG(e.err < 2e-5, "add act %d: max err %g", act, e.err);
        CHECK(untouched(got, dld, n, c));
        free(got);

        sm_activate(sm_kernels_get(), a, lda, want, dld, n, c, (sm_act)act);
        d_out = to_device(out, n * dld);
        CHECK(sm_cuda_activate(ctx, d_a, lda, d_out, dld, n, c, (sm_act)act) == SEGMAMBA_OK);
        got = from_device(d_out, n * dld);
        e = compare(got, dld, want, dld, n, c);
        note("activation", e.err, 2e-5);
        CHECK_MSG(e.err < 2e-5, "activation %d: max err %g", act, e.err);
        CHECK(untouched(got, dld, n, c));
        free(got);
    }
    sm_fue(a, lda, want, dld, n, c);
    float *d_out = to_device(out, n * dld);
    CHECK(sm_cuda_fue(ctx, d_a, lda, d_out, dld, n, c) == SEGMAMBA_OK);
    float *got = from_device(d_out, n * dld);
    const diff e = compare(got, dld, want, dld, n, c);
    note("fue", e.err, 2e-5);
    CHECK_MSG(e.err < 2e-5, "fue: max err %g", e.err);
    CHECK(untouched(got, dld, n, c));
    /* In place, as the graph runs FUE and activations. */
    float *d_x = to_device(a, n * lda);
    CHECK(sm_cuda_activate(ctx, d_x, lda, d_x, lda, n, c, SM_ACT_GELU) == SEGMAMBA_OK);
    float *inplace = from_device(d_x, n * lda);
    sm_activate(sm_kernels_get(), a, lda, want, dld, n, c, SM_ACT_GELU);
    CHECK_MSG(compare(inplace, lda, want, dld, n, c).err < 2e-5, "in-place GELU");
    sm_cuda_free(d_a), sm_cuda_free(d_b);
    free(a), free(b), free(want), free(out), free(got), free(inplace);
}

/* ---- squeeze-excitation ------------------------------------------------------------ */

/* SegMamba-V2's SE gate against the CPU op: 5000 voxels (several partial
 * sums), channels whose means differ, strided, out of place and in place. */
static void test_se(void)
{
    const int64_t n = 5000;
    const int c = 16, hid = 2, ld = 19, dld = 18;
    float *x = check_random_floats(n * ld, -2, 2);
    for (int64_t v = 0; v < n; v++)
        for (int k = 0; k < c; k++) x[v * ld + k] += 0.25f * (float)(k - c / 2);
    float *w1 = check_random_floats((int64_t)hid * c, -0.5, 0.5),
          *b1 = check_random_floats(hid, -0.5, 0.5);
    float *w2 = check_random_floats((int64_t)c * hid, -2, 2), *b2 = check_random_floats(c, -1, 1);
    sm_se *se = NULL;
    sm_cuda_se *dse = NULL;
    CHECK(sm_se_create(c, hid, w1, b1, w2, b2, &se) == SEGMAMBA_OK);
    CHECK(sm_cuda_se_upload(se, &dse) == SEGMAMBA_OK);
    float *want = check_filled_floats(n * dld, SENTINEL),
          *out = check_filled_floats(n * dld, SENTINEL);
    CHECK(sm_se_forward(se, x, ld, want, dld, n) == SEGMAMBA_OK);
    float *d_x = to_device(x, n * ld), *d_out = to_device(out, n * dld);
    CHECK(sm_cuda_se_forward(ctx, dse, d_x, ld, d_out, dld, n) == SEGMAMBA_OK);
    float *got = from_device(d_out, n * dld);
    diff e = compare(got, dld, want, dld, n, c);
    /* The gates' spread: a test where every gate is alike would not see a
     * channel mix-up. */
    double lo = 1, hi = 0;
    for (int k = 0; k < c; k++)
        for (int64_t v = 0; v < n; v++)
            if (fabs(x[v * ld + k]) > 0.5) {
                const double g = want[v * dld + k] / x[v * ld + k];
                lo = g < lo ? g : lo, hi = g > hi ? g : hi;
                break;
            }
    /* Products of x with a gate in (0, 1) that both sides compute from the
     * same float operations but for the order of the mean's partial sums. */
    note("squeeze-excitation", e.err, 2e-5);
    CHECK_MSG(e.err <= 2e-5 && e.ref > 0, "squeeze-excitation: max err %g", e.err);
    CHECK_MSG(hi - lo > 0.2, "squeeze-excitation: gates only span [%g, %g]", lo, hi);
    CHECK(untouched(got, dld, n, c));
    /* In place, as the graph runs it. */
    CHECK(sm_cuda_se_forward(ctx, dse, d_x, ld, d_x, ld, n) == SEGMAMBA_OK);
    float *inplace = from_device(d_x, n * ld);
    e = compare(inplace, ld, want, dld, n, c);
    CHECK_MSG(e.err <= 2e-5, "in-place squeeze-excitation: max err %g", e.err);
    for (int64_t v = 0; v < n; v++)
        for (int k = c; k < ld; k++) CHECK(inplace[v * ld + k] == x[v * ld + k]);
    sm_cuda_se_free(dse);
    sm_se_free(se);
    free(x), free(w1), free(b1), free(w2), free(b2), free(want), free(out), free(got);
    free(inplace);
}

/* ---- the Mamba layer's parts ---------------------------------------------------- */

/* Every order on a 4 x 5 x 6 volume (no two sides alike, so a mix-up of
 * d, h and w shows), the inter-slice one in 6 slices of 20 tokens. */
enum { VOL_D = 4, VOL_H = 5, VOL_W = 6, VOL_S = 6 };

static sm_seq volume_seq(sm_order order)
{
    const sm_seq s = {
        .order = order, .L = VOL_D * VOL_H * VOL_W, .S = VOL_S, .d = VOL_D, .h = VOL_H, .w = VOL_W};
    CHECK(sm_seq_valid(&s));
    return s;
}

static double silu_ref(double v) { return v / (1.0 + exp(-v)); }

static void test_conv1d(void)
{
    const int64_t L = VOL_D * VOL_H * VOL_W;
    const int di = 16, K = 4, ldx = 2 * di;
    float *x = check_random_floats(L * ldx, -2, 2),
          *w = check_random_floats((int64_t)K * di, -0.7, 0.7);
    float *b = check_random_floats(di, -0.5, 0.5);
    float *d_x = to_device(x, L * ldx), *d_w = to_device(w, (int64_t)K * di),
          *d_b = to_device(b, di);
    float *cpu = malloc((size_t)(L * di) * sizeof *cpu);
    for (int o = 0; o < SM_ORDER_COUNT; o++) {
        const sm_seq seq = volume_seq((sm_order)o);
        /* The CPU's scalar kernel over every token. */
        const sm_conv1d_args args = {
            .seq = seq, .c = di, .K = K, .x = x, .ld_x = ldx, .w = w, .b = b, .u = cpu, .ld_u = di};
        sm_conv1d_silu_scalar(&args, 0, L);
        float *d_u = NULL;
        CHECK(sm_cuda_alloc((size_t)(L * di), &d_u) == SEGMAMBA_OK);
        CHECK(sm_cuda_conv1d_silu(ctx, d_x, ldx, d_w, d_b, K, di, &seq, d_u) == SEGMAMBA_OK);
        float *u = from_device(d_u, L * di);
        /* And the definition, in double. */
        double max_err = 0;
        for (int64_t q = 0; q < L; q++)
            for (int c = 0; c < di; c++) {
                double acc = b[c];
                for (int k = 0; k < K; k++) {
                    const int64_t p = q - (K - 1) + k;
                    if (p >= 0) acc += (double)w[k * di + c] * x[sm_scan_token(&seq, p) * ldx + c];
                }
                const double e = fabs(silu_ref(acc) - u[sm_scan_token(&seq, q) * di + c]);
                if (!(e <= max_err)) max_err = e;
            }
        const diff e = compare(u, di, cpu, di, L, di);
        note("conv1d + silu", max_err, 1e-5);
        note("conv1d + silu", e.err, 1e-5);
        CHECK_MSG(max_err < 1e-5 && e.err < 1e-5 && e.ref > 0,
                  "conv1d order %d: max err %g (definition), %g (CPU kernel)", o, max_err, e.err);
        free(u);
    }
    sm_cuda_free(d_x), sm_cuda_free(d_w), sm_cuda_free(d_b);
    free(x), free(w), free(b), free(cpu);
}

/* One scan against the scalar CPU kernel, with every array a slice of a
 * wider one, as in the Mamba layer. */
static void test_scan_case(sm_order order, int N, int64_t chunk)
{
    const sm_seq seq = volume_seq(order);
    const int64_t L = seq.L;
    const int di = 10, ldu = di + 2, ldz = 2 * di, ldbc = 1 + 2 * N + 3;
    float *u = check_random_floats(L * ldu, -2, 2), *dl = check_random_floats(L * ldu, -1, 1);
    float *z = check_random_floats(L * ldz, -3, 3), *bc = check_random_floats(L * ldbc, -1, 1);
    float *bias = check_random_floats(di, -4, -1), *D = check_random_floats(di, -1, 1);
    float *A = malloc((size_t)di * N * sizeof *A);
    for (int i = 0; i < di * N; i++) A[i] = -(float)exp(check_uniform(log(0.5), log(16.0)));
    float *y0 = check_random_floats(L * di, -1, 1); /* the scan adds to y */
    float *want = malloc((size_t)(L * di) * sizeof *want);
    memcpy(want, y0, (size_t)(L * di) * sizeof *want);
    sm_scan_args a = {.seq = seq,
                      .n_state = N,
                      .u = u,
                      .ld_u = ldu,
                      .delta = dl,
                      .ld_delta = ldu,
                      .delta_bias = bias,
                      .A = A,
                      .B = bc + 1,
                      .C = bc + 1 + N,
                      .ld_bc = ldbc,
                      .D = D,
                      .z = z + di,
                      .ld_z = ldz,
                      .y = want,
                      .ld_y = di};
    float *state = malloc((size_t)di * N * sizeof *state);
    sm_scan_scalar(&a, 0, di, state);
    float *d_u = to_device(u, L * ldu), *d_dl = to_device(dl, L * ldu),
          *d_z = to_device(z, L * ldz);
    float *d_bc = to_device(bc, L * ldbc), *d_bias = to_device(bias, di), *d_D = to_device(D, di);
    float *d_A = to_device(A, (int64_t)di * N), *d_y = to_device(y0, L * di);
    sm_scan_args da = a;
    da.u = d_u, da.delta = d_dl, da.delta_bias = d_bias, da.A = d_A, da.B = d_bc + 1;
    da.C = d_bc + 1 + N, da.D = d_D, da.z = d_z + di, da.y = d_y;
    CHECK(sm_cuda_scan(ctx, &da, di, chunk) == SEGMAMBA_OK);
    float *got = from_device(d_y, L * di);
    const diff e = compare(got, di, want, di, L, di);
    /* Each side within 2e-5 of the output scale (test_simd.c). */
    note("selective scan", e.err, 4e-5 * (e.ref > 1 ? e.ref : 1));
    CHECK_MSG(e.err <= 4e-5 * (e.ref > 1 ? e.ref : 1), "scan order %d N %d chunk %lld: max err %g",
              (int)order, N, (long long)chunk, e.err);
    sm_cuda_free(d_u), sm_cuda_free(d_dl), sm_cuda_free(d_z), sm_cuda_free(d_bc);
    sm_cuda_free(d_bias), sm_cuda_free(d_D), sm_cuda_free(d_A);
    free(u), free(dl), free(z), free(bc), free(bias), free(D), free(A), free(y0), free(want);
    free(state), free(got);
}

static void test_scan(void)
{
    /* Chunks of one position, ragged 7s, the default, one chunk for all;
     * N 16 and a wider state (the kernels' other size class). */
    static const int64_t chunks[] = {1, 7, 0, 1000};
    for (int o = 0; o < SM_ORDER_COUNT; o++)
        for (size_t c = 0; c < sizeof chunks / sizeof *chunks; c++) {
            test_scan_case((sm_order)o, 16, chunks[c]);
            test_scan_case((sm_order)o, 20, chunks[c]);
        }
}

/* A layer of n_dir directions (bimamba "none", "v2", "v3": the first n_dir
 * of forward, backward, slice) or, with orderings SM_V2_ORDERINGS, a
 * SegMamba-V2 layer (one direction over three orderings of the volume). */
static void test_mamba_layer(int n_dir, int orderings)
{
    const int C = 8, di = 16, N = 16, R = 1, K = 4, x_ld = 10;
    const int64_t L = VOL_D * VOL_H * VOL_W, S = n_dir == SM_DIRECTIONS ? VOL_S : 1;
    sm_mamba *m = calloc(1, sizeof *m);
    *m = (sm_mamba){.dim = C,
                    .d_inner = di,
                    .d_state = N,
                    .dt_rank = R,
                    .d_conv = K,
                    .n_dir = n_dir,
                    .orderings = orderings};
    float *owned[32];
    int n_owned = 0;
#define OWN(expr) (owned[n_owned++] = (expr))
    m->norm_w = OWN(check_random_floats(C, 0.5, 1.5));
    m->norm_b = OWN(check_random_floats(C, -0.5, 0.5));
    m->in_proj = OWN(check_random_floats(2 * di * C, -0.4, 0.4));
    m->out_proj = OWN(check_random_floats(C * di, -0.3, 0.3));
    for (int s = 0; s < n_dir; s++) {
        sm_mamba_dir *d = &m->dir[s];
        d->conv_wt = check_random_floats(K * di, -0.5, 0.5); /* owned by m */
        d->conv_b = OWN(check_random_floats(di, -0.3, 0.3));
        d->x_proj = OWN(check_random_floats((R + 2 * N) * di, -0.3, 0.3));
        d->dt_proj = OWN(check_random_floats(di * R, -0.5, 0.5));
        d->dt_bias = OWN(check_random_floats(di, -4, -1));
        d->D = OWN(check_random_floats(di, -1, 1));
        d->A = malloc((size_t)di * N * sizeof *d->A); /* owned by m */
        for (int i = 0; i < di * N; i++) d->A[i] = -(float)(1 + i % N);
    }
#undef OWN
    float *x = check_random_floats(L * x_ld, -2, 2);
    float *scratch = malloc((size_t)(L * sm_mamba_scratch_per_token(m, 0)) * sizeof *scratch);
    float *want = check_filled_floats(L * x_ld, SENTINEL);
    double seconds[SM_KIND_COUNT] = {0};
    CHECK(sm_mamba_forward(m, sm_kernels_get(), x, x_ld, want, x_ld, VOL_D, VOL_H, VOL_W, S,
                           scratch, seconds) == SEGMAMBA_OK);
    sm_cuda_mamba *dm = NULL;
    CHECK(sm_cuda_mamba_upload(m, &dm) == SEGMAMBA_OK);
    for (int in_place = 0; in_place < 2; in_place++)
        for (int64_t chunk = 0; chunk <= 7; chunk += 7) {
            float *d_x = to_device(x, L * x_ld), *d_scratch = NULL;
            float *out = check_filled_floats(L * x_ld, SENTINEL);
            float *d_out = in_place ? d_x : to_device(out, L * x_ld);
            CHECK(sm_cuda_alloc((size_t)(L * sm_cuda_mamba_scratch_per_token(dm)), &d_scratch) ==
                  SEGMAMBA_OK);
            CHECK(sm_cuda_mamba_forward(ctx, dm, d_x, x_ld, d_out, x_ld, VOL_D, VOL_H, VOL_W, S,
                                        d_scratch, chunk) == SEGMAMBA_OK);
            float *got = from_device(d_out, L * x_ld);
            const diff e = compare(got, x_ld, want, x_ld, L, C);
            /* LayerNorm, four GEMMs and three scans, each a few 1e-6 apart. */
            note("mamba layer", e.err, 1e-4 * (e.ref > 1 ? e.ref : 1));
            CHECK_MSG(e.err <= 1e-4 * (e.ref > 1 ? e.ref : 1),
                      "mamba layer of %d directions, %d orderings, in place %d chunk %lld: max "
                      "err %g (max |ref| %g)",
                      n_dir, orderings, in_place, (long long)chunk, e.err, e.ref);
            for (int64_t v = 0; v < L; v++) /* the channels past C: x's own, or the sentinel */
                for (int k = C; k < x_ld; k++)
                    CHECK(got[v * x_ld + k] == (in_place ? x[v * x_ld + k] : SENTINEL));
            if (!in_place) sm_cuda_free(d_x);
            sm_cuda_free(d_scratch);
            free(out), free(got);
        }
    sm_cuda_mamba_free(dm);
    for (int i = 0; i < n_owned; i++) free(owned[i]);
    sm_mamba_free(m);
    free(x), free(scratch), free(want);
}

static void test_mamba(void)
{
    for (int n_dir = 1; n_dir <= SM_DIRECTIONS; n_dir++) test_mamba_layer(n_dir, 1);
    test_mamba_layer(1, SM_V2_ORDERINGS);
}

/* ---- the pipeline's sliding windows, batched -------------------------------- */

static segmamba_model *open_tiny(segmamba_backend backend)
{
    segmamba_options o = {.nslices = {16, 8, 4, 2}, .backend = backend};
    segmamba_model *m = NULL;
    CHECK_MSG(segmamba_open("tests/fixtures/tiny/model.safetensors", &o, &m) == SEGMAMBA_OK,
              "opening the tiny model: %s", segmamba_get_last_error());
    return m;
}

/* segmamba_predict on a 64 x 32 x 32 volume: three 32^3 windows along z, on the
 * GPU two per forward call then one, against the CPU's one per call; and
 * on the CPU two per call against one per call (the same forwards in the
 * same order: identical). */
static void test_pipeline_batches(void)
{
    segmamba_card card;
    const char *text =
        "{\"channels\": [{\"name\": \"a\"}, {\"name\": \"b\"}], \"patch\": [32, 32, 32],"
        " \"nslices\": [16, 8, 4, 2], \"labels\": [\"bg\", \"x\", \"y\"]}";
    CHECK(segmamba_card_parse(text, strlen(text), "test card", &card) == SEGMAMBA_OK);
    segmamba_volume v = {.c = 2, .d = 64, .h = 32, .w = 32};
    const size_t n = (size_t)v.d * v.h * v.w;
    v.data = check_random_floats((int64_t)(v.c * n), 0.5, 3.0);
    for (int a = 0; a < 3; a++) v.geom.spacing[a] = 1.0;
    segmamba_model *cpu = open_tiny(SEGMAMBA_BACKEND_CPU), *gpu = open_tiny(SEGMAMBA_BACKEND_CUDA);
    if (!cpu || !gpu) {
        segmamba_close(cpu);
        segmamba_close(gpu);
        segmamba_volume_free(&v);
        return;
    }
    segmamba_predict_options one = {.no_tta = 1, .want_probabilities = 1, .windows_per_call = 1};
    segmamba_predict_options two = one;
    two.windows_per_call = 2;
    segmamba_prediction want, cpu2, got;
    CHECK(segmamba_predict(cpu, &card, &v, &one, &want) == SEGMAMBA_OK);
    CHECK(segmamba_predict(cpu, &card, &v, &two, &cpu2) == SEGMAMBA_OK);
    CHECK(segmamba_predict(gpu, &card, &v, &two, &got) == SEGMAMBA_OK);
    CHECK(want.windows == 3 && got.windows == 3);
    CHECK(memcmp(want.probabilities, cpu2.probabilities, 3 * n * sizeof(float)) == 0);
    double worst = 0;
    size_t agree = 0;
    for (size_t i = 0; i < 3 * n; i++) {
        const double e = fabs((double)got.probabilities[i] - want.probabilities[i]);
        if (!(e <= worst)) worst = e;
    }
    for (size_t i = 0; i < n; i++) agree += got.labels[i] == want.labels[i];
    note("pipeline probabilities", worst, 1e-3);
    CHECK_MSG(worst <= 1e-3 && agree >= 0.999 * n,
              "pipeline: probabilities differ by %g, labels agree on %zu of %zu", worst, agree, n);
    segmamba_prediction_free(&want);
    segmamba_prediction_free(&cpu2);
    segmamba_prediction_free(&got);
    segmamba_close(cpu);
    segmamba_close(gpu);
    segmamba_volume_free(&v);
}

int main(void)
{
    char info[256];
    if (sm_cuda_probe(info, sizeof info) != SEGMAMBA_OK) {
        printf("skipped: no CUDA device: %s\n", segmamba_get_last_error());
        return 77;
    }
    printf("device: %s\n", info);
    if (sm_cuda_ctx_create(0, &ctx) != SEGMAMBA_OK) {
        fprintf(stderr, "cannot create a CUDA context: %s\n", segmamba_get_last_error());
        return 1;
    }
    test_convs();
    test_convt2();
    test_instance_norm();
    test_layer_norm();
    test_pointwise();
    test_se();
    test_conv1d();
    test_scan();
    test_mamba();
    test_pipeline_batches();
    sm_cuda_ctx_free(ctx);
    for (int i = 0; margins[i].family; i++)
        printf("%-24s worst error %.3f of its tolerance\n", margins[i].family, margins[i].worst);
    return check_report("test_cuda");
}
