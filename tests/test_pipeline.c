/* The inference pipeline's pieces against independent formulas written
 * here (window placement, MONAI's Gaussian map, crop box, normalization,
 * flips, resampling), and a few whole-pipeline properties with the tiny
 * committed model (padding placement, a single window equal to one
 * forward, flip equivariance of the mirror averaging, an all-zero volume).
 * The model card's JSON is tests/test_card.c; the full comparison with an
 * independent Python pipeline is tests/test_pipeline_reference.py. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clinical/card.h"
#include "check.h"
#include "clinical/pipeline.h"
#include "clinical/resample.h"

#define TINY_MODEL "tests/fixtures/tiny/model.safetensors"

static float uniform(float lo, float hi) { return (float)check_uniform(lo, hi); }

/* A running maximum of errors, by comparison rather than fmax(): GCC 12.2
 * for aarch64 crashes (internal compiler error) vectorising fmax reductions
 * over values widened from float at -O3. As with fmax, a NaN is skipped. */
static double max_err(double worst, double e) { return e > worst ? e : worst; }

static size_t vox(int z, int y, int x, int h, int w) { return ((size_t)z * h + y) * w + x; }

/* ---- windows and weights ---- */

static void test_window_starts(void)
{
    const int rois[] = {16, 32, 128};
    for (int r = 0; r < 3; r++) {
        const int roi = rois[r], step = roi / 2;
        for (int n = roi; n <= 4 * roi + 7; n++) {
            /* MONAI's dense_patch_slices: the first d with d*step + roi >= n. */
            int d = 0;
            while (d * step + roi < n) d++;
            int starts[64];
            const int count = sm_window_starts(n, roi, step, starts);
            CHECK_MSG(count == d + 1, "n %d roi %d: %d windows, want %d", n, roi, count, d + 1);
            const double want = ceil((double)(n - roi) / step) + 1;
            CHECK(count == (int)want);
            for (int i = 0; i < count && i < 64; i++) {
                const int s = i * step < n - roi ? i * step : n - roi;
                CHECK_MSG(starts[i] == s, "n %d roi %d window %d at %d, want %d", n, roi, i,
                          starts[i], s);
            }
            CHECK(starts[count - 1] + roi == n); /* the last is flush with the end */
        }
    }
    int s[1];
    CHECK(sm_window_starts(20, 32, 16, s) == 1 && s[0] == 0);
}

/* The Gaussian map's exponent at voxel (z, y, x), written as one 3D sum
 * (MONAI: sigma = roi / 8 per axis, centred at (roi - 1) / 2). */
static double gauss_exponent(const int roi[3], int z, int y, int x)
{
    const int p[3] = {z, y, x};
    double e = 0;
    for (int a = 0; a < 3; a++) {
        const double c = (roi[a] - 1) / 2.0, s = roi[a] / 8.0;
        e += (p[a] - c) * (p[a] - c) / (2 * s * s);
    }
    return e;
}

static void test_gaussian_map(void)
{
    const int rois[][3] = {{32, 48, 16}, {128, 128, 128}, {16, 16, 16}};
    for (int r = 0; r < 3; r++) {
        const int *roi = rois[r];
        const size_t n = (size_t)roi[0] * roi[1] * roi[2];
        float *map = malloc(n * sizeof *map);
        sm_gaussian_map(roi, map);
        /* One 3D exponent instead of a product of three 1D ones. */
        double mn = INFINITY;
        for (int z = 0; z < roi[0]; z++)
            for (int y = 0; y < roi[1]; y++)
                for (int x = 0; x < roi[2]; x++) {
                    const double e = gauss_exponent(roi, z, y, x);
                    if (exp(-e) < mn) mn = exp(-e);
                }
        const double floor_v = mn > 1e-3 ? mn : 1e-3;
        double worst = 0;
        for (int z = 0; z < roi[0]; z++)
            for (int y = 0; y < roi[1]; y++)
                for (int x = 0; x < roi[2]; x++) {
                    const double e = gauss_exponent(roi, z, y, x);
                    double want = exp(-e) > floor_v ? exp(-e) : floor_v;
                    double err = fabs(map[vox(z, y, x, roi[1], roi[2])] - want) / want;
                    if (err > worst) worst = err;
                }
        CHECK_MSG(worst < 1e-5, "roi %dx%dx%d: relative error %g", roi[0], roi[1], roi[2], worst);
        /* Not normalised by its maximum: an even roi's centre is below 1. */
        const double c = exp(-3 * 0.25 / (2 * (roi[0] / 8.0) * (roi[0] / 8.0)));
        if (roi[0] == roi[1] && roi[1] == roi[2])
            CHECK(fabs(map[vox(roi[0] / 2, roi[1] / 2, roi[2] / 2, roi[1], roi[2])] - c) < 1e-6);
        CHECK(fabs(map[0] - 1e-3) < 1e-9); /* corners clamped */
        free(map);
    }
}

