/* The official inference pipeline (spec section 4); see pipeline.h for the
 * steps and the conventions each one matches. */
#include "clinical/pipeline.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clinical/resample.h"
#include "io/binary.h"
#include "io/memory_cap.h"

#define IDX3(z, y, x, h, w) (((size_t)(z) * (size_t)(h) + (size_t)(y)) * (size_t)(w) + (size_t)(x))

/* ---- crop and normalization ------------------------------------------- */

int sm_crop_box(const float *x, int c, int d, int h, int w, int box[3][2])
{
    int lo[3] = {d, h, w}, hi[3] = {0, 0, 0};
    const size_t plane = (size_t)d * h * w;
    for (int z = 0; z < d; z++)
        for (int y = 0; y < h; y++)
            for (int i = 0; i < w; i++) {
                const size_t v = IDX3(z, y, i, h, w);
                int any = 0;
                for (int ch = 0; ch < c && !any; ch++) any = x[ch * plane + v] != 0.0f;
                if (!any) continue;
                const int p[3] = {z, y, i};
                for (int a = 0; a < 3; a++) {
                    if (p[a] < lo[a]) lo[a] = p[a];
                    if (p[a] + 1 > hi[a]) hi[a] = p[a] + 1;
                }
            }
    const int found = hi[0] > 0;
    for (int a = 0; a < 3; a++) {
        box[a][0] = found ? lo[a] : 0;
        box[a][1] = found ? hi[a] : 0;
    }
    return found;
}

void sm_normalize(float *x, size_t n, const segmamba_norm *norm)
{
    double mean, sd;
    if (norm->kind == SEGMAMBA_NORM_CT) {
        const float lo = (float)norm->clip_lo, hi = (float)norm->clip_hi;
        for (size_t i = 0; i < n; i++) x[i] = x[i] < lo ? lo : x[i] > hi ? hi : x[i];
        mean = norm->mean;
        sd = norm->std;
    } else {
        double s = 0.0;
        for (size_t i = 0; i < n; i++) s += x[i];
        mean = n ? s / (double)n : 0.0;
        double q = 0.0; /* two passes: no cancellation for large offsets */
        for (size_t i = 0; i < n; i++) q += (x[i] - mean) * (x[i] - mean);
        sd = n ? sqrt(q / (double)n) : 0.0;
    }
    const double inv = 1.0 / (sd > 1e-8 ? sd : 1e-8);
    for (size_t i = 0; i < n; i++) x[i] = (float)((x[i] - mean) * inv);
}

/* ---- sliding window ---------------------------------------------------- */

int sm_window_starts(int n, int roi, int step, int *starts)
{
    if (n <= roi) {
        if (starts) starts[0] = 0;
        return 1;
    }
    const int count = (n - roi + step - 1) / step + 1;
    for (int i = 0; starts && i < count; i++) starts[i] = i * step < n - roi ? i * step : n - roi;
    return count;
}

void sm_gaussian_map(const int roi[3], float *map)
{
    double *g[3];
    double buf[3 * 4096];
    for (int a = 0; a < 3; a++) {
        g[a] = buf + a * 4096;
        const double sigma = 0.125 * roi[a], c = (roi[a] - 1) / 2.0;
        for (int i = 0; i < roi[a]; i++) g[a][i] = exp(-(i - c) * (i - c) / (2.0 * sigma * sigma));
    }
    float lo = INFINITY;
    for (int z = 0; z < roi[0]; z++)
        for (int y = 0; y < roi[1]; y++)
            for (int x = 0; x < roi[2]; x++) {
                const float v = (float)(g[0][z] * g[1][y] * g[2][x]);
                map[IDX3(z, y, x, roi[1], roi[2])] = v;
                if (v < lo) lo = v;
            }
    if (lo < 1e-3f) lo = 1e-3f;
    const size_t n = (size_t)roi[0] * roi[1] * roi[2];
    for (size_t i = 0; i < n; i++)
        if (map[i] < lo) map[i] = lo;
}

