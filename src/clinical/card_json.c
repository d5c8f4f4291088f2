/* The model card's JSON form (card.h): parsing with every field checked,
 * reading a card file, and writing a card back as JSON. */
#include "clinical/card.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"

/* ---- reading ---------------------------------------------------------- */

static sm_status bad(const char *origin, const char *field, const char *what)
{
    return sm_fail(SEGMAMBA_E_FORMAT, "%s: model card: \"%s\" %s", origin, field, what);
}

static sm_status get_number(const sm_json *v, const char *origin, const char *field, double *out)
{
    if (v->type != SM_JSON_NUMBER || !isfinite(v->number))
        return bad(origin, field, "must be a finite number");
    *out = v->number;
    return SEGMAMBA_OK;
}

/* A name: 1..63 printable ASCII bytes without '/' (names appear in file
 * names and messages). */
static sm_status get_name(const sm_json *v, const char *origin, const char *field, char *out)
{
    if (v->type != SM_JSON_STRING) return bad(origin, field, "must be a string");
    if (v->length == 0 || v->length >= SEGMAMBA_CARD_NAME_MAX)
        return sm_fail(SEGMAMBA_E_FORMAT, "%s: model card: \"%s\" must be 1 to %d characters",
                       origin, field, SEGMAMBA_CARD_NAME_MAX - 1);
    for (size_t i = 0; i < v->length; i++)
        if (v->string[i] < 0x20 || v->string[i] > 0x7e || v->string[i] == '/')
            return sm_fail(SEGMAMBA_E_FORMAT,
                           "%s: model card: \"%s\" value \"%s\" must be printable "
                           "ASCII without '/'",
                           origin, field, v->string);
    memcpy(out, v->string, v->length + 1);
    return SEGMAMBA_OK;
}

static sm_status get_ints(const sm_json *v, const char *origin, const char *field, int n, int lo,
                          int hi, int *out)
{
    char what[128];
    snprintf(what, sizeof what, "must be an array of %d integers in [%d, %d]", n, lo, hi);
    if (v->type != SM_JSON_ARRAY || v->count != (size_t)n) return bad(origin, field, what);
    for (int i = 0; i < n; i++) {
        const sm_json *x = &v->items[i];
        if (x->type != SM_JSON_NUMBER || !x->is_integer || x->integer < lo || x->integer > hi)
            return bad(origin, field, what);
        out[i] = (int)x->integer;
    }
    return SEGMAMBA_OK;
}

static sm_status unique_names(const char *origin, const char *field, int n,
                              char names[][SEGMAMBA_CARD_NAME_MAX])
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(names[i], names[j]) == 0)
                return sm_fail(SEGMAMBA_E_FORMAT, "%s: model card: \"%s\" names \"%s\" twice",
                               origin, field, names[i]);
    return SEGMAMBA_OK;
}

static sm_status parse_channel(const sm_json *v, const char *origin, int idx, segmamba_card *card)
{
    char field[64];
    snprintf(field, sizeof field, "channels[%d]", idx);
    if (v->type != SM_JSON_OBJECT)
        return bad(origin, field, "must be an object {\"name\": ..., \"normalization\": ...}");
    segmamba_norm *n = &card->norm[idx];
    memset(n, 0, sizeof *n);
    int have_name = 0, have[4] = {0};
    const char *keys[4] = {"clip_lo", "clip_hi", "mean", "std"};
    double *vals[4] = {&n->clip_lo, &n->clip_hi, &n->mean, &n->std};
    for (size_t i = 0; i < v->count; i++) {
        const sm_json_member *m = &v->members[i];
        char sub[128];
        snprintf(sub, sizeof sub, "%s.%s", field, m->key);
        if (strcmp(m->key, "name") == 0) {
            SM_TRY(get_name(&m->value, origin, sub, card->channels[idx]));
            have_name = 1;
            continue;
        }
        if (strcmp(m->key, "normalization") == 0) {
            if (m->value.type == SM_JSON_STRING && strcmp(m->value.string, "zscore") == 0)
                n->kind = SEGMAMBA_NORM_ZSCORE;
            else if (m->value.type == SM_JSON_STRING && strcmp(m->value.string, "ct") == 0)
                n->kind = SEGMAMBA_NORM_CT;
            else
                return bad(origin, sub, "must be \"zscore\" or \"ct\"");
            continue;
        }
        int k = 0;
        while (k < 4 && strcmp(m->key, keys[k]) != 0) k++;
        if (k == 4)
            return sm_fail(SEGMAMBA_E_FORMAT,
                           "%s: model card: unknown key \"%s\" (a channel has "
                           "name, normalization, clip_lo, clip_hi, mean, std)",
                           origin, sub);
        SM_TRY(get_number(&m->value, origin, sub, vals[k]));
        have[k] = 1;
    }
    if (!have_name) return bad(origin, field, "needs a \"name\"");
    if (n->kind == SEGMAMBA_NORM_CT) {
        for (int k = 0; k < 4; k++)
            if (!have[k])
                return sm_fail(SEGMAMBA_E_FORMAT,
                               "%s: model card: %s (\"%s\") has normalization "
                               "\"ct\" but no \"%s\"",
                               origin, field, card->channels[idx], keys[k]);
        if (!(n->clip_lo < n->clip_hi)) return bad(origin, field, "needs clip_lo < clip_hi");
        if (!(n->std > 0)) return bad(origin, field, "needs std > 0");
    } else if (have[0] || have[1] || have[2] || have[3]) {
        return bad(origin, field,
                   "has clip_lo/clip_hi/mean/std, which only normalization \"ct\" uses "
                   "(zscore uses each volume's own statistics)");
    }
    return SEGMAMBA_OK;
}