/* ---- crop, normalization, flips ---- */

static void test_crop_box(void)
{
    const int c = 3, d = 9, h = 11, w = 13;
    const size_t plane = (size_t)d * h * w;
    float *x = calloc(c * plane, sizeof *x);
    int box[3][2];
    CHECK(sm_crop_box(x, c, d, h, w, box) == 0);
    CHECK(box[0][0] == box[0][1] && box[1][0] == box[1][1]);
    /* One voxel per channel: the box is their union. */
    x[0 * plane + vox(2, 5, 6, h, w)] = 1.0f;
    x[1 * plane + vox(7, 3, 6, h, w)] = -0.5f;
    x[2 * plane + vox(4, 4, 11, h, w)] = 1e-30f;
    CHECK(sm_crop_box(x, c, d, h, w, box) == 1);
    const int want[3][2] = {{2, 8}, {3, 6}, {6, 12}};
    for (int a = 0; a < 3; a++)
        CHECK_MSG(box[a][0] == want[a][0] && box[a][1] == want[a][1], "axis %d: [%d, %d)", a,
                  box[a][0], box[a][1]);
    /* A hole inside the box does not change it (filling holes is a no-op for the box). */
    free(x);
}

static void test_normalize(void)
{
    const size_t n = 5000;
    float *x = malloc(n * sizeof *x);
    double s = 0, q = 0;
    for (size_t i = 0; i < n; i++) s += x[i] = uniform(100.0f, 300.0f);
    const double mean = s / n;
    for (size_t i = 0; i < n; i++) q += (x[i] - mean) * (x[i] - mean);
    const double sd = sqrt(q / n);
    float *y = malloc(n * sizeof *y);
    memcpy(y, x, n * sizeof *y);
    segmamba_norm z = {.kind = SEGMAMBA_NORM_ZSCORE};
    sm_normalize(y, n, &z);
    double worst = 0;
    for (size_t i = 0; i < n; i++) worst = max_err(worst, fabs(y[i] - (x[i] - mean) / sd));
    CHECK_MSG(worst < 1e-5, "zscore error %g", worst);

    for (size_t i = 0; i < n; i++) y[i] = 7.0f; /* constant: std 0 -> divided by 1e-8 */
    sm_normalize(y, n, &z);
    CHECK(y[0] == 0.0f && y[n - 1] == 0.0f);

    segmamba_norm ct = {
        .kind = SEGMAMBA_NORM_CT, .clip_lo = 150, .clip_hi = 250, .mean = 190, .std = 30};
    memcpy(y, x, n * sizeof *y);
    sm_normalize(y, n, &ct);
    worst = 0;
    for (size_t i = 0; i < n; i++) {
        const double v = fmin(fmax(x[i], 150.0), 250.0);
        worst = max_err(worst, fabs(y[i] - (v - 190) / 30));
    }
    CHECK_MSG(worst < 1e-5, "ct error %g", worst);
    free(x);
    free(y);
}