void sm_flip(float *x, int c, int d, int h, int w, int mask)
{
    const int fz = mask & 1, fy = mask & 2, fx = mask & 4;
    const size_t plane = (size_t)d * h * w;
    for (int ch = 0; ch < c; ch++) {
        float *v = x + ch * plane;
        /* Swap each voxel with its mirror once: visit the first half of the
         * volume in the order of the flipped axes' combined index. */
        for (int z = 0; z < d; z++)
            for (int y = 0; y < h; y++)
                for (int i = 0; i < w; i++) {
                    const int z2 = fz ? d - 1 - z : z, y2 = fy ? h - 1 - y : y,
                              i2 = fx ? w - 1 - i : i;
                    const size_t a = IDX3(z, y, i, h, w), b = IDX3(z2, y2, i2, h, w);
                    if (a < b) {
                        const float t = v[a];
                        v[a] = v[b];
                        v[b] = t;
                    }
                }
    }
}

/* State of one sliding-window pass over a (c, pd) padded volume. */
typedef struct window_ctx {
    segmamba_model *m;
    int c, k;
    int roi[3];
    int step[3]; /* between window starts */
    int pd[3];   /* padded grid */
    const float *gmap;
    int batch;        /* windows per forward call */
    float *patch_in;  /* batch x (c, roi) */
    float *patch_out; /* batch x (k, roi) */
    float *acc;       /* (k, pd) */
    float *wsum;      /* (pd) */
    int done, total;
    const segmamba_predict_options *opt;
} window_ctx;

/* MONAI's scan interval: int(roi * (1 - overlap)), at least 1; overlap 0
 * (zero-initialised options) is the official 0.5, a negative one none. */
static int window_step(int roi, double overlap)
{
    const double o = overlap == 0.0 ? 0.5 : overlap < 0.0 ? 0.0 : overlap;
    const int step = (int)(roi * (1.0 - o));
    return step > 0 ? step : 1;
}

/* The corner of window wi of the n[0] x n[1] x n[2] grid of starts, z outermost. */
static void window_origin(int *const starts[3], const int n[3], int wi, int o[3])
{
    o[0] = starts[0][wi / (n[1] * n[2])];
    o[1] = starts[1][wi / n[2] % n[1]];
    o[2] = starts[2][wi % n[2]];
}

/* MONAI's sliding_window_inference with overlap 0.5 and the Gaussian map
 * over an input whose sides are all >= roi: acc = sum(w * logits) / sum(w). */
static sm_status sliding_window(window_ctx *s, const float *x)
{
    int *starts[3], n[3];
    for (int a = 0; a < 3; a++) {
        n[a] = sm_window_starts(s->pd[a], s->roi[a], s->step[a], NULL);
        starts[a] = malloc((size_t)n[a] * sizeof *starts[a]);
    }
    sm_status st = starts[0] && starts[1] && starts[2]
                       ? SEGMAMBA_OK
                       : sm_fail(SEGMAMBA_E_NOMEM, "out of memory for the window list");
    for (int a = 0; a < 3 && st == SEGMAMBA_OK; a++)
        sm_window_starts(s->pd[a], s->roi[a], s->step[a], starts[a]);
    const int r0 = s->roi[0], r1 = s->roi[1], r2 = s->roi[2];
    const int P1 = s->pd[1], P2 = s->pd[2];
    const size_t pplane = (size_t)s->pd[0] * P1 * P2, rplane = (size_t)r0 * r1 * r2;
    memset(s->acc, 0, (size_t)s->k * pplane * sizeof *s->acc);
    memset(s->wsum, 0, pplane * sizeof *s->wsum);
    /* Windows in order (z outermost), s->batch of them per forward call. */
    const int nwin = n[0] * n[1] * n[2];
    for (int first = 0; first < nwin && st == SEGMAMBA_OK; first += s->batch) {
        const int nb = nwin - first < s->batch ? nwin - first : s->batch;
        for (int b = 0; b < nb; b++) {
            int o[3];
            window_origin(starts, n, first + b, o);
            const int z0 = o[0], y0 = o[1], x0 = o[2];
            float *in = s->patch_in + (size_t)b * s->c * rplane;
            for (int ch = 0; ch < s->c; ch++)
                for (int z = 0; z < r0; z++)
                    for (int y = 0; y < r1; y++)
                        memcpy(in + ch * rplane + IDX3(z, y, 0, r1, r2),
                               x + ch * pplane + IDX3(z0 + z, y0 + y, x0, P1, P2),
                               (size_t)r2 * sizeof *x);
        }
        st = segmamba_forward_batch(s->m, nb, s->patch_in, r0, r1, r2, s->patch_out);
        for (int b = 0; b < nb && st == SEGMAMBA_OK; b++) {
            int o[3];
            window_origin(starts, n, first + b, o);
            const int z0 = o[0], y0 = o[1], x0 = o[2];
            const float *out = s->patch_out + (size_t)b * s->k * rplane;
#pragma omp parallel for
            for (int z = 0; z < r0; z++)
                for (int y = 0; y < r1; y++) {
                    const float *g = s->gmap + IDX3(z, y, 0, r1, r2);
                    const size_t o = IDX3(z0 + z, y0 + y, x0, P1, P2);
                    for (int q = 0; q < r2; q++) s->wsum[o + q] += g[q];
                    for (int ch = 0; ch < s->k; ch++) {
                        const float *src = out + ch * rplane + IDX3(z, y, 0, r1, r2);
                        float *dst = s->acc + ch * pplane + o;
                        for (int q = 0; q < r2; q++) dst[q] += g[q] * src[q];
                    }
                }
            s->done++;
            if (s->opt->progress && s->opt->progress(s->opt->progress_user, s->done, s->total))
                st = sm_fail(SEGMAMBA_E_CANCELLED, "prediction cancelled after %d of %d forwards",
                             s->done, s->total);
        }
    }
    for (int a = 0; a < 3; a++) free(starts[a]);
    return st;
}