/* One row of "regions": {"name": ..., "channel": c, "label": l}; the
 * ranges are checked once the output and labels are known. */
static sm_status parse_region(const sm_json *v, const char *origin, int idx,
                              segmamba_card_region *r)
{
    char field[64];
    snprintf(field, sizeof field, "regions[%d]", idx);
    if (v->type != SM_JSON_OBJECT)
        return bad(origin, field,
                   "must be an object {\"name\": ..., \"channel\": ..., \"label\": ...}");
    int have[3] = {0};
    for (size_t i = 0; i < v->count; i++) {
        const sm_json_member *m = &v->members[i];
        char sub[128];
        snprintf(sub, sizeof sub, "%s.%s", field, m->key);
        if (strcmp(m->key, "name") == 0) {
            SM_TRY(get_name(&m->value, origin, sub, r->name));
            have[0] = 1;
        } else if (strcmp(m->key, "channel") == 0 || strcmp(m->key, "label") == 0) {
            const int is_channel = m->key[0] == 'c', lo = is_channel ? 0 : 1;
            const sm_json *x = &m->value;
            if (x->type != SM_JSON_NUMBER || !x->is_integer || x->integer < lo || x->integer > 255)
                return bad(origin, sub,
                           is_channel ? "must be an integer from 0 to 255"
                                      : "must be an integer from 1 to 255");
            *(is_channel ? &r->channel : &r->label) = (int)x->integer;
            have[is_channel ? 1 : 2] = 1;
        } else {
            return sm_fail(SEGMAMBA_E_FORMAT,
                           "%s: model card: unknown key \"%s\" (a region has name, channel, "
                           "label)",
                           origin, sub);
        }
    }
    for (int k = 0; k < 3; k++)
        if (!have[k])
            return sm_fail(SEGMAMBA_E_FORMAT, "%s: model card: %s needs a \"%s\"", origin, field,
                           k == 0   ? "name"
                           : k == 1 ? "channel"
                                    : "label");
    return SEGMAMBA_OK;
}

/* The output fields together, once the whole card is read: which keys the
 * output uses, the regions table's channels and labels in range. */
