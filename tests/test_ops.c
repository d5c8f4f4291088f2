/* Pointwise, normalisation and transposed-convolution ops against direct
 * double-precision evaluations of their definitions (spec section 2). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "engine/ops.h"

static float uniform(float lo, float hi) { return (float)check_uniform(lo, hi); }

static float *random_buf(int64_t n, float lo, float hi)
{
    float *p = malloc((size_t)n * sizeof *p);
    for (int64_t i = 0; i < n; i++) p[i] = uniform(lo, hi);
    return p;
}

static double act_ref(double v, sm_act act)
{
    switch (act) {
    case SM_ACT_RELU: return v > 0 ? v : 0;
    case SM_ACT_LRELU: return v > 0 ? v : 0.01 * v;
    case SM_ACT_GELU: return 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
    default: return v;
    }
}

static void test_instance_norm(void)
{
    const int64_t n = 1000;
    const int c = 5, ld = 7, dld = 9;
    float *x = random_buf(n * ld, -3, 5);
    for (int64_t v = 0; v < n; v++)
        x[v * ld + 2] = x[v * ld + 2] * 0.001f + 100.0f; /* large mean */
    float *y = malloc((size_t)(n * dld) * sizeof *y);
    for (int64_t i = 0; i < n * dld; i++) y[i] = 12345.0f;
    for (int act = SM_ACT_NONE; act <= SM_ACT_LRELU; act++) {
        CHECK(sm_instance_norm(sm_kernels_get(), x, ld, y, dld, n, c, (sm_act)act) == SEGMAMBA_OK);
        double max_err = 0;
        for (int k = 0; k < c; k++) {
            double mean = 0, var = 0;
            for (int64_t v = 0; v < n; v++) mean += x[v * ld + k];
            mean /= n;
            for (int64_t v = 0; v < n; v++) var += (x[v * ld + k] - mean) * (x[v * ld + k] - mean);
            var /= n;
            for (int64_t v = 0; v < n; v++) {
                double r = act_ref((x[v * ld + k] - mean) / sqrt(var + 1e-5), (sm_act)act);
                double e = fabs(r - y[v * dld + k]);
                if (!(e <= max_err)) max_err = e;
            }
        }
        CHECK_MSG(max_err < 2e-4, "instance norm act %d: max err %g", act, max_err);
        for (int64_t v = 0; v < n; v++)
            CHECK(y[v * dld + c] == 12345.0f && y[v * dld + dld - 1] == 12345.0f);
    }
    free(x);
    free(y);
}

/* The fused residual tail against the unfused ops it replaces: the same
 * float operations in the same order, so the results must be identical,
 * also when the output overwrites either input. */
static void test_instance_norm_add(void)
{
    const int64_t n = 1000;
    const int c = 24, ld = 32;
    const sm_kernels *kern = sm_kernels_get();
    for (int norm_b = 0; norm_b < 2; norm_b++) {
        for (int alias = 0; alias < 3; alias++) { /* dst: separate, a, b */
            float *a = random_buf(n * ld, -3, 5), *b = random_buf(n * ld, -2, 1);
            float *ea = malloc((size_t)(n * ld) * sizeof *ea),
                  *eb = malloc((size_t)(n * ld) * sizeof *eb);
            float *expect = malloc((size_t)(n * ld) * sizeof *expect);
            float *sep = malloc((size_t)(n * ld) * sizeof *sep);
            CHECK(sm_instance_norm(kern, a, ld, ea, ld, n, c, SM_ACT_NONE) == SEGMAMBA_OK);
            if (norm_b)
                CHECK(sm_instance_norm(kern, b, ld, eb, ld, n, c, SM_ACT_NONE) == SEGMAMBA_OK);
            else
                memcpy(eb, b, (size_t)(n * ld) * sizeof *eb);
            sm_add(kern, ea, ld, eb, ld, expect, ld, n, c, SM_ACT_LRELU);
            float *dst = alias == 1 ? a : alias == 2 ? b : sep;
            CHECK(sm_instance_norm_add(kern, a, ld, b, ld, norm_b, dst, ld, n, c, SM_ACT_LRELU) ==
                  SEGMAMBA_OK);
            int64_t bad = 0;
            for (int64_t v = 0; v < n; v++)
                for (int k = 0; k < c; k++) bad += dst[v * ld + k] != expect[v * ld + k];
            CHECK_MSG(bad == 0, "instance_norm_add norm_b=%d alias=%d: %lld values differ", norm_b,
                      alias, (long long)bad);
            free(a);
            free(b);
            free(ea);
            free(eb);
            free(expect);
            free(sep);
        }
    }
}