/* Copies a (c, n) volume into the middle of a zeroed (c, pd) one: an axis
 * shorter than pd gets (pd - n) / 2 zeros before and the rest after. */
static void pad_into(const float *x, int c, const int n[3], const int pd[3], float *out)
{
    const size_t plane = (size_t)n[0] * n[1] * n[2], pplane = (size_t)pd[0] * pd[1] * pd[2];
    int off[3];
    for (int a = 0; a < 3; a++) off[a] = (pd[a] - n[a]) / 2;
    memset(out, 0, (size_t)c * pplane * sizeof *out);
    for (int ch = 0; ch < c; ch++)
        for (int z = 0; z < n[0]; z++)
            for (int y = 0; y < n[1]; y++)
                memcpy(out + ch * pplane + IDX3(z + off[0], y + off[1], off[2], pd[1], pd[2]),
                       x + ch * plane + IDX3(z, y, 0, n[1], n[2]), (size_t)n[2] * sizeof *x);
}

/* The mirror flips in the order the official Predictor sums them:
 * none, D, H, W, DH, DW, HW, DHW (bit 1 = D, 2 = H, 4 = W). */
static const int tta_masks[8] = {0, 1, 2, 4, 3, 5, 6, 7};

/* Whether the sliding window's (c, pd) volume is x itself: no side padded. */
static int needs_padding(const window_ctx *s, const int n[3])
{
    return s->pd[0] != n[0] || s->pd[1] != n[1] || s->pd[2] != n[2];
}

/* x: the normalized (c, n) volume (flipped in place during the passes and
 * restored); xp: the padded volume the windows run on (unused, may be
 * NULL, when no side is padded: they run on x); logits: (k, n) averaged
 * over the flips. Each pass adds its mean (acc / wsum) into logits at the
 * unflipped voxel, the same sums in the same order as flipping a copy
 * back and adding it, without the copy. */
static sm_status infer_tta(window_ctx *s, float *x, const int n[3], float *xp, float *logits)
{
    const size_t plane = (size_t)n[0] * n[1] * n[2],
                 pplane = (size_t)s->pd[0] * s->pd[1] * s->pd[2];
    int off[3];
    for (int a = 0; a < 3; a++) off[a] = (s->pd[a] - n[a]) / 2;
    const int passes = s->opt->no_tta ? 1 : 8, padded = needs_padding(s, n);
    memset(logits, 0, (size_t)s->k * plane * sizeof *logits);
    int cur = 0;
    sm_status st = SEGMAMBA_OK;
    for (int p = 0; p < passes && st == SEGMAMBA_OK; p++) {
        const int mask = tta_masks[p];
        sm_flip(x, s->c, n[0], n[1], n[2], cur ^ mask);
        cur = mask;
        if (padded) pad_into(x, s->c, n, s->pd, xp);
        st = sliding_window(s, padded ? xp : x);
        if (st != SEGMAMBA_OK) break;
        const int fz = mask & 1, fy = mask & 2, fx = mask & 4;
        for (int ch = 0; ch < s->k; ch++)
            for (int z = 0; z < n[0]; z++)
                for (int y = 0; y < n[1]; y++) {
                    const size_t po = IDX3(z + off[0], y + off[1], off[2], s->pd[1], s->pd[2]);
                    const float *a = s->acc + ch * pplane + po, *wsum = s->wsum + po;
                    float *o = logits + ch * plane +
                               IDX3(fz ? n[0] - 1 - z : z, fy ? n[1] - 1 - y : y, 0, n[1], n[2]);
                    if (fx)
                        for (int i = 0; i < n[2]; i++) o[n[2] - 1 - i] += a[i] / wsum[i];
                    else
                        for (int i = 0; i < n[2]; i++) o[i] += a[i] / wsum[i];
                }
    }
    sm_flip(x, s->c, n[0], n[1], n[2], cur);
    if (st == SEGMAMBA_OK && passes > 1)
        for (size_t i = 0; i < (size_t)s->k * plane; i++) logits[i] /= (float)passes;
    return st;
}