static sm_status check_output(const char *origin, segmamba_card *card, int have_threshold,
                              int have_regions, int sigmoid_labels)
{
    const int last_wins = sigmoid_labels == 1;
    const segmamba_output_kind out = card->output;
    if (out == SEGMAMBA_OUTPUT_ARGMAX && (have_threshold || have_regions))
        return bad(origin, have_threshold ? "threshold" : "regions",
                   "is for output \"regions\" or \"sigmoid\", not \"argmax\"");
    if (sigmoid_labels >= 0 && out != SEGMAMBA_OUTPUT_SIGMOID)
        return bad(origin, "sigmoid_labels", "is for output \"sigmoid\"");
    if (sigmoid_labels >= 0 && have_regions)
        return bad(origin, "sigmoid_labels",
                   "and \"regions\" both say how the label map is made; give one");
    if (out == SEGMAMBA_OUTPUT_REGIONS && !have_regions && card->n_labels != 4)
        return bad(origin, "labels",
                   "must name 4 labels (background, NCR, ED, ET) with output "
                   "\"regions\" and the BraTS regions (or give \"regions\")");
    if (out == SEGMAMBA_OUTPUT_SIGMOID && last_wins) {
        card->n_regions = card->n_labels - 1;
        for (int c = 0; c < card->n_regions; c++) {
            segmamba_card_region *r = &card->regions[c];
            memcpy(r->name, card->labels[c + 1], sizeof r->name);
            r->channel = c;
            r->label = c + 1;
        }
    }
    if (out == SEGMAMBA_OUTPUT_ARGMAX) card->n_regions = 0;
    const int k = segmamba_card_get_output_count(card);
    for (int i = 0; i < card->n_regions; i++) {
        const segmamba_card_region *r = &card->regions[i];
        char field[64];
        snprintf(field, sizeof field, "regions[%d]", i);
        if (r->channel >= k)
            return sm_fail(SEGMAMBA_E_FORMAT,
                           "%s: model card: %s (\"%s\") reads channel %d, but output \"%s\" "
                           "here has channels 0 to %d",
                           origin, field, r->name, r->channel, sm_card_output_name(out), k - 1);
        if (r->label >= card->n_labels)
            return sm_fail(SEGMAMBA_E_FORMAT,
                           "%s: model card: %s (\"%s\") writes label %d, but \"labels\" "
                           "names 0 to %d",
                           origin, field, r->name, r->label, card->n_labels - 1);
        for (int j = 0; j < i; j++) {
            if (strcmp(card->regions[j].name, r->name) == 0)
                return sm_fail(SEGMAMBA_E_FORMAT, "%s: model card: \"regions\" names \"%s\" twice",
                               origin, r->name);
            if (out == SEGMAMBA_OUTPUT_REGIONS && card->regions[j].channel == r->channel)
                return sm_fail(SEGMAMBA_E_FORMAT,
                               "%s: model card: \"regions\" reads channel %d twice (with "
                               "output \"regions\" each row is one model output)",
                               origin, r->channel);
        }
    }
    return SEGMAMBA_OK;
}

/* One code: [value, scheme, meaning], each 1..63 printable ASCII bytes
 * without a backslash (DICOM's value separator). */
static sm_status parse_code(const sm_json *v, const char *origin, const char *label,
                            const char *which, segmamba_code *code)
{
    char field[160];
    snprintf(field, sizeof field, "dicom_codes\": \"%s\": \"%s", label, which);
    if (v->type != SM_JSON_ARRAY || v->count != 3)
        return bad(origin, field, "must be [code value, coding scheme, code meaning]");
    char *dst[3] = {code->value, code->scheme, code->meaning};
    for (int i = 0; i < 3; i++) {
        const sm_json *x = &v->items[i];
        if (x->type != SM_JSON_STRING || x->length == 0 || x->length >= SEGMAMBA_CARD_NAME_MAX)
            return bad(origin, field, "must hold three strings of 1 to 63 characters");
        for (size_t c = 0; c < x->length; c++)
            if (x->string[c] < 0x20 || x->string[c] > 0x7e || x->string[c] == '\\')
                return bad(origin, field, "must be printable ASCII without '\\'");
        memcpy(dst[i], x->string, x->length + 1);
    }
    return SEGMAMBA_OK;
}

/* "dicom_codes": {"LABEL": {"category": [...], "type": [...]}, ...}, after
 * "labels" (whichever came first in the text). */
