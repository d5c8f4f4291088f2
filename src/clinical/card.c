/* The model card (card.h): the defaults, what a card implies (its outputs,
 * regions table, masks), where a checkpoint's card is found, and opening or
 * converting a model with its card. The JSON form is card_json.c's. */
#include "clinical/card.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/checkpoint_meta.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "io/weights.h"

static const char *const brats_channels[] = {"t2w", "t2f", "t1n", "t1c"};
static const char *const brats_labels[] = {"background", "NCR", "ED", "ET"};
static const int default_nslices[SEGMAMBA_STAGES] = {64, 32, 16, 8};
/* BraTS regions, model outputs TC, WT, ET: ET -> 3, else TC -> 1, else WT -> 2. */
static const segmamba_card_region brats_regions[3] = {{"WT", 1, 2}, {"TC", 0, 1}, {"ET", 2, 3}};

void segmamba_card_init_default(segmamba_card *card)
{
    memset(card, 0, sizeof *card);
    card->n_channels = 4;
    for (int c = 0; c < 4; c++) {
        snprintf(card->channels[c], SEGMAMBA_CARD_NAME_MAX, "%s", brats_channels[c]);
        card->norm[c].kind = SEGMAMBA_NORM_ZSCORE;
    }
    for (int a = 0; a < 3; a++) {
        card->spacing[a] = 1.0;
        card->patch[a] = 128;
    }
    memcpy(card->nslices, default_nslices, sizeof card->nslices);
    card->fue = 0;
    card->n_labels = 4;
    for (int l = 0; l < 4; l++)
        snprintf(card->labels[l], SEGMAMBA_CARD_NAME_MAX, "%s", brats_labels[l]);
    card->output = SEGMAMBA_OUTPUT_ARGMAX;
    card->threshold = 0.5;
    snprintf(card->origin, sizeof card->origin, "defaults (official BraTS 2023)");
}

void segmamba_card_init_generic(const segmamba_config *model, segmamba_card *card)
{
    segmamba_card_init_default(card);
    const int in = model->in_chans < 1                            ? 1
                   : model->in_chans > SEGMAMBA_CARD_MAX_CHANNELS ? SEGMAMBA_CARD_MAX_CHANNELS
                                                                  : model->in_chans;
    card->n_channels = in;
    for (int c = 0; c < in; c++) {
        snprintf(card->channels[c], SEGMAMBA_CARD_NAME_MAX, "ch%d", c);
        card->norm[c].kind = SEGMAMBA_NORM_ZSCORE;
    }
    for (int a = 0; a < 3; a++) card->spacing[a] = 0.0; /* the input's own */
    memcpy(card->nslices, model->nslices, sizeof card->nslices);
    card->fue = model->fue;
    const int out = model->out_chans;
    card->output = out == 1 ? SEGMAMBA_OUTPUT_SIGMOID : SEGMAMBA_OUTPUT_ARGMAX;
    card->n_labels = out == 1 ? 2 : out > SEGMAMBA_CARD_MAX_LABELS ? SEGMAMBA_CARD_MAX_LABELS : out;
    for (int l = 0; l < card->n_labels; l++)
        snprintf(card->labels[l], SEGMAMBA_CARD_NAME_MAX, "%d", l);
    snprintf(card->origin, sizeof card->origin, "generic card (%d channels, %d outputs)", in, out);
}

int segmamba_card_get_regions(const segmamba_card *card, segmamba_card_region *out)
{
    if (card->output == SEGMAMBA_OUTPUT_ARGMAX) return 0;
    if (card->output == SEGMAMBA_OUTPUT_REGIONS && card->n_regions == 0) {
        memcpy(out, brats_regions, sizeof brats_regions);
        return 3;
    }
    const int n =
        card->n_regions < SEGMAMBA_CARD_MAX_REGIONS ? card->n_regions : SEGMAMBA_CARD_MAX_REGIONS;
    memcpy(out, card->regions, (size_t)n * sizeof *out);
    return n;
}