/* ---- the whole pipeline ----------------------------------------------- */

void segmamba_prediction_free(segmamba_prediction *p)
{
    free(p->labels);
    free(p->probabilities);
    free(p->regions);
    free(p->uncertainty);
    free(p->masks);
    memset(p, 0, sizeof *p);
}

/* A regions or sigmoid card's threshold on the logits: sigmoid(l) > t is
 * l > log(t / (1 - t)), exactly 0 for the default 0.5. A card left zeroed
 * (memset) means 0.5. */
static double logit_cut(const segmamba_card *card)
{
    const double t = card->threshold == 0.0 ? 0.5 : card->threshold;
    return log(t / (1.0 - t));
}

/* Per voxel of the cropped grid: logits (k, cn) -> outputs at the box. */
static void finish(const segmamba_card *card, const float *logits, int k, const int cn[3],
                   const int box[3][2], segmamba_prediction *out)
{
    const size_t cplane = (size_t)cn[0] * cn[1] * cn[2];
    const size_t plane = (size_t)out->d * out->h * out->w;
    const int regions = card->output != SEGMAMBA_OUTPUT_ARGMAX;
    segmamba_card_region table[SEGMAMBA_CARD_MAX_REGIONS];
    const int rows = segmamba_card_get_regions(card, table);
    const double cut = logit_cut(card);
#pragma omp parallel for
    for (int z = 0; z < cn[0]; z++) {
        double p[SEGMAMBA_CARD_MAX_LABELS];
        for (int y = 0; y < cn[1]; y++)
            for (int x = 0; x < cn[2]; x++) {
                const size_t v = IDX3(z, y, x, cn[1], cn[2]);
                const size_t o = IDX3(z + box[0][0], y + box[1][0], x + box[2][0], out->h, out->w);
                uint8_t label;
                double ent = 0.0;
                if (regions) {
                    uint8_t on[SEGMAMBA_CARD_MAX_LABELS];
                    label = 0;
                    for (int c = 0; c < k; c++) {
                        const double l = logits[c * cplane + v];
                        on[c] = l > cut;
                        p[c] = 1.0 / (1.0 + exp(-l));
                        if (p[c] > 0 && p[c] < 1)
                            ent -= (p[c] * log(p[c]) + (1 - p[c]) * log(1 - p[c])) / (double)k;
                        if (out->masks) out->masks[c * plane + o] = on[c];
                        if (!rows && on[c]) label = (uint8_t)(c + 1); /* no table: last wins */
                    }
                    for (int r = 0; r < rows; r++)
                        if (on[table[r].channel]) label = (uint8_t)table[r].label;
                } else {
                    int best = 0;
                    for (int c = 1; c < k; c++)
                        if (logits[c * cplane + v] > logits[best * cplane + v]) best = c;
                    const double mx = logits[best * cplane + v];
                    double sum = 0.0;
                    for (int c = 0; c < k; c++) sum += p[c] = exp(logits[c * cplane + v] - mx);
                    for (int c = 0; c < k; c++) {
                        p[c] /= sum;
                        if (p[c] > 0) ent -= p[c] * log(p[c]);
                    }
                    label = (uint8_t)best;
                }
                out->labels[o] = label;
                if (out->probabilities)
                    for (int c = 0; c < k; c++) out->probabilities[c * plane + o] = (float)p[c];
                if (out->uncertainty) out->uncertainty[o] = (float)ent;
            }
    }
}

static void regions_from_labels(segmamba_prediction *out)
{
    const size_t plane = (size_t)out->d * out->h * out->w;
    for (size_t i = 0; i < plane; i++) {
        const uint8_t l = out->labels[i];
        out->regions[i] = l == 1 || l == 3;
        out->regions[plane + i] = l >= 1 && l <= 3;
        out->regions[2 * plane + i] = l == 3;
    }
}