static void test_flip(void)
{
    const int c = 2, d = 5, h = 4, w = 7;
    const size_t plane = (size_t)d * h * w;
    float *x = malloc(c * plane * sizeof *x), *y = malloc(c * plane * sizeof *y);
    for (size_t i = 0; i < c * plane; i++) x[i] = (float)i;
    for (int mask = 0; mask < 8; mask++) {
        memcpy(y, x, c * plane * sizeof *y);
        sm_flip(y, c, d, h, w, mask);
        int bad = 0;
        for (int ch = 0; ch < c; ch++)
            for (int z = 0; z < d; z++)
                for (int j = 0; j < h; j++)
                    for (int i = 0; i < w; i++) {
                        const int z2 = mask & 1 ? d - 1 - z : z, j2 = mask & 2 ? h - 1 - j : j,
                                  i2 = mask & 4 ? w - 1 - i : i;
                        bad += y[ch * plane + vox(z, j, i, h, w)] !=
                               x[ch * plane + vox(z2, j2, i2, h, w)];
                    }
        CHECK_MSG(bad == 0, "mask %d: %d voxels misplaced", mask, bad);
        sm_flip(y, c, d, h, w, mask);
        CHECK_MSG(memcmp(x, y, c * plane * sizeof *y) == 0, "mask %d: no round trip", mask);
    }
    free(x);
    free(y);
}

/* ---- resampling ---- */

static double smooth(double z, double y, double x)
{
    return sin(0.21 * z + 0.3) * cos(0.17 * y - 0.2) + 0.05 * x + 0.3 * sin(0.11 * x * 1.3);
}

static void test_resample(void)
{
    const int in[3] = {20, 24, 28}, out[3] = {31, 17, 41};
    const size_t pin = (size_t)in[0] * in[1] * in[2], pout = (size_t)out[0] * out[1] * out[2];
    float *src = malloc(pin * sizeof *src), *dst = malloc(pout * sizeof *dst);
    for (int z = 0; z < in[0]; z++)
        for (int y = 0; y < in[1]; y++)
            for (int x = 0; x < in[2]; x++)
                src[vox(z, y, x, in[1], in[2])] = (float)smooth(z, y, x);

    /* Cubic on a smooth function: close to it inside (3 voxels off the edges). */
    CHECK(sm_resample_cubic(src, 1, in, out, dst) == SEGMAMBA_OK);
    double worst = 0;
    for (int z = 0; z < out[0]; z++)
        for (int y = 0; y < out[1]; y++)
            for (int x = 0; x < out[2]; x++) {
                const double t[3] = {(z + 0.5) * in[0] / out[0] - 0.5,
                                     (y + 0.5) * in[1] / out[1] - 0.5,
                                     (x + 0.5) * in[2] / out[2] - 0.5};
                int inside = 1;
                for (int a = 0; a < 3; a++) inside &= t[a] >= 3 && t[a] <= in[a] - 4;
                if (!inside) continue;
                const double want = smooth(t[0], t[1], t[2]);
                worst = max_err(worst, fabs(dst[vox(z, y, x, out[1], out[2])] - want));
            }
    CHECK_MSG(worst < 2e-3, "cubic on a smooth function: max error %g", worst);

    /* Same grid: the spline interpolates its samples. */
    float *same = malloc(pin * sizeof *same);
    CHECK(sm_resample_cubic(src, 1, in, in, same) == SEGMAMBA_OK);
    worst = 0;
    for (size_t i = 0; i < pin; i++) worst = max_err(worst, fabs(same[i] - src[i]));
    CHECK_MSG(worst < 1e-5, "cubic identity: max error %g", worst);

    /* Clipped to the input's range. */
    float lo = src[0], hi = src[0];
    for (size_t i = 0; i < pin; i++) lo = fminf(lo, src[i]), hi = fmaxf(hi, src[i]);
    int outside = 0;
    for (size_t i = 0; i < pout; i++) outside += dst[i] < lo || dst[i] > hi;
    CHECK(outside == 0);

    /* Trilinear reproduces an affine function wherever no clamping happens. */
    for (int z = 0; z < in[0]; z++)
        for (int y = 0; y < in[1]; y++)
            for (int x = 0; x < in[2]; x++)
                src[vox(z, y, x, in[1], in[2])] = (float)(1.0 + 0.5 * z - 0.25 * y + 0.125 * x);
    CHECK(sm_resample_linear(src, 1, in, out, dst) == SEGMAMBA_OK);
    worst = 0;
    for (int z = 0; z < out[0]; z++)
        for (int y = 0; y < out[1]; y++)
            for (int x = 0; x < out[2]; x++) {
                double t[3] = {(z + 0.5) * in[0] / out[0] - 0.5, (y + 0.5) * in[1] / out[1] - 0.5,
                               (x + 0.5) * in[2] / out[2] - 0.5};
                for (int a = 0; a < 3; a++) t[a] = fmin(fmax(t[a], 0.0), in[a] - 1.0);
                const double want = 1.0 + 0.5 * t[0] - 0.25 * t[1] + 0.125 * t[2];
                worst = max_err(worst, fabs(dst[vox(z, y, x, out[1], out[2])] - want));
            }
    CHECK_MSG(worst < 1e-5, "trilinear on an affine function: max error %g", worst);

    CHECK(sm_resampled_side(155, 1.0, 1.0) == 155);
    CHECK(sm_resampled_side(10, 1.25, 1.0) == 12); /* 12.5 rounds half to even */
    CHECK(sm_resampled_side(14, 1.25, 1.0) == 18); /* 17.5 -> 18 */
    CHECK(sm_resampled_side(40, 0.7, 1.0) == 28);
    free(src);
    free(dst);
    free(same);
}