int segmamba_card_get_output_count(const segmamba_card *card)
{
    if (card->output == SEGMAMBA_OUTPUT_REGIONS) return card->n_regions ? card->n_regions : 3;
    if (card->output == SEGMAMBA_OUTPUT_SIGMOID) return card->n_labels - 1;
    return card->n_labels;
}

int segmamba_card_get_writes_masks(const segmamba_card *card)
{
    return card->output == SEGMAMBA_OUTPUT_SIGMOID && card->n_regions == 0 && card->n_labels > 2;
}

const char *sm_card_output_name(segmamba_output_kind k)
{
    return k == SEGMAMBA_OUTPUT_REGIONS   ? "regions"
           : k == SEGMAMBA_OUTPUT_SIGMOID ? "sigmoid"
                                          : "argmax";
}

/* ---- finding a model's card ------------------------------------------- */

/* gen_case.py's __metadata__["config"]: nslices and fue when present. */
static sm_status apply_config_meta(const char *cfgtext, const char *path, segmamba_card *card)
{
    sm_json cfg;
    char origin[600];
    snprintf(origin, sizeof origin, "%s: __metadata__[\"config\"]", path);
    SM_TRY(sm_json_parse(cfgtext, strlen(cfgtext), origin, &cfg));
    int found = 0;
    const sm_status st = sm_meta_mamba_keys(&cfg, origin, card->nslices, &card->fue, &found);
    sm_json_free(&cfg);
    if (st == SEGMAMBA_OK && found)
        snprintf(card->origin, sizeof card->origin,
                 "defaults with nslices/fue from %.400s "
                 "__metadata__[\"config\"]",
                 path);
    return st;
}

/* "dir/model.pt" -> "dir/model.card.json" (the extension after the last '.'
 * of the file name replaced; appended when there is none). */
static int side_path(const char *model, char *out, size_t cap)
{
    const char *slash = strrchr(model, '/');
    const char *dot = strrchr(model, '.');
    size_t stem = dot && (!slash || dot > slash + 1) ? (size_t)(dot - model) : strlen(model);
    return snprintf(out, cap, "%.*s.card.json", (int)stem, model) < (int)cap;
}

/* The card of a checkpoint whose metadata w holds (order in card.h). */
static sm_status card_for_weights(const char *model_path, const sm_weights *w, segmamba_card *card,
                                  int *found)
{
    segmamba_card_init_default(card);
    *found = 1;
    const char *text = sm_weights_meta(w, "card");
    if (text) {
        char origin[600];
        snprintf(origin, sizeof origin, "%s: __metadata__[\"card\"]", model_path);
        return segmamba_card_parse(text, strlen(text), origin, card);
    }
    char side[4096];
    FILE *f = side_path(model_path, side, sizeof side) ? fopen(side, "rb") : NULL;
    if (f) {
        fclose(f);
        return segmamba_card_load(side, card);
    }
    *found = 0;
    const char *cfg = sm_weights_meta(w, "config");
    return cfg ? apply_config_meta(cfg, model_path, card) : SEGMAMBA_OK;
}

static sm_status find_card(const char *model_path, segmamba_card *card, int *found)
{
    segmamba_card_init_default(card);
    sm_weights meta = {0};
    sm_status st = sm_load_metadata(model_path, &meta);
    if (st == SEGMAMBA_OK) st = card_for_weights(model_path, &meta, card, found);
    sm_weights_free(&meta);
    return st;
}

sm_status segmamba_card_find(const char *model_path, segmamba_card *card)
{
    int found;
    return find_card(model_path, card, &found);
}

/* The card for an open model m loaded from model_path: as
 * segmamba_card_find, but the generic card where the checkpoint has
 * none and m does not take 4 input channels. */
static sm_status card_for_open_model(const char *model_path, const segmamba_model *m,
                                     segmamba_card *card, int *generic)
{
    int found = 0;
    SM_TRY(find_card(model_path, card, &found));
    segmamba_config c;
    segmamba_get_config(m, &c);
    if (!found && c.in_chans != 4) {
        segmamba_card_init_generic(&c, card);
        if (generic) *generic = 1;
    }
    return SEGMAMBA_OK;
}

