/* The model card (src/clinical/card.c, card_json.c): the default card, its
 * JSON parsed and written back, the output heads (sigmoid, regions,
 * threshold, overlap, the input's spacing), refusals with their messages,
 * and where a card is found (a safetensors file's metadata, a side file,
 * gen_case's config in the tiny fixture). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clinical/card.h"
#include "check.h"
#include "io/safetensors.h"
#include "io/weights.h"

#define TINY_MODEL "tests/fixtures/tiny/model.safetensors"

/* The output heads: sigmoid, the regions table, threshold, overlap and
 * the input's own spacing. */
static void test_card_heads(void)
{
    segmamba_card c, d;
    segmamba_card_region t[SEGMAMBA_CARD_MAX_REGIONS];
    /* Existing cards: the BraTS table, threshold 0.5, official overlap. */
    const char *regions = "{\"output\": \"regions\"}";
    CHECK(segmamba_card_parse(regions, strlen(regions), "t", &c) == SEGMAMBA_OK);
    CHECK(c.threshold == 0.5 && c.overlap == 0.0 && c.n_regions == 0);
    CHECK(segmamba_card_get_output_count(&c) == 3 && segmamba_card_get_regions(&c, t) == 3);
    CHECK(strcmp(t[0].name, "WT") == 0 && t[0].channel == 1 && t[0].label == 2);
    CHECK(strcmp(t[2].name, "ET") == 0 && t[2].channel == 2 && t[2].label == 3);
    segmamba_card_init_default(&c);
    CHECK(segmamba_card_get_output_count(&c) == 4 && segmamba_card_get_regions(&c, t) == 0);

    const char *sig =
        "{\"channels\": [{\"name\": \"ct\"}], \"spacing\": \"input\", \"patch\": [16, 32, 48],"
        " \"labels\": [\"bg\", \"liver\", \"tumour\"], \"output\": \"sigmoid\","
        " \"threshold\": 0.3, \"overlap\": 0.25}";
    CHECK(segmamba_card_parse(sig, strlen(sig), "t", &c) == SEGMAMBA_OK);
    CHECK(c.output == SEGMAMBA_OUTPUT_SIGMOID && c.threshold == 0.3 && c.overlap == 0.25);
    CHECK(c.spacing[0] == 0 && c.spacing[2] == 0 && c.patch[0] == 16 && c.patch[2] == 48);
    CHECK(segmamba_card_get_output_count(&c) == 2 && segmamba_card_get_writes_masks(&c));
    char *json = NULL;
    CHECK(segmamba_card_format_json(&c, &json) == SEGMAMBA_OK);
    CHECK(segmamba_card_parse(json, strlen(json), "t", &d) == SEGMAMBA_OK);
    CHECK(d.output == SEGMAMBA_OUTPUT_SIGMOID && d.threshold == 0.3 && d.overlap == 0.25 &&
          d.spacing[1] == 0 && d.n_regions == 0);
    free(json);

    const char *last = "{\"labels\": [\"bg\", \"a\", \"b\"], \"output\": \"sigmoid\","
                       " \"sigmoid_labels\": \"last_wins\", \"overlap\": 0}";
    CHECK(segmamba_card_parse(last, strlen(last), "t", &c) == SEGMAMBA_OK);
    CHECK(c.n_regions == 2 && c.regions[1].channel == 1 && c.regions[1].label == 2 &&
          strcmp(c.regions[1].name, "b") == 0 && !segmamba_card_get_writes_masks(&c));
    CHECK(c.overlap < 0); /* none */

    const char *table =
        "{\"labels\": [\"bg\", \"x\", \"y\", \"z\", \"w\"], \"output\": \"regions\","
        " \"regions\": [{\"name\": \"B\", \"channel\": 1, \"label\": 4},"
        " {\"name\": \"A\", \"channel\": 0, \"label\": 2}]}";
    CHECK(segmamba_card_parse(table, strlen(table), "t", &c) == SEGMAMBA_OK);
    CHECK(segmamba_card_get_output_count(&c) == 2 && segmamba_card_get_regions(&c, t) == 2 &&
          t[0].label == 4 && t[1].channel == 0);
    CHECK(segmamba_card_format_json(&c, &json) == SEGMAMBA_OK);
    CHECK(segmamba_card_parse(json, strlen(json), "t", &d) == SEGMAMBA_OK);
    CHECK(d.n_regions == 2 && memcmp(d.regions, c.regions, 2 * sizeof c.regions[0]) == 0);
    free(json);

    /* Refusals, each with the word its message must hold. */
    static const char *const bad[][2] = {
        {"{\"output\": \"sigmoid\", \"threshold\": 0}", "between 0 and 1"},
        {"{\"output\": \"sigmoid\", \"threshold\": 1}", "between 0 and 1"},
        {"{\"output\": \"regions\", \"threshold\": \"high\"}", "finite number"},
        {"{\"threshold\": 0.5}", "not \"argmax\""},
        {"{\"regions\": [{\"name\": \"a\", \"channel\": 0, \"label\": 1}]}", "not \"argmax\""},
        {"{\"output\": \"regions\", \"regions\": []}", "array of 1 to"},
        {"{\"output\": \"regions\", \"regions\": [{\"name\": \"a\", \"channel\": 0}]}",
         "needs a \"label\""},
        {"{\"output\": \"regions\", \"regions\": [{\"name\": \"a\", \"channel\": 0, \"label\": 1,"
         " \"colour\": 3}]}",
         "unknown key"},
        {"{\"output\": \"regions\", \"regions\": [{\"name\": \"a\", \"channel\": 0, \"label\": "
         "0}]}",
         "from 1 to 255"},
        {"{\"output\": \"regions\", \"regions\": [{\"name\": \"a\", \"channel\": 1, \"label\": "
         "1}]}",
         "reads channel 1"},
        {"{\"output\": \"regions\", \"regions\": [{\"name\": \"a\", \"channel\": 0, \"label\": "
         "9}]}",
         "writes label 9"},
        {"{\"output\": \"regions\", \"regions\": [{\"name\": \"a\", \"channel\": 0, \"label\": 1},"
         " {\"name\": \"a\", \"channel\": 1, \"label\": 2}]}",
         "twice"},
        {"{\"output\": \"regions\", \"regions\": [{\"name\": \"a\", \"channel\": 0, \"label\": 1},"
         " {\"name\": \"b\", \"channel\": 0, \"label\": 2}]}",
         "channel 0 twice"},
        {"{\"output\": \"argmax\", \"sigmoid_labels\": \"last_wins\"}", "for output \"sigmoid\""},
        {"{\"output\": \"sigmoid\", \"sigmoid_labels\": \"first\"}", "\"masks\" or"},
        {"{\"output\": \"sigmoid\", \"sigmoid_labels\": \"last_wins\", \"regions\":"
         " [{\"name\": \"a\", \"channel\": 0, \"label\": 1}]}",
         "give one"},
        {"{\"overlap\": 0.96}", "0 to 0.95"},
        {"{\"overlap\": -0.1}", "0 to 0.95"},
        {"{\"spacing\": \"native\"}", "\"input\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const sm_status st = segmamba_card_parse(bad[i][0], strlen(bad[i][0]), "t", &c);
        CHECK_MSG(st == SEGMAMBA_E_FORMAT, "accepted or wrong status %d: %s", (int)st, bad[i][0]);
        CHECK_MSG(strstr(segmamba_get_last_error(), bad[i][1]) != NULL,
                  "%s: message '%s' lacks '%s'", bad[i][0], segmamba_get_last_error(), bad[i][1]);
    }
}

static void test_card(void)
{
    segmamba_card c, d;
    segmamba_card_init_default(&c);
    CHECK(c.n_channels == 4 && strcmp(c.channels[0], "t2w") == 0 &&
          strcmp(c.channels[3], "t1c") == 0);
    CHECK(c.patch[0] == 128 && c.nslices[0] == 64 && c.nslices[3] == 8 && !c.fue);
    CHECK(c.n_labels == 4 && strcmp(c.labels[3], "ET") == 0 && c.output == SEGMAMBA_OUTPUT_ARGMAX);

    const char *text =
        "{\"channels\": [{\"name\": \"ct\", \"normalization\": \"ct\", \"clip_lo\": -1000,"
        " \"clip_hi\": 500.5, \"mean\": 80, \"std\": 120}, {\"name\": \"pet\"}],"
        " \"spacing\": [0.5, 0.704, 0.704], \"patch\": [32, 48, 64],"
        " \"nslices\": [16, 8, 4, 2], \"fue\": true, \"labels\": [\"bg\", \"airway\"],"
        " \"output\": \"argmax\"}";
    CHECK(segmamba_card_parse(text, strlen(text), "t", &c) == SEGMAMBA_OK);
    CHECK(c.n_channels == 2 && c.norm[0].kind == SEGMAMBA_NORM_CT && c.norm[0].clip_hi == 500.5);
    CHECK(c.norm[1].kind == SEGMAMBA_NORM_ZSCORE && c.spacing[1] == 0.704 && c.patch[2] == 64 &&
          c.fue);
    char *json = NULL;
    CHECK(segmamba_card_format_json(&c, &json) == SEGMAMBA_OK);
    CHECK(segmamba_card_parse(json, strlen(json), "t", &d) == SEGMAMBA_OK);
    CHECK(memcmp(c.norm, d.norm, sizeof c.norm) == 0 &&
          memcmp(c.spacing, d.spacing, sizeof c.spacing) == 0);
    CHECK(memcmp(c.channels, d.channels, sizeof c.channels) == 0 && d.n_labels == 2 && d.fue);
    free(json);

    const char *bad[] = {
        "[]",
        "{\"chanels\": []}",
        "{\"channels\": []}",
        "{\"channels\": [{\"name\": \"a\", \"normalization\": \"minmax\"}]}",
        "{\"channels\": [{\"name\": \"a\", \"normalization\": \"ct\", \"clip_lo\": 0, \"clip_hi\": "
        "1, \"mean\": 0}]}",
        "{\"channels\": [{\"name\": \"a\", \"normalization\": \"ct\", \"clip_lo\": 2, \"clip_hi\": "
        "1, \"mean\": 0, \"std\": 1}]}",
        "{\"channels\": [{\"name\": \"a\", \"mean\": 3}]}",
        "{\"channels\": [{\"name\": \"a\"}, {\"name\": \"a\"}]}",
        "{\"channels\": [{\"name\": \"a/b\"}]}",
        "{\"patch\": [128, 128, 120]}",
        "{\"patch\": [128, 128]}",
        "{\"patch\": [128.5, 128, 128]}",
        "{\"spacing\": [1, 0, 1]}",
        "{\"nslices\": [64, 32, 16, 0]}",
        "{\"fue\": 1}",
        "{\"labels\": [\"bg\"]}",
        "{\"output\": \"softmax\"}",
        "{\"labels\": [\"a\", \"b\", \"c\"], \"output\": \"regions\"}",
        "{\"patch\": [128, 128, 128]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const sm_status st = segmamba_card_parse(bad[i], strlen(bad[i]), "t", &c);
        CHECK_MSG(st == SEGMAMBA_E_FORMAT, "accepted or wrong status %d: %s", (int)st, bad[i]);
    }
    test_card_heads();

    /* The fixture's safetensors has no card, only gen_case's config. */
    CHECK(segmamba_card_find(TINY_MODEL, &c) == SEGMAMBA_OK);
    CHECK_MSG(c.nslices[0] == 16 && c.nslices[3] == 2 && !c.fue, "nslices %d..%d from %s",
              c.nslices[0], c.nslices[3], c.origin);
    CHECK(c.n_channels == 4 && c.patch[0] == 128);

    /* A card in __metadata__ wins; a side file next to a model without one. */
    char dir[] = "/tmp/sm_test_card_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char model[256], side[256];
    snprintf(model, sizeof model, "%s/m.safetensors", dir);
    snprintf(side, sizeof side, "%s/m.card.json", dir);
    sm_weights w = {0};
    float *one = malloc(sizeof *one);
    *one = 1.0f;
    const int64_t shape[1] = {1};
    CHECK(sm_weights_add(&w, "x", 1, shape, one) == SEGMAMBA_OK);
    const char *side_text = "{\"patch\": [64, 64, 64]}";
    FILE *f = fopen(side, "w");
    fputs(side_text, f);
    fclose(f);
    CHECK(sm_save_safetensors(model, &w) == SEGMAMBA_OK);
    CHECK(segmamba_card_find(model, &c) == SEGMAMBA_OK && c.patch[0] == 64);
    CHECK(sm_weights_set_meta(&w, "card", "{\"patch\": [96, 96, 96]}") == SEGMAMBA_OK);
    CHECK(sm_save_safetensors(model, &w) == SEGMAMBA_OK);
    CHECK(segmamba_card_find(model, &c) == SEGMAMBA_OK && c.patch[0] == 96);
    CHECK(sm_weights_set_meta(&w, "card", "{\"patch\": [96, 96]}") == SEGMAMBA_OK);
    CHECK(sm_save_safetensors(model, &w) == SEGMAMBA_OK);
    CHECK(segmamba_card_find(model, &c) == SEGMAMBA_E_FORMAT);
    sm_weights_free(&w);
    remove(model);
    remove(side);
    rmdir(dir);
}

int main(void)
{
    test_card();
    return check_report("test_card");
}