/* A block compacting its tail into its input's memory: a and b the two
 * halves of each voxel's channels, dst dense from the buffer's start (a
 * narrower stride, over voxels not read yet in parallel). The same values
 * as into a separate buffer, for sizes of one round to many; a dense dst
 * that starts after its input is refused. */
static void test_instance_norm_compacting(void)
{
    const sm_kernels *kern = sm_kernels_get();
    const int c = 24;
    static const int64_t sizes[] = {7, 3000, 20011};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        const int64_t n = sizes[i];
        for (int norm_b = 0; norm_b < 2; norm_b++) {
            float *buf = random_buf(n * 2 * c, -3, 5);
            float *sep = malloc((size_t)(n * c) * sizeof *sep);
            CHECK(sm_instance_norm_add(kern, buf, 2 * c, buf + c, 2 * c, norm_b, sep, c, n, c,
                                       SM_ACT_LRELU) == SEGMAMBA_OK);
            CHECK(sm_instance_norm_add(kern, buf, 2 * c, buf + c, 2 * c, norm_b, buf, c, n, c,
                                       SM_ACT_LRELU) == SEGMAMBA_OK);
            CHECK_MSG(memcmp(buf, sep, (size_t)(n * c) * sizeof *sep) == 0,
                      "compacting tail, %lld voxels, norm_b %d: differs from a separate output",
                      (long long)n, norm_b);
            CHECK(sm_instance_norm_add(kern, buf, 2 * c, buf + c, 2 * c, norm_b, buf + 1, c, n, c,
                                       SM_ACT_LRELU) == SEGMAMBA_E_ARG);
            free(buf);
            free(sep);
        }
    }
}

static void test_layer_norm(void)
{
    const int64_t n = 200;
    const int c = 48;
    float *x = random_buf(n * c, -2, 3), *w = random_buf(c, 0.5f, 1.5f), *b = random_buf(c, -1, 1);
    float *y = malloc((size_t)(n * c) * sizeof *y);
    sm_layer_norm(x, c, y, c, n, c, w, b);
    double max_err = 0;
    for (int64_t v = 0; v < n; v++) {
        double mean = 0, var = 0;
        for (int k = 0; k < c; k++) mean += x[v * c + k];
        mean /= c;
        for (int k = 0; k < c; k++) var += (x[v * c + k] - mean) * (x[v * c + k] - mean);
        var /= c;
        for (int k = 0; k < c; k++) {
            double r = (x[v * c + k] - mean) / sqrt(var + 1e-5) * w[k] + b[k];
            double e = fabs(r - y[v * c + k]);
            if (!(e <= max_err)) max_err = e;
        }
    }
    CHECK_MSG(max_err < 1e-5, "layer norm: max err %g", max_err);
    free(x), free(w), free(b), free(y);
}