sm_status segmamba_card_check_model(const segmamba_card *card, const segmamba_model *m)
{
    segmamba_config c;
    segmamba_get_config(m, &c);
    if (c.in_chans != card->n_channels)
        return sm_fail(SEGMAMBA_E_MODEL,
                       "model card (%s) names %d input channels but the model "
                       "takes %d",
                       card->origin, card->n_channels, c.in_chans);
    const int want = segmamba_card_get_output_count(card);
    if (c.out_chans != want)
        return sm_fail(SEGMAMBA_E_MODEL,
                       "model card (%s): output \"%s\" with %d labels needs %d "
                       "output channels but the model has %d",
                       card->origin, sm_card_output_name(card->output), card->n_labels, want,
                       c.out_chans);
    sm_status st = segmamba_check_shape(m, card->patch[0], card->patch[1], card->patch[2]);
    if (st != SEGMAMBA_OK)
        return sm_fail_wrap(st, "model card (%s): patch %dx%dx%d with nslices %d,%d,%d,%d",
                            card->origin, card->patch[0], card->patch[1], card->patch[2],
                            card->nslices[0], card->nslices[1], card->nslices[2], card->nslices[3]);
    return SEGMAMBA_OK;
}

sm_status segmamba_open_for_card(const char *model_path, const segmamba_card *card,
                                 const segmamba_options *opts, segmamba_model **model)
{
    if (model) *model = NULL;
    if (!model_path || !card || !model)
        return sm_fail(SEGMAMBA_E_ARG,
                       "segmamba_open_for_card: model path, card and model are required");
    segmamba_options o = {0};
    if (opts) o = *opts;
    /* The card's nslices and FUE where the caller left the defaults. */
    int custom = 0;
    for (int i = 0; i < SEGMAMBA_STAGES; i++) custom |= o.nslices[i] != 0;
    if (!custom) memcpy(o.nslices, card->nslices, sizeof o.nslices);
    if (o.fue == SEGMAMBA_FUE_CARD) o.fue = card->fue ? SEGMAMBA_FUE_ON : SEGMAMBA_FUE_OFF;
    return segmamba_open(model_path, &o, model);
}

sm_status segmamba_open_with_card(const char *model_path, const char *card_path,
                                  const segmamba_options *opts, segmamba_model **model,
                                  segmamba_card *card, int *generic)
{
    if (generic) *generic = 0;
    if (model) *model = NULL;
    if (!model_path || !model || !card)
        return sm_fail(SEGMAMBA_E_ARG,
                       "segmamba_open_with_card: model path, model and card are required");
    sm_status st =
        card_path ? segmamba_card_load(card_path, card) : segmamba_card_find(model_path, card);
    if (st == SEGMAMBA_OK) st = segmamba_open_for_card(model_path, card, opts, model);
    if (st == SEGMAMBA_OK && !card_path)
        st = card_for_open_model(model_path, *model, card, generic);
    if (st != SEGMAMBA_OK) {
        segmamba_close(*model);
        *model = NULL;
    }
    return st;
}

sm_status segmamba_convert(const char *src, const segmamba_card *card, const char *dst)
{
    if (!src || !card || !dst)
        return sm_fail(SEGMAMBA_E_ARG,
                       "segmamba_convert: source, card and destination are required");
    if (strcmp(src, dst) == 0 || segmamba_file_is_same(src, dst))
        return sm_fail(SEGMAMBA_E_ARG, "%s: refusing to write a checkpoint over itself", dst);
    /* The card must fit the network before it is stored with it. */
    segmamba_model *m = NULL;
    sm_status st = segmamba_open_for_card(src, card, NULL, &m);
    if (st == SEGMAMBA_OK) st = segmamba_card_check_model(card, m);
    segmamba_close(m);
    if (st != SEGMAMBA_OK) return st;
    char *json = NULL;
    sm_weights w = {0};
    st = segmamba_card_format_json(card, &json);
    if (st == SEGMAMBA_OK) st = sm_load_weights(src, &w);
    if (st == SEGMAMBA_OK) st = sm_weights_set_meta(&w, "card", json);
    if (st == SEGMAMBA_OK) st = sm_save_safetensors(dst, &w);
    sm_weights_free(&w);
    free(json);
    return st;
}
