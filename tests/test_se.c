/* sm_se_forward (engine/se.h), SegMamba-V2's squeeze-excitation gate,
 * against a double-precision evaluation of spec 7.2:
 * g = sigmoid(fc2(ReLU(fc1(mean over voxels of x)))), out = x * g per
 * channel. Odd channel counts with the spec's reduction c/8 (at least one),
 * strided rows, out of place and in place, one voxel and many (several
 * threads' partial sums). The op is plain C: it takes no kernel table, so
 * there are no levels to walk. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "engine/se.h"

#define SENTINEL 12345.0f

/* Float's unit roundoff. */
#define U 0x1p-24

static float *random_buf(int64_t n, double lo, double hi)
{
    float *p = malloc((size_t)n * sizeof *p);
    for (int64_t i = 0; i < n; i++) p[i] = (float)check_uniform(lo, hi);
    return p;
}

static double worst_margin;

static void run_case(int c, int64_t n, uint64_t seed)
{
    check_seed(seed);
    const int hid = c / 8 > 0 ? c / 8 : 1, x_ld = c + 5, out_ld = c + 2;
    /* channels with means from about -2 to 2, so the gates differ */
    float *x = random_buf(n * x_ld, -2, 2);
    for (int64_t v = 0; v < n; v++)
        for (int j = 0; j < c; j++) x[v * x_ld + j] += (float)(4.0 * j / c - 2.0);
    float *w1 = random_buf((int64_t)hid * c, -1, 1), *b1 = random_buf(hid, -0.5, 0.5);
    float *w2 = random_buf((int64_t)c * hid, -3, 3), *b2 = random_buf(c, -2, 2);

    /* the reference gate */
    double *mean = calloc((size_t)c, sizeof *mean), *hidden = malloc((size_t)hid * sizeof *hidden);
    double *g = malloc((size_t)c * sizeof *g), *dh = malloc((size_t)hid * sizeof *dh);
    double *bound = malloc((size_t)c * sizeof *bound);
    for (int64_t v = 0; v < n; v++)
        for (int j = 0; j < c; j++) mean[j] += x[v * x_ld + j];
    for (int j = 0; j < c; j++) mean[j] /= (double)n;
    /* Beside each value, the bound on a float evaluation's error: a sum of
     * n products in float is within (n + 1) U sum |terms| (first order);
     * the mean is rounded once to float; the sigmoid's slope is g (1 - g),
     * and expf, the add and the divide round a few times more. */
    for (int i = 0; i < hid; i++) {
        double s = b1[i], mag = fabs(b1[i]);
        for (int j = 0; j < c; j++) {
            s += (double)w1[(int64_t)i * c + j] * mean[j];
            mag += fabs(w1[(int64_t)i * c + j] * mean[j]);
        }
        hidden[i] = s > 0 ? s : 0;
        dh[i] = (c + 2) * U * mag; /* c + 1 for the sum, 1 for the mean's rounding */
    }
    double g_lo = 1, g_hi = 0;
    for (int j = 0; j < c; j++) {
        double s = b2[j], mag = fabs(b2[j]), prop = 0;
        for (int i = 0; i < hid; i++) {
            s += (double)w2[(int64_t)j * hid + i] * hidden[i];
            mag += fabs(w2[(int64_t)j * hid + i] * hidden[i]);
            prop += fabs(w2[(int64_t)j * hid + i]) * dh[i];
        }
        g[j] = 1.0 / (1.0 + exp(-s));
        /* the gate's error, then the product x g's rounding (both per unit of |x|) */
        bound[j] = g[j] * (1 - g[j]) * ((hid + 1) * U * mag + prop) + 5 * U * g[j];
        g_lo = g[j] < g_lo ? g[j] : g_lo;
        g_hi = g[j] > g_hi ? g[j] : g_hi;
    }

    sm_se *se = NULL;
    CHECK(sm_se_create(c, hid, w1, b1, w2, b2, &se) == SEGMAMBA_OK);
    for (int in_place = 0; se && in_place < 2; in_place++) {
        const int ld = in_place ? x_ld : out_ld;
        float *out = malloc((size_t)(n * ld) * sizeof *out);
        for (int64_t i = 0; i < n * ld; i++) out[i] = in_place ? x[i] : SENTINEL;
        CHECK(sm_se_forward(se, in_place ? out : x, x_ld, out, ld, n) == SEGMAMBA_OK);
        double err = 0,
               worst = 0; /* the largest |out - x g| / |x|, and as a fraction of its bound */
        int64_t kept = 0;
        for (int64_t v = 0; v < n; v++) {
            for (int j = 0; j < c; j++) {
                const double xv = x[v * x_ld + j];
                const double e = fabs(out[v * ld + j] - xv * g[j]);
                const double f = e / (bound[j] * fabs(xv));
                err = e / fabs(xv) > err || e != e ? e / fabs(xv) : err;
                worst = f > worst || f != f ? f : worst;
            }
            for (int j = c; j < ld; j++)
                kept += out[v * ld + j] == (in_place ? x[v * x_ld + j] : SENTINEL);
        }
        fprintf(stderr,
                "c %-2d hidden %d n %-5lld %s: max err %.3g of |x|, %.3g of the bound "
                "(gates in [%.3f, %.3f])\n",
                c, hid, (long long)n, in_place ? "in place" : "strided ", err, worst, g_lo, g_hi);
        CHECK_MSG(worst <= 1.0,
                  "c %d n %lld in place %d: max err %.3g of |x|, %.3g times the "
                  "bound",
                  c, (long long)n, in_place, err, worst);
        CHECK_MSG(kept == n * (ld - c), "c %d n %lld in place %d: %lld padding floats changed", c,
                  (long long)n, in_place, (long long)(n * (ld - c) - kept));
        if (!(worst <= worst_margin)) worst_margin = worst;
        free(out);
    }
    /* Gates all alike would hide a channel mix-up. */
    if (c > 1) CHECK_MSG(g_hi - g_lo > 0.1, "c %d: gates only span [%g, %g]", c, g_lo, g_hi);
    sm_se_free(se);
    free(x), free(w1), free(b1), free(w2), free(b2), free(mean), free(hidden), free(g);
    free(dh), free(bound);
}

/* An empty volume and a gate of no width are refused. */
static void test_refusals(void)
{
    const float w[4] = {0.5f, -0.5f, 0.25f, 1.0f}, b[2] = {0.1f, -0.1f};
    sm_se *se = NULL;
    CHECK(sm_se_create(2, 0, w, b, w, b, &se) == SEGMAMBA_E_ARG && se == NULL);
    CHECK(sm_se_create(2, 1, w, b, w, b, &se) == SEGMAMBA_OK);
    if (!se) return;
    float x[2] = {1, 2};
    CHECK(sm_se_forward(se, x, 2, x, 2, 0) == SEGMAMBA_E_ARG);
    sm_se_free(se);
}

int main(void)
{
    static const int channels[] = {3, 17, 48};
    static const int64_t voxels[] = {1, 7, 5000};
    uint64_t seed = 1;
    for (size_t i = 0; i < sizeof channels / sizeof *channels; i++)
        for (size_t j = 0; j < sizeof voxels / sizeof *voxels; j++)
            run_case(channels[i], voxels[j], seed++);
    test_refusals();
    fprintf(stderr, "worst error: %.3g of the bound\n", worst_margin);
    return check_report("test_se");
}