static void test_pointwise(void)
{
    const int64_t n = 300;
    const int c = 6, ld = 8;
    float *a = random_buf(n * ld, -6, 6), *b = random_buf(n * ld, -6, 6);
    float *y = malloc((size_t)(n * ld) * sizeof *y);
    for (int act = SM_ACT_NONE; act <= SM_ACT_GELU; act++) {
        sm_add(sm_kernels_get(), a, ld, b, ld, y, ld, n, c, (sm_act)act);
        double e_add = 0, e_act = 0;
        for (int64_t v = 0; v < n; v++)
            for (int k = 0; k < c; k++) {
                double e = fabs(act_ref((double)a[v * ld + k] + b[v * ld + k], (sm_act)act) -
                                y[v * ld + k]);
                if (!(e <= e_add)) e_add = e;
            }
        sm_activate(sm_kernels_get(), a, ld, y, ld, n, c, (sm_act)act);
        for (int64_t v = 0; v < n; v++)
            for (int k = 0; k < c; k++) {
                double e = fabs(act_ref(a[v * ld + k], (sm_act)act) - y[v * ld + k]);
                if (!(e <= e_act)) e_act = e;
            }
        CHECK_MSG(e_add < 1e-5 && e_act < 1e-5, "act %d: add err %g, act err %g", act, e_add,
                  e_act);
    }
    /* FUE, from its definition: m = sigmoid(mean), u = -m ln m, z + z (1 - u). */
    sm_fue(a, ld, y, ld, n, c);
    double e_fue = 0;
    for (int64_t v = 0; v < n; v++) {
        double mean = 0;
        for (int k = 0; k < c; k++) mean += a[v * ld + k];
        mean /= c;
        double m = 1.0 / (1.0 + exp(-mean)), u = -m * log(m);
        for (int k = 0; k < c; k++) {
            double e = fabs(a[v * ld + k] + a[v * ld + k] * (1 - u) - y[v * ld + k]);
            if (!(e <= e_fue)) e_fue = e;
        }
    }
    CHECK_MSG(e_fue < 1e-5, "fue: max err %g", e_fue);
    free(a), free(b), free(y);
}

static void test_convt2(void)
{
    const int cin = 5, cout = 3, d = 3, h = 2, w = 4, sld = 7, dld = 4;
    float *wt = random_buf((int64_t)cin * cout * 8, -1, 1);
    float *x = random_buf((int64_t)d * h * w * sld, -1, 1);
    const int64_t no = 8LL * d * h * w;
    float *y = malloc((size_t)(no * dld) * sizeof *y);
    for (int64_t i = 0; i < no * dld; i++) y[i] = 777.0f;
    sm_convt2 *t = NULL;
    CHECK(sm_convt2_create(cin, cout, wt, &t) == SEGMAMBA_OK);
    CHECK(sm_convt2_forward(t, x, sld, d, h, w, y, dld) == SEGMAMBA_OK);
    /* PyTorch's definition: out[co, 2i+a, 2j+b, 2k+c] = sum_ci in[ci,i,j,k] W[ci,co,a,b,c]. */
    double max_err = 0;
    for (int i = 0; i < d; i++)
        for (int j = 0; j < h; j++)
            for (int k = 0; k < w; k++)
                for (int a = 0; a < 2; a++)
                    for (int b = 0; b < 2; b++)
                        for (int cc = 0; cc < 2; cc++)
                            for (int co = 0; co < cout; co++) {
                                double s = 0;
                                for (int ci = 0; ci < cin; ci++)
                                    s += (double)x[((i * h + j) * w + k) * sld + ci] *
                                         wt[(((ci * cout + co) * 2 + a) * 2 + b) * 2 + cc];
                                int64_t o =
                                    ((int64_t)(2 * i + a) * 2 * h + 2 * j + b) * 2 * w + 2 * k + cc;
                                double e = fabs(s - y[o * dld + co]);
                                if (!(e <= max_err)) max_err = e;
                            }
    CHECK_MSG(max_err < 1e-5, "convt2: max err %g", max_err);
    for (int64_t v = 0; v < no; v++) CHECK(y[v * dld + cout] == 777.0f);
    sm_convt2_free(t);
    free(wt), free(x), free(y);
}

static void test_layout_round_trip(void)
{
    const int c = 3;
    const int64_t n = 50;
    float *x = random_buf(c * n, -1, 1), *cl = malloc((size_t)(n * 4) * sizeof *cl);
    float *back = malloc((size_t)(c * n) * sizeof *back);
    sm_to_channels_last(x, c, n, cl, 4);
    for (int k = 0; k < c; k++) CHECK(cl[7 * 4 + k] == x[k * n + 7]);
    sm_from_channels_last(cl, 4, c, n, back);
    CHECK(memcmp(x, back, (size_t)(c * n) * sizeof *x) == 0);
    free(x), free(cl), free(back);
}

int main(void)
{
    check_seed(0x243f6a8885a308d3ull);
    test_instance_norm();
    test_instance_norm_add();
    test_instance_norm_compacting();
    test_layer_norm();
    test_pointwise();
    test_convt2();
    test_layout_round_trip();
    return check_report("test_ops");
}