static sm_status parse_codes(const sm_json *v, const char *origin, segmamba_card *card)
{
    if (v->type != SM_JSON_OBJECT)
        return bad(origin, "dicom_codes", "must be an object keyed by label name");
    memset(card->codes, 0, sizeof card->codes);
    for (size_t i = 0; i < v->count; i++) {
        const sm_json_member *m = &v->members[i];
        int l = 0;
        while (l < card->n_labels && strcmp(card->labels[l], m->key) != 0) l++;
        if (l == card->n_labels)
            return sm_fail(SEGMAMBA_E_FORMAT,
                           "%s: model card: \"dicom_codes\" codes \"%s\", which is not one of "
                           "\"labels\"",
                           origin, m->key);
        if (m->value.type != SM_JSON_OBJECT)
            return bad(origin, "dicom_codes",
                       "values must be {\"category\": [...], \"type\": [...]}");
        int have[2] = {0, 0};
        for (size_t j = 0; j < m->value.count; j++) {
            const sm_json_member *c = &m->value.members[j];
            const int is_type = strcmp(c->key, "type") == 0;
            if (!is_type && strcmp(c->key, "category") != 0)
                return sm_fail(SEGMAMBA_E_FORMAT,
                               "%s: model card: \"dicom_codes\": \"%s\": unknown key \"%s\" "
                               "(known: category, type)",
                               origin, m->key, c->key);
            SM_TRY(parse_code(&c->value, origin, m->key, c->key,
                              is_type ? &card->codes[l].type : &card->codes[l].category));
            have[is_type] = 1;
        }
        if (!have[0] || !have[1])
            return sm_fail(SEGMAMBA_E_FORMAT,
                           "%s: model card: \"dicom_codes\": \"%s\" needs both a category and "
                           "a type",
                           origin, m->key);
    }
    return SEGMAMBA_OK;
}