/* ---- the whole pipeline with the tiny model ---- */

static segmamba_model *open_tiny(segmamba_card *card)
{
    segmamba_options o = {.nslices = {16, 8, 4, 2}};
    segmamba_model *m = NULL;
    if (segmamba_open(TINY_MODEL, &o, &m) != SEGMAMBA_OK) {
        fprintf(stderr, "cannot open %s: %s\n", TINY_MODEL, segmamba_get_last_error());
        return NULL;
    }
    const char *text =
        "{\"channels\": [{\"name\": \"a\"}, {\"name\": \"b\"}], \"patch\": [32, 32, 32],"
        " \"nslices\": [16, 8, 4, 2], \"labels\": [\"bg\", \"x\", \"y\"]}";
    if (segmamba_card_parse(text, strlen(text), "test card", card) != SEGMAMBA_OK) return NULL;
    return m;
}

static segmamba_volume random_volume(int c, int d, int h, int w)
{
    segmamba_volume v = {.c = c, .d = d, .h = h, .w = w};
    v.data = malloc((size_t)c * d * h * w * sizeof *v.data);
    for (size_t i = 0; i < (size_t)c * d * h * w; i++) v.data[i] = uniform(0.5f, 3.0f);
    for (int a = 0; a < 3; a++) v.geom.spacing[a] = 1.0;
    return v;
}

/* Labels of one forward on the z-scored volume after padding it to 32^3
 * with off[] zeros before each axis. */
static void reference_labels(segmamba_model *m, const segmamba_volume *v, const int off[3],
                             uint8_t *labels)
{
    const int R = 32;
    const size_t plane = (size_t)v->d * v->h * v->w, rp = (size_t)R * R * R;
    float *norm = malloc(v->c * plane * sizeof *norm), *x = calloc(v->c * rp, sizeof *x),
          *y = malloc(3 * rp * sizeof *y);
    memcpy(norm, v->data, v->c * plane * sizeof *norm);
    segmamba_norm z = {.kind = SEGMAMBA_NORM_ZSCORE};
    for (int ch = 0; ch < v->c; ch++) sm_normalize(norm + ch * plane, plane, &z);
    for (int ch = 0; ch < v->c; ch++)
        for (int i = 0; i < v->d; i++)
            for (int j = 0; j < v->h; j++)
                for (int k = 0; k < v->w; k++)
                    x[ch * rp + vox(i + off[0], j + off[1], k + off[2], R, R)] =
                        norm[ch * plane + vox(i, j, k, v->h, v->w)];
    CHECK(segmamba_forward(m, x, R, R, R, y) == SEGMAMBA_OK);
    for (int i = 0; i < v->d; i++)
        for (int j = 0; j < v->h; j++)
            for (int k = 0; k < v->w; k++) {
                const size_t o = vox(i + off[0], j + off[1], k + off[2], R, R);
                int best = 0;
                for (int c = 1; c < 3; c++)
                    if (y[c * rp + o] > y[best * rp + o]) best = c;
                labels[vox(i, j, k, v->h, v->w)] = (uint8_t)best;
            }
    free(norm);
    free(x);
    free(y);
}