static sm_status alloc_outputs(const segmamba_card *card, int k,
                               const segmamba_predict_options *opt, segmamba_prediction *out)
{
    const size_t plane = (size_t)out->d * out->h * out->w;
    out->n_prob = k;
    out->labels = calloc(plane, 1);
    if (opt->want_probabilities) out->probabilities = calloc((size_t)k * plane, sizeof(float));
    if (opt->want_regions) out->regions = calloc(3 * plane, 1);
    if (opt->want_uncertainty) out->uncertainty = calloc(plane, sizeof(float));
    if (card->output != SEGMAMBA_OUTPUT_ARGMAX) {
        out->n_masks = k;
        out->masks = calloc((size_t)k * plane, 1);
    }
    if (!out->labels || (out->n_masks && !out->masks) ||
        (opt->want_probabilities && !out->probabilities) || (opt->want_regions && !out->regions) ||
        (opt->want_uncertainty && !out->uncertainty))
        return sm_fail(SEGMAMBA_E_NOMEM, "out of memory for the outputs (%dx%dx%d)", out->d, out->h,
                       out->w);
    /* Outside the crop box: label 0, certain background. */
    if (out->probabilities && card->output == SEGMAMBA_OUTPUT_ARGMAX)
        for (size_t i = 0; i < plane; i++) out->probabilities[i] = 1.0f;
    return SEGMAMBA_OK;
}

/* Crop, normalize and resample: *x is (c, n) on return. */
static sm_status preprocess(const segmamba_card *card, const segmamba_volume *in,
                            const int box[3][2], float **x, int n[3], int cn[3])
{
    const int c = in->c;
    for (int a = 0; a < 3; a++) cn[a] = box[a][1] - box[a][0];
    const size_t plane = (size_t)in->d * in->h * in->w, cplane = (size_t)cn[0] * cn[1] * cn[2];
    float *crop = malloc((size_t)c * cplane * sizeof *crop);
    if (!crop) return sm_fail(SEGMAMBA_E_NOMEM, "out of memory for the cropped volume");
    for (int ch = 0; ch < c; ch++) {
        for (int z = 0; z < cn[0]; z++)
            for (int y = 0; y < cn[1]; y++)
                memcpy(crop + ch * cplane + IDX3(z, y, 0, cn[1], cn[2]),
                       in->data + ch * plane +
                           IDX3(z + box[0][0], y + box[1][0], box[2][0], in->h, in->w),
                       (size_t)cn[2] * sizeof *crop);
        sm_normalize(crop + ch * cplane, cplane, &card->norm[ch]);
    }
    int resize = 0;
    for (int a = 0; a < 3; a++) {
        /* A volume without a usable spacing is taken to be at the card's. */
        const double sp = in->geom.spacing[a];
        n[a] = sp > 0 && isfinite(sp) && card->spacing[a] > 0
                   ? sm_resampled_side(cn[a], sp, card->spacing[a])
                   : cn[a]; /* spacing 0: the input's own */
        resize |= n[a] != cn[a];
    }
    if (!resize) {
        *x = crop;
        return SEGMAMBA_OK;
    }
    /* The file's voxel spacing sets these sides (up to 2^20 each): the size
     * is checked for overflow and against the memory cap first. */
    uint64_t bytes = (uint64_t)c * sizeof *crop;
    for (int a = 0; a < 3; a++)
        if (!sm_mul_ok(bytes, (uint64_t)n[a], &bytes)) bytes = UINT64_MAX;
    char what[128];
    snprintf(what, sizeof what, "resampling %dx%dx%d voxels to the model's spacing (%dx%dx%d)",
             cn[2], cn[1], cn[0], n[2], n[1], n[0]);
    sm_status st = sm_memory_check(bytes, "input volume", what);
    if (st != SEGMAMBA_OK) {
        free(crop);
        return st;
    }
    float *r = malloc((size_t)bytes);
    st = r ? sm_resample_cubic(crop, c, cn, n, r)
           : sm_fail(SEGMAMBA_E_NOMEM, "out of memory for the resampled volume");
    free(crop);
    if (st != SEGMAMBA_OK) {
        free(r);
        return st;
    }
    *x = r;
    return SEGMAMBA_OK;
}