static sm_status parse_card(const sm_json *root, const char *origin, segmamba_card *card)
{
    const sm_json *codes = NULL;
    if (root->type != SM_JSON_OBJECT)
        return sm_fail(SEGMAMBA_E_FORMAT, "%s: model card: not a JSON object", origin);
    int have_threshold = 0, have_regions = 0, sigmoid_labels = -1; /* -1: not given */
    for (size_t i = 0; i < root->count; i++) {
        const sm_json_member *m = &root->members[i];
        const sm_json *v = &m->value;
        if (strcmp(m->key, "channels") == 0) {
            if (v->type != SM_JSON_ARRAY || v->count == 0 || v->count > SEGMAMBA_CARD_MAX_CHANNELS)
                return sm_fail(SEGMAMBA_E_FORMAT,
                               "%s: model card: \"channels\" must be an array of "
                               "1 to %d objects",
                               origin, SEGMAMBA_CARD_MAX_CHANNELS);
            card->n_channels = (int)v->count;
            for (size_t c = 0; c < v->count; c++)
                SM_TRY(parse_channel(&v->items[c], origin, (int)c, card));
            SM_TRY(unique_names(origin, "channels", card->n_channels, card->channels));
        } else if (strcmp(m->key, "spacing") == 0) {
            if (v->type == SM_JSON_STRING && strcmp(v->string, "input") == 0) {
                for (int a = 0; a < 3; a++) card->spacing[a] = 0.0;
                continue;
            }
            if (v->type != SM_JSON_ARRAY || v->count != 3)
                return bad(origin, "spacing", "must be [z, y, x] in mm, or \"input\"");
            for (int a = 0; a < 3; a++) {
                SM_TRY(get_number(&v->items[a], origin, "spacing", &card->spacing[a]));
                if (!(card->spacing[a] > 0 && card->spacing[a] < 1e4))
                    return bad(origin, "spacing", "values must be positive mm (and below 1e4)");
            }
        } else if (strcmp(m->key, "patch") == 0) {
            SM_TRY(get_ints(v, origin, "patch", 3, 16, 4096, card->patch));
            for (int a = 0; a < 3; a++)
                if (card->patch[a] % 16)
                    return bad(origin, "patch",
                               "sides must be multiples of 16 (the network halves "
                               "them four times)");
        } else if (strcmp(m->key, "nslices") == 0) {
            SM_TRY(get_ints(v, origin, "nslices", SEGMAMBA_STAGES, 1, 1 << 30, card->nslices));
        } else if (strcmp(m->key, "fue") == 0) {
            if (v->type != SM_JSON_BOOL) return bad(origin, "fue", "must be true or false");
            card->fue = v->boolean;
        } else if (strcmp(m->key, "labels") == 0) {
            if (v->type != SM_JSON_ARRAY || v->count < 2 || v->count > SEGMAMBA_CARD_MAX_LABELS)
                return sm_fail(SEGMAMBA_E_FORMAT,
                               "%s: model card: \"labels\" must be an array of 2 "
                               "to %d names",
                               origin, SEGMAMBA_CARD_MAX_LABELS);
            card->n_labels = (int)v->count;
            for (size_t l = 0; l < v->count; l++)
                SM_TRY(get_name(&v->items[l], origin, "labels", card->labels[l]));
            SM_TRY(unique_names(origin, "labels", card->n_labels, card->labels));
        } else if (strcmp(m->key, "output") == 0) {
            if (v->type == SM_JSON_STRING && strcmp(v->string, "argmax") == 0)
                card->output = SEGMAMBA_OUTPUT_ARGMAX;
            else if (v->type == SM_JSON_STRING && strcmp(v->string, "regions") == 0)
                card->output = SEGMAMBA_OUTPUT_REGIONS;
            else if (v->type == SM_JSON_STRING && strcmp(v->string, "sigmoid") == 0)
                card->output = SEGMAMBA_OUTPUT_SIGMOID;
            else
                return bad(origin, "output", "must be \"argmax\", \"regions\" or \"sigmoid\"");
        } else if (strcmp(m->key, "threshold") == 0) {
            SM_TRY(get_number(v, origin, "threshold", &card->threshold));
            if (!(card->threshold > 0.0 && card->threshold < 1.0))
                return bad(origin, "threshold", "must be between 0 and 1 (exclusive)");
            have_threshold = 1;
        } else if (strcmp(m->key, "overlap") == 0) {
            double o = 0.0;
            SM_TRY(get_number(v, origin, "overlap", &o));
            if (!(o >= 0.0 && o <= 0.95)) return bad(origin, "overlap", "must be from 0 to 0.95");
            card->overlap = o > 0.0 ? o : -1.0; /* segmamba_predict_options' "none" */
        } else if (strcmp(m->key, "regions") == 0) {
            if (v->type != SM_JSON_ARRAY || v->count == 0 || v->count > SEGMAMBA_CARD_MAX_REGIONS)
                return sm_fail(SEGMAMBA_E_FORMAT,
                               "%s: model card: \"regions\" must be an array of 1 to %d "
                               "objects",
                               origin, SEGMAMBA_CARD_MAX_REGIONS);
            card->n_regions = (int)v->count;
            for (size_t r = 0; r < v->count; r++)
                SM_TRY(parse_region(&v->items[r], origin, (int)r, &card->regions[r]));
            have_regions = 1;
        } else if (strcmp(m->key, "dicom_codes") == 0) {
            codes = v;
        } else if (strcmp(m->key, "sigmoid_labels") == 0) {
            if (v->type == SM_JSON_STRING && strcmp(v->string, "masks") == 0)
                sigmoid_labels = 0;
            else if (v->type == SM_JSON_STRING && strcmp(v->string, "last_wins") == 0)
                sigmoid_labels = 1;
            else
                return bad(origin, "sigmoid_labels", "must be \"masks\" or \"last_wins\"");
        } else {
            return sm_fail(SEGMAMBA_E_FORMAT,
                           "%s: model card: unknown key \"%s\" (known: channels, "
                           "spacing, patch, nslices, fue, labels, output, threshold, "
                           "regions, sigmoid_labels, overlap, dicom_codes)",
                           origin, m->key);
        }
    }
    if (codes) SM_TRY(parse_codes(codes, origin, card));
    return check_output(origin, card, have_threshold, have_regions, sigmoid_labels);
}

sm_status segmamba_card_parse(const char *text, size_t len, const char *origin, segmamba_card *card)
{
    segmamba_card_init_default(card);
    sm_json root;
    SM_TRY(sm_json_parse(text, len, origin, &root));
    sm_status st = parse_card(&root, origin, card);
    sm_json_free(&root);
    if (st == SEGMAMBA_OK) snprintf(card->origin, sizeof card->origin, "%.500s", origin);
    return st;
}

sm_status segmamba_card_load(const char *path, segmamba_card *card)
{
    unsigned char *text;
    size_t size;
    SM_TRY(segmamba_file_read(path, &text, &size));
    sm_status st = segmamba_card_parse((const char *)text, size, path, card);
    free(text);
    return st;
}

/* ---- writing ---------------------------------------------------------- */

static void out_name_list(sm_json_out *o, int n, char names[][SEGMAMBA_CARD_NAME_MAX])
{
    sm_json_out_printf(o, "[");
    for (int i = 0; i < n; i++) {
        if (i) sm_json_out_printf(o, ", ");
        sm_json_out_string(o, names[i], strlen(names[i]));
    }
    sm_json_out_printf(o, "]");
}

