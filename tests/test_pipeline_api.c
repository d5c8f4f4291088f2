/* The pipeline layer through its public header alone, on a volume made in
 * memory (no file): progress reports every window in order, a callback that
 * asks to stop cancels the run with SEGMAMBA_E_CANCELLED and leaves the
 * prediction empty, the same model then still predicts, and a cancelled run
 * changes nothing for the next one (its labels equal a run never
 * cancelled). An ensemble of the model with a copy of itself gives its
 * output exactly. Also the tri-state FUE option and card_apply. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "segmamba_pipeline.h"

/* The tiny fixture (2 inputs, 3 outputs) with a card of its own: forwards
 * of a few milliseconds, so that the test stays short under emulation. */
static const char *const MODEL = "tests/fixtures/tiny/model.safetensors";
static const char CARD[] =
    "{\"channels\": [{\"name\": \"a\"}, {\"name\": \"b\"}], \"patch\": [32, 32, 32], "
    "\"nslices\": [16, 8, 4, 2], \"labels\": [\"background\", \"x\", \"y\"]}";

typedef struct calls {
    int n, last_done, total, in_order, stop_after;
} calls;

static int on_progress(void *user, int done, int total)
{
    calls *c = user;
    c->in_order &= done == c->last_done + 1 && (c->n == 0 || total == c->total);
    c->n++;
    c->last_done = done;
    c->total = total;
    return c->stop_after > 0 && done >= c->stop_after;
}