static int count_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
    int d = 0;
    for (size_t i = 0; i < n; i++) d += a[i] != b[i];
    return d;
}

static void test_pipeline_tiny(void)
{
    segmamba_card card;
    segmamba_model *m = open_tiny(&card);
    CHECK(m != NULL);
    if (!m) return;
    segmamba_predict_options opt = {
        .no_tta = 1, .want_probabilities = 1, .want_uncertainty = 1, .want_regions = 1};

    /* Exactly one patch: one window, its weights cancel. */
    segmamba_volume v = random_volume(2, 32, 32, 32);
    segmamba_prediction p;
    CHECK(segmamba_predict(m, &card, &v, &opt, &p) == SEGMAMBA_OK);
    uint8_t *ref = malloc(32 * 32 * 32);
    const int zero[3] = {0, 0, 0};
    reference_labels(m, &v, zero, ref);
    CHECK(p.windows == 1);
    CHECK_MSG(count_diff(p.labels, ref, 32 * 32 * 32) == 0, "%d labels differ",
              count_diff(p.labels, ref, 32 * 32 * 32));
    double worst = 0;
    for (size_t i = 0; i < 32 * 32 * 32; i++) {
        const double s =
            p.probabilities[i] + p.probabilities[32768 + i] + p.probabilities[65536 + i];
        worst = max_err(worst, fabs(s - 1));
        CHECK(p.uncertainty[i] >= 0 && p.uncertainty[i] <= log(3.0) + 1e-5);
    }
    CHECK(worst < 1e-5);
    segmamba_prediction_free(&p);

    /* Flip equivariance of the mirror averaging on a one-window volume. */
    segmamba_predict_options tta = {.want_probabilities = 1};
    segmamba_prediction a, b;
    CHECK(segmamba_predict(m, &card, &v, &tta, &a) == SEGMAMBA_OK);
    CHECK(a.windows == 8);
    sm_flip(v.data, 2, 32, 32, 32, 5);
    CHECK(segmamba_predict(m, &card, &v, &tta, &b) == SEGMAMBA_OK);
    sm_flip(b.probabilities, 3, 32, 32, 32, 5);
    worst = 0;
    for (size_t i = 0; i < 3 * 32768; i++)
        worst = max_err(worst, fabs(a.probabilities[i] - b.probabilities[i]));
    CHECK_MSG(worst < 1e-4, "TTA not flip-equivariant: %g", worst);
    segmamba_prediction_free(&a);
    segmamba_prediction_free(&b);
    segmamba_volume_free(&v);

    /* Smaller than the patch on every axis, odd margins: (32 - n) / 2 zeros before. */
    v = random_volume(2, 19, 32, 25);
    CHECK(segmamba_predict(m, &card, &v, &opt, &p) == SEGMAMBA_OK);
    const int off[3] = {6, 0, 3};
    reference_labels(m, &v, off, ref);
    CHECK_MSG(count_diff(p.labels, ref, 19 * 32 * 25) == 0, "padded: %d labels differ",
              count_diff(p.labels, ref, 19 * 32 * 25));
    segmamba_prediction_free(&p);
    segmamba_volume_free(&v);

    /* Nothing but zeros: all background, no window run. */
    v = random_volume(2, 20, 21, 22);
    memset(v.data, 0, 2 * 20 * 21 * 22 * sizeof *v.data);
    CHECK(segmamba_predict(m, &card, &v, &opt, &p) == SEGMAMBA_OK);
    int nonzero = 0;
    for (size_t i = 0; i < 20 * 21 * 22; i++)
        nonzero += p.labels[i] != 0 || p.probabilities[i] != 1.0f || p.uncertainty[i] != 0.0f;
    CHECK(nonzero == 0 && p.windows == 0);
    segmamba_prediction_free(&p);

    /* Wrong channel count. */
    v.c = 1;
    CHECK(segmamba_predict(m, &card, &v, &opt, &p) == SEGMAMBA_E_ARG);
    segmamba_volume_free(&v);
    free(ref);
    segmamba_close(m);
}