sm_status segmamba_card_format_json(const segmamba_card *card, char **text)
{
    sm_json_out o = {0};
    sm_json_out_printf(&o, "{\"channels\": [");
    for (int c = 0; c < card->n_channels; c++) {
        const segmamba_norm *n = &card->norm[c];
        sm_json_out_printf(&o, "%s{\"name\": ", c ? ", " : "");
        sm_json_out_string(&o, card->channels[c], strlen(card->channels[c]));
        if (n->kind == SEGMAMBA_NORM_CT)
            sm_json_out_printf(&o,
                               ", \"normalization\": \"ct\", \"clip_lo\": %.17g, \"clip_hi\": "
                               "%.17g, \"mean\": %.17g, \"std\": %.17g}",
                               n->clip_lo, n->clip_hi, n->mean, n->std);
        else
            sm_json_out_printf(&o, ", \"normalization\": \"zscore\"}");
    }
    if (card->spacing[0] == 0.0 && card->spacing[1] == 0.0 && card->spacing[2] == 0.0)
        sm_json_out_printf(&o, "], \"spacing\": \"input\"");
    else
        sm_json_out_printf(&o, "], \"spacing\": [%.17g, %.17g, %.17g]", card->spacing[0],
                           card->spacing[1], card->spacing[2]);
    sm_json_out_printf(&o,
                       ", \"patch\": [%d, %d, %d], "
                       "\"nslices\": [%d, %d, %d, %d], \"fue\": %s, \"labels\": ",
                       card->patch[0], card->patch[1], card->patch[2], card->nslices[0],
                       card->nslices[1], card->nslices[2], card->nslices[3],
                       card->fue ? "true" : "false");
    out_name_list(&o, card->n_labels, (char(*)[SEGMAMBA_CARD_NAME_MAX])card->labels);
    sm_json_out_printf(&o, ", \"output\": \"%s\"", sm_card_output_name(card->output));
    if (card->output != SEGMAMBA_OUTPUT_ARGMAX)
        sm_json_out_printf(&o, ", \"threshold\": %.17g", card->threshold);
    if (card->overlap != 0.0)
        sm_json_out_printf(&o, ", \"overlap\": %.17g", card->overlap < 0.0 ? 0.0 : card->overlap);
    if (card->output != SEGMAMBA_OUTPUT_ARGMAX && card->n_regions > 0) {
        sm_json_out_printf(&o, ", \"regions\": [");
        for (int r = 0; r < card->n_regions; r++) {
            const segmamba_card_region *g = &card->regions[r];
            sm_json_out_printf(&o, "%s{\"name\": ", r ? ", " : "");
            sm_json_out_string(&o, g->name, strlen(g->name));
            sm_json_out_printf(&o, ", \"channel\": %d, \"label\": %d}", g->channel, g->label);
        }
        sm_json_out_printf(&o, "]");
    }
    int coded = 0;
    for (int l = 0; l < card->n_labels; l++) {
        const segmamba_card_code *c = &card->codes[l];
        if (!c->category.value[0]) continue;
        sm_json_out_printf(&o, "%s", coded++ ? ", " : ", \"dicom_codes\": {");
        sm_json_out_string(&o, card->labels[l], strlen(card->labels[l]));
        const segmamba_code *pair[2] = {&c->category, &c->type};
        for (int k = 0; k < 2; k++) {
            sm_json_out_printf(&o, k ? "], \"type\": [" : ": {\"category\": [");
            sm_json_out_string(&o, pair[k]->value, strlen(pair[k]->value));
            sm_json_out_printf(&o, ", ");
            sm_json_out_string(&o, pair[k]->scheme, strlen(pair[k]->scheme));
            sm_json_out_printf(&o, ", ");
            sm_json_out_string(&o, pair[k]->meaning, strlen(pair[k]->meaning));
        }
        sm_json_out_printf(&o, "]}");
    }
    if (coded) sm_json_out_printf(&o, "}");
    sm_json_out_printf(&o, "}");
    if (o.failed) {
        sm_json_out_free(&o);
        return sm_fail(SEGMAMBA_E_NOMEM, "out of memory writing the model card");
    }
    *text = o.text;
    return SEGMAMBA_OK;
}