int main(void)
{
    segmamba_set_threads(2);
    segmamba_card card;
    CHECK(segmamba_card_parse(CARD, sizeof CARD - 1, "test card", &card) == SEGMAMBA_OK);
    /* The card's nslices and FUE reach the model where the options leave
     * them at their defaults; the caller's choice stays. */
    segmamba_card fue_card = card;
    fue_card.fue = 1;
    const segmamba_options opts = {.fue = SEGMAMBA_FUE_OFF};
    segmamba_model *m = NULL;
    segmamba_config got;
    CHECK(segmamba_open_for_card(MODEL, &fue_card, NULL, &m) == SEGMAMBA_OK);
    if (m) {
        segmamba_get_config(m, &got);
        CHECK(got.fue == 1 && memcmp(got.nslices, card.nslices, sizeof got.nslices) == 0);
        segmamba_close(m);
        m = NULL;
    }
    segmamba_options bad = {.fue = 7};
    CHECK(segmamba_open_for_card(MODEL, &card, &bad, &m) == SEGMAMBA_E_ARG); /* not a FUE setting */
    CHECK(m == NULL);
    CHECK(segmamba_open_for_card(MODEL, &fue_card, &opts, &m) == SEGMAMBA_OK);
    if (!m) return check_report("test_pipeline_api");
    segmamba_get_config(m, &got);
    CHECK(got.fue == 0 && memcmp(got.nslices, card.nslices, sizeof got.nslices) == 0);
    segmamba_config cfg;
    segmamba_get_config(m, &cfg);
    CHECK(cfg.fue == 0);
    CHECK(segmamba_card_check_model(&card, m) == SEGMAMBA_OK);

    /* 2 channels of 40x30x30 voxels at 1 mm: 2x1x1 windows of 32^3. */
    segmamba_volume v = {.c = 2, .d = 40, .h = 30, .w = 30};
    v.geom.d = v.d, v.geom.h = v.h, v.geom.w = v.w;
    for (int a = 0; a < 3; a++) v.geom.spacing[a] = 1.0;
    const size_t n = (size_t)v.d * v.h * v.w;
    v.data = malloc(2 * n * sizeof *v.data);
    CHECK(v.data != NULL);
    if (!v.data) return check_report("test_pipeline_api");
    check_seed(11);
    for (int ch = 0; ch < 2; ch++)
        for (int z = 0; z < v.d; z++)
            for (int y = 0; y < v.h; y++)
                for (int x = 0; x < v.w; x++) {
                    const double r2 =
                        (z - 20.0) * (z - 20.0) + (y - 15.0) * (y - 15.0) + (x - 15.0) * (x - 15.0);
                    v.data[(size_t)ch * n + ((size_t)z * v.h + y) * v.w + x] =
                        (float)((r2 < 100.0 ? 3.0 + ch : 1.0) + check_uniform(-0.2, 0.2));
                }

    segmamba_predict_options po = {.no_tta = 1, .progress = on_progress};
    calls stop = {.in_order = 1, .stop_after = 1};
    po.progress_user = &stop;
    segmamba_prediction p;
    memset(&p, 0xff, sizeof p); /* whatever the caller had there */
    const segmamba_status st = segmamba_predict(m, &card, &v, &po, &p);
    CHECK_MSG(st == SEGMAMBA_E_CANCELLED, "status %s: %s", segmamba_get_status_name(st),
              segmamba_get_last_error());
    CHECK(stop.n == 1 && stop.in_order && stop.total == 2);
    CHECK(p.labels == NULL && p.probabilities == NULL && p.regions == NULL &&
          p.uncertainty == NULL);

    calls all = {.in_order = 1};
    po.progress_user = &all;
    po.want_probabilities = 1;
    CHECK(segmamba_predict(m, &card, &v, &po, &p) == SEGMAMBA_OK);
    CHECK(all.n == 2 && all.in_order && all.last_done == 2 && all.total == 2);
    CHECK(p.windows == 2 && p.d == v.d && p.h == v.h && p.w == v.w);
    CHECK(p.labels != NULL && p.probabilities != NULL && p.n_prob == 3);
    /* The labels are the argmax of the probabilities the same run gives. */
    int argmax_ok = p.labels != NULL && p.probabilities != NULL;
    for (size_t i = 0; argmax_ok && i < n; i++) {
        int best = 0;
        for (int k = 1; k < p.n_prob; k++)
            if (p.probabilities[(size_t)k * n + i] > p.probabilities[(size_t)best * n + i])
                best = k;
        argmax_ok = p.labels[i] == best;
    }
    CHECK(argmax_ok);

    /* A model whose run was cancelled gives what a fresh model gives. */
    segmamba_model *fresh = NULL;
    segmamba_prediction q = {0};
    CHECK(segmamba_open_for_card(MODEL, &fue_card, &opts, &fresh) == SEGMAMBA_OK);
    po.progress = NULL;
    CHECK(fresh && segmamba_predict(fresh, &card, &v, &po, &q) == SEGMAMBA_OK);
    CHECK(p.labels && q.labels && memcmp(p.labels, q.labels, n) == 0);
    segmamba_prediction_free(&q);

    /* An ensemble of the model and a copy of it: the model's labels and
     * probabilities exactly, the windows of both counted in order, and the
     * arenas released (planned again by the next forward). */
    segmamba_model *pair[2] = {m, fresh};
    calls both = {.in_order = 1};
    po.progress = on_progress;
    po.progress_user = &both;
    CHECK(segmamba_predict_ensemble(pair, 2, &card, &v, &po, &q) == SEGMAMBA_OK);
    CHECK(both.n == 4 && both.in_order && both.total == 4 && q.windows == 4);
    CHECK(p.labels && q.labels && memcmp(p.labels, q.labels, n) == 0);
    CHECK(p.probabilities && q.probabilities &&
          memcmp(p.probabilities, q.probabilities, 3 * n * sizeof(float)) == 0);
    segmamba_get_config(fresh, &cfg);
    CHECK(cfg.arena_bytes == 0);
    segmamba_prediction_free(&q);
    CHECK(segmamba_predict_ensemble(pair, 0, &card, &v, &po, &q) == SEGMAMBA_E_ARG);
    po.progress = NULL;
    segmamba_close(fresh);

    /* Overlap 0.9: windows int(32 * 0.1) = 3 apart along D's 40, so
     * ceil(8 / 3) + 1 = 4 of them; more than 0.95 is refused. */
    po.overlap = 0.9;
    CHECK(segmamba_predict(m, &card, &v, &po, &q) == SEGMAMBA_OK && q.windows == 4);
    segmamba_prediction_free(&q);
    po.overlap = 0.97;
    CHECK(segmamba_predict(m, &card, &v, &po, &q) == SEGMAMBA_E_ARG && q.labels == NULL);

    segmamba_prediction_free(&p);
    CHECK(p.labels == NULL);
    free(v.data);
    segmamba_close(m);
    return check_report("test_pipeline_api");
}