/* Model i of an ensemble against model 0: one network, else E_MODEL. */
static sm_status check_ensemble(segmamba_model *const *models, int nm, const segmamba_config *cfg)
{
    for (int i = 1; i < nm; i++) {
        segmamba_config ci;
        segmamba_get_config(models[i], &ci);
        char why[256];
        if (segmamba_config_differs(cfg, &ci, why, sizeof why))
            return sm_fail(SEGMAMBA_E_MODEL, "ensemble: model %d is not the network model 1 is: %s",
                           i + 1, why);
    }
    return SEGMAMBA_OK;
}

/* Each model's sliding windows and mirror average over the whole case, one
 * model after the other, into logits; an ensemble's mean over its models
 * (sum, then / nm, as nnU-Net v2's predict_logits_from_preprocessed_data).
 * With more than one model each releases its activation arena when done. */
static sm_status infer_models(window_ctx *s, segmamba_model *const *models, int nm, float *x,
                              const int n[3], float *xp, float *logits)
{
    const size_t count = (size_t)s->k * n[0] * n[1] * n[2];
    float *one = NULL;
    if (nm > 1 && !(one = malloc(count * sizeof *one)))
        return sm_fail(SEGMAMBA_E_NOMEM, "out of memory for the ensemble's logits");
    sm_status st = SEGMAMBA_OK;
    for (int i = 0; i < nm && st == SEGMAMBA_OK; i++) {
        s->m = models[i];
        st = infer_tta(s, x, n, xp, i == 0 ? logits : one);
        if (nm > 1) segmamba_release_arena(models[i]);
        if (st == SEGMAMBA_OK && i > 0)
            for (size_t j = 0; j < count; j++) logits[j] += one[j];
    }
    free(one);
    if (st == SEGMAMBA_OK && nm > 1)
        for (size_t j = 0; j < count; j++) logits[j] /= (float)nm;
    return st;
}