/* The heads on the tiny model (3 outputs): sigmoid masks and label maps,
 * the regions table, the generic card, a non-cubic patch. */
static void test_heads_tiny(void)
{
    segmamba_card card, sig;
    segmamba_model *m = open_tiny(&card);
    CHECK(m != NULL);
    if (!m) return;
    int generic = 0;
    segmamba_card g;
    segmamba_model *mg = NULL;
    CHECK(segmamba_open_with_card(TINY_MODEL, NULL, NULL, &mg, &g, &generic) == SEGMAMBA_OK &&
          generic);
    segmamba_close(mg);
    CHECK(g.n_channels == 2 && strcmp(g.channels[1], "ch1") == 0 && g.spacing[0] == 0 &&
          g.patch[0] == 128 && g.output == SEGMAMBA_OUTPUT_ARGMAX && g.n_labels == 3 &&
          strcmp(g.labels[2], "2") == 0 && g.nslices[0] == 16);
    CHECK(segmamba_card_check_model(&g, m) == SEGMAMBA_OK);

    const segmamba_predict_options opt = {.no_tta = 1, .want_probabilities = 1};
    segmamba_volume v = random_volume(2, 28, 36, 30);
    v.geom.spacing[0] = 1.5; /* the generic card does not resample: 28 -> 1 window */
    segmamba_prediction a, b;
    g.patch[0] = g.patch[1] = g.patch[2] = 32;
    CHECK(segmamba_predict(m, &g, &v, &opt, &a) == SEGMAMBA_OK);
    CHECK_MSG(a.n_masks == 0 && a.masks == NULL && a.windows == 2, "%d windows", a.windows);
    segmamba_prediction_free(&a);
    v.geom.spacing[0] = 1.0;

    /* Sigmoid, masks: label = the last channel on; masks = sigmoid > threshold. */
    const char *text =
        "{\"channels\": [{\"name\": \"a\"}, {\"name\": \"b\"}], \"patch\": [32, 32, 32],"
        " \"nslices\": [16, 8, 4, 2], \"labels\": [\"bg\", \"x\", \"y\", \"z\"],"
        " \"output\": \"sigmoid\", \"threshold\": 0.4}";
    CHECK(segmamba_card_parse(text, strlen(text), "t", &sig) == SEGMAMBA_OK);
    CHECK(segmamba_card_check_model(&sig, m) == SEGMAMBA_OK);
    CHECK(segmamba_predict(m, &sig, &v, &opt, &a) == SEGMAMBA_OK);
    const size_t n = (size_t)28 * 36 * 30;
    int bad = 0, on = 0;
    for (size_t i = 0; i < n; i++) {
        int want = 0;
        for (int c = 0; c < 3; c++) {
            const int mk = a.probabilities[c * n + i] > 0.4f;
            /* the float probability can round onto the threshold */
            if (fabsf(a.probabilities[c * n + i] - 0.4f) > 1e-6f) bad += a.masks[c * n + i] != mk;
            if (a.masks[c * n + i]) want = c + 1;
            on += a.masks[c * n + i];
        }
        bad += a.labels[i] != want;
    }
    CHECK_MSG(a.n_masks == 3 && bad == 0 && on > 0, "%d voxels disagree, %d on", bad, on);

    /* The same logits as a regions card with the BraTS table, default and explicit. */
    const char *reg = "{\"channels\": [{\"name\": \"a\"}, {\"name\": \"b\"}],"
                      " \"patch\": [32, 32, 32], \"nslices\": [16, 8, 4, 2],"
                      " \"labels\": [\"bg\", \"NCR\", \"ED\", \"ET\"], \"output\": \"regions\"}";
    const char *regt = "{\"channels\": [{\"name\": \"a\"}, {\"name\": \"b\"}],"
                       " \"patch\": [32, 32, 32], \"nslices\": [16, 8, 4, 2],"
                       " \"labels\": [\"bg\", \"NCR\", \"ED\", \"ET\"], \"output\": \"regions\","
                       " \"regions\": [{\"name\": \"W\", \"channel\": 1, \"label\": 2},"
                       " {\"name\": \"T\", \"channel\": 0, \"label\": 1},"
                       " {\"name\": \"E\", \"channel\": 2, \"label\": 3}]}";
    segmamba_card rc, rt;
    CHECK(segmamba_card_parse(reg, strlen(reg), "t", &rc) == SEGMAMBA_OK);
    CHECK(segmamba_card_parse(regt, strlen(regt), "t", &rt) == SEGMAMBA_OK);
    CHECK(segmamba_predict(m, &rc, &v, &opt, &b) == SEGMAMBA_OK);
    segmamba_prediction t;
    CHECK(segmamba_predict(m, &rt, &v, &opt, &t) == SEGMAMBA_OK);
    CHECK(count_diff(b.labels, t.labels, n) == 0);
    bad = 0;
    for (size_t i = 0; i < n; i++) {
        const float *p = b.probabilities;
        const int tc = p[i] > 0.5f, wt = p[n + i] > 0.5f, et = p[2 * n + i] > 0.5f;
        if (fabsf(p[i] - 0.5f) > 1e-6f && fabsf(p[n + i] - 0.5f) > 1e-6f &&
            fabsf(p[2 * n + i] - 0.5f) > 1e-6f)
            bad += b.labels[i] != (et ? 3 : tc ? 1 : wt ? 2 : 0);
    }
    CHECK_MSG(bad == 0, "regions: %d labels differ from ET > TC > WT", bad);
    segmamba_prediction_free(&t);
    segmamba_prediction_free(&a);
    segmamba_prediction_free(&b);

    /* A non-cubic patch: windows per axis; a card overlap the caller overrides. */
    card.patch[0] = 16;
    card.patch[1] = 32;
    card.patch[2] = 48;
    CHECK(segmamba_card_check_model(&card, m) == SEGMAMBA_OK);
    CHECK(segmamba_predict(m, &card, &v, &opt, &a) == SEGMAMBA_OK);
    /* starts: D 28 in 16 step 8: 3; H 36 in 32 step 16: 2; W 30 padded to 48: 1 */
    CHECK_MSG(a.windows == 6, "%d windows", a.windows);
    segmamba_prediction_free(&a);
    card.overlap = -1.0; /* none: D 2, H 2, W 1 */
    CHECK(segmamba_predict(m, &card, &v, &opt, &a) == SEGMAMBA_OK);
    CHECK_MSG(a.windows == 4, "%d windows", a.windows);
    segmamba_prediction_free(&a);
    card.overlap = 0.75; /* D step 4: 4; H step 8: 2 */
    CHECK(segmamba_predict(m, &card, &v, &opt, &a) == SEGMAMBA_OK);
    CHECK_MSG(a.windows == 4 * 2, "%d windows", a.windows);
    segmamba_prediction_free(&a);
    segmamba_predict_options half = opt;
    half.overlap = 0.5; /* the caller's wins */
    CHECK(segmamba_predict(m, &card, &v, &half, &a) == SEGMAMBA_OK);
    CHECK_MSG(a.windows == 6, "%d windows", a.windows);
    segmamba_prediction_free(&a);
    segmamba_volume_free(&v);
    segmamba_close(m);
}

int main(void)
{
    test_window_starts();
    test_gaussian_map();
    test_crop_box();
    test_normalize();
    test_flip();
    test_resample();
    test_pipeline_tiny();
    test_heads_tiny();
    return check_report("test_pipeline");
}