static sm_status run(segmamba_model *const *models, int nm, const segmamba_card *card,
                     const segmamba_volume *in, const segmamba_predict_options *opt,
                     segmamba_prediction *out)
{
    segmamba_config cfg;
    segmamba_get_config(models[0], &cfg);
    SM_TRY(check_ensemble(models, nm, &cfg));
    const int k = cfg.out_chans, c = in->c;
    if (c != card->n_channels || c != cfg.in_chans)
        return sm_fail(SEGMAMBA_E_ARG,
                       "the input has %d channels; the model card (%s) names %d and "
                       "the model takes %d",
                       c, card->origin, card->n_channels, cfg.in_chans);
    if (k != segmamba_card_get_output_count(card) || k > SEGMAMBA_CARD_MAX_LABELS)
        return sm_fail(SEGMAMBA_E_MODEL, "the model has %d outputs; the model card (%s) expects %d",
                       k, card->origin, segmamba_card_get_output_count(card));
    segmamba_card_region table[SEGMAMBA_CARD_MAX_REGIONS];
    const int rows = segmamba_card_get_regions(card, table);
    for (int r = 0; r < rows; r++)
        if (table[r].channel < 0 || table[r].channel >= k || table[r].label < 0 ||
            table[r].label > 255)
            return sm_fail(SEGMAMBA_E_ARG,
                           "the model card (%s): region %d (channel %d, label %d) "
                           "is out of range",
                           card->origin, r, table[r].channel, table[r].label);
    if (card->output != SEGMAMBA_OUTPUT_ARGMAX &&
        !(card->threshold == 0.0 || (card->threshold > 0.0 && card->threshold < 1.0)))
        return sm_fail(SEGMAMBA_E_ARG, "the model card (%s): threshold %g is not in (0, 1)",
                       card->origin, card->threshold);
    if (in->d <= 0 || in->h <= 0 || in->w <= 0 || !in->data)
        return sm_fail(SEGMAMBA_E_ARG, "empty input volume");
    /* The caller's overlap, else the card's (0 in both: the official 0.5). */
    const double overlap = opt->overlap != 0.0 ? opt->overlap : card->overlap;
    if (!(overlap <= 0.95)) /* NaN too */
        return sm_fail(SEGMAMBA_E_ARG, "window overlap %g: at most 0.95", overlap);
    out->d = in->d;
    out->h = in->h;
    out->w = in->w;
    SM_TRY(alloc_outputs(card, k, opt, out));
    if (!sm_crop_box(in->data, c, in->d, in->h, in->w, out->box)) {
        /* Nothing but zeros: all background. */
        if (opt->progress && opt->progress(opt->progress_user, 0, 0))
            return sm_fail(SEGMAMBA_E_CANCELLED, "prediction cancelled");
        return SEGMAMBA_OK;
    }

    float *x = NULL;
    int n[3] = {0}, cn[3] = {0};
    SM_TRY(preprocess(card, in, (const int(*)[2])out->box, &x, n, cn));

    window_ctx s = {.m = models[0],
                    .c = c,
                    .k = k,
                    .opt = opt,
                    .batch = opt->windows_per_call > 0              ? opt->windows_per_call
                             : cfg.backend == SEGMAMBA_BACKEND_CUDA ? 4
                                                                    : 1};
    size_t pplane = 1, rplane = 1, plane = 1;
    int nwin = 1;
    for (int a = 0; a < 3; a++) {
        s.roi[a] = card->patch[a];
        s.step[a] = window_step(s.roi[a], overlap);
        s.pd[a] = n[a] > s.roi[a] ? n[a] : s.roi[a];
        pplane *= (size_t)s.pd[a];
        rplane *= (size_t)s.roi[a];
        plane *= (size_t)n[a];
        nwin *= sm_window_starts(s.pd[a], s.roi[a], s.step[a], NULL);
    }
    s.total = nwin * (opt->no_tta ? 1 : 8) * nm;
    float *gmap = malloc(rplane * sizeof *gmap);
    /* The windows run on x itself where no side is padded. */
    float *xp = needs_padding(&s, n) ? malloc((size_t)c * pplane * sizeof *xp) : NULL;
    s.patch_in = malloc((size_t)s.batch * c * rplane * sizeof(float));
    s.patch_out = malloc((size_t)s.batch * k * rplane * sizeof(float));
    s.acc = malloc((size_t)k * pplane * sizeof(float));
    s.wsum = malloc(pplane * sizeof(float));
    float *logits = malloc((size_t)k * plane * sizeof *logits);
    sm_status st = SEGMAMBA_OK;
    if (!gmap || (!xp && needs_padding(&s, n)) || !s.patch_in || !s.patch_out || !s.acc ||
        !s.wsum || !logits)
        st =
            sm_fail(SEGMAMBA_E_NOMEM, "out of memory for the sliding window (%dx%dx%d, %d outputs)",
                    s.pd[0], s.pd[1], s.pd[2], k);
    if (st == SEGMAMBA_OK) {
        sm_gaussian_map(s.roi, gmap);
        s.gmap = gmap;
        st = infer_models(&s, models, nm, x, n, xp, logits);
    }
    free(gmap);
    free(xp);
    free(s.patch_in);
    free(s.patch_out);
    free(s.acc);
    free(s.wsum);
    free(x);
    out->windows = s.done;
    if (st == SEGMAMBA_OK && (n[0] != cn[0] || n[1] != cn[1] || n[2] != cn[2])) {
        float *back = malloc((size_t)k * cn[0] * cn[1] * cn[2] * sizeof *back);
        st = back ? sm_resample_linear(logits, k, n, cn, back)
                  : sm_fail(SEGMAMBA_E_NOMEM, "out of memory resampling the logits back");
        free(logits);
        logits = back;
    }
    if (st == SEGMAMBA_OK) finish(card, logits, k, cn, (const int(*)[2])out->box, out);
    free(logits);
    return st;
}

sm_status segmamba_predict_ensemble(segmamba_model *const *models, int n, const segmamba_card *card,
                                    const segmamba_volume *input,
                                    const segmamba_predict_options *opt, segmamba_prediction *out)
{
    memset(out, 0, sizeof *out);
    int have = models && n >= 1;
    for (int i = 0; have && i < n; i++) have = models[i] != NULL;
    if (!have || !card || !input || !opt)
        return sm_fail(SEGMAMBA_E_ARG, "segmamba_predict: models, card, input and options are "
                                       "required");
    sm_status st = run(models, n, card, input, opt, out);
    if (st == SEGMAMBA_OK && out->regions) regions_from_labels(out);
    if (st != SEGMAMBA_OK) segmamba_prediction_free(out);
    return st;
}

sm_status segmamba_predict(segmamba_model *m, const segmamba_card *card,
                           const segmamba_volume *input, const segmamba_predict_options *opt,
                           segmamba_prediction *out)
{
    return segmamba_predict_ensemble(&m, 1, card, input, opt, out);
}
