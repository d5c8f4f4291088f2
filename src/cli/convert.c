/* segmamba convert: a checkpoint (.pt or .safetensors) and its model card
 * into one .safetensors file that carries the card in __metadata__["card"],
 * so that predict needs nothing else. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

void usage_convert(FILE *f)
{
    fprintf(f, "usage: segmamba convert IN [--card CARD.json] -o OUT.safetensors\n"
               "\n"
               "Writes the checkpoint IN (.pt or .safetensors) as float32 safetensors with the\n"
               "model card in its metadata. Without --card, IN's own card is kept (its\n"
               "metadata, or IN.card.json next to it, or the official BraTS 2023 defaults).\n"
               "The card is checked against the model (channels, outputs, patch) first.\n"
               "\n"
               "  --card F.json    the model card to embed\n"
               "  -o, --output F   the .safetensors file to write (atomically)\n"
               "  --quiet          print nothing on success\n");
}

void cli_print_card(FILE *f, const segmamba_card *card)
{
    fprintf(f, "card         %s\n", card->origin);
    fprintf(f, "  channels   ");
    for (int c = 0; c < card->n_channels; c++) {
        const segmamba_norm *n = &card->norm[c];
        if (n->kind == SEGMAMBA_NORM_CT)
            fprintf(f, "%s%s (ct: clip %g..%g, mean %g, std %g)", c ? ", " : "", card->channels[c],
                    n->clip_lo, n->clip_hi, n->mean, n->std);
        else
            fprintf(f, "%s%s (zscore)", c ? ", " : "", card->channels[c]);
    }
    if (card->spacing[0] == 0.0 && card->spacing[1] == 0.0 && card->spacing[2] == 0.0)
        fprintf(f, "\n  spacing    the input's own (no resampling)\n");
    else
        fprintf(f, "\n  spacing    %g x %g x %g mm (z, y, x)\n", card->spacing[0], card->spacing[1],
                card->spacing[2]);
    fprintf(f, "  patch      %d x %d x %d\n", card->patch[0], card->patch[1], card->patch[2]);
    fprintf(f, "  nslices    %d, %d, %d, %d\n", card->nslices[0], card->nslices[1],
            card->nslices[2], card->nslices[3]);
    fprintf(f, "  fue        %s\n", card->fue ? "on" : "off");
    fprintf(f, "  labels     ");
    for (int l = 0; l < card->n_labels; l++)
        fprintf(f, "%s%d %s", l ? ", " : "", l, card->labels[l]);
    for (int l = 0; l < card->n_labels; l++) {
        const segmamba_card_code *c = &card->codes[l];
        if (c->category.value[0])
            fprintf(f, "\n  dicom      %s: category (%s, %s, \"%s\"), type (%s, %s, \"%s\")",
                    card->labels[l], c->category.value, c->category.scheme, c->category.meaning,
                    c->type.value, c->type.scheme, c->type.meaning);
    }
    if (card->output == SEGMAMBA_OUTPUT_ARGMAX)
        fprintf(f, "\n  output     argmax\n");
    else if (card->output == SEGMAMBA_OUTPUT_REGIONS && card->n_regions == 0)
        fprintf(f, "\n  output     regions (sigmoid TC, WT, ET)\n");
    else
        fprintf(f, "\n  output     %s, %d outputs\n",
                card->output == SEGMAMBA_OUTPUT_REGIONS ? "regions (sigmoid per nested region)"
                                                        : "sigmoid (one per structure)",
                segmamba_card_get_output_count(card));
    if (card->output != SEGMAMBA_OUTPUT_ARGMAX) {
        fprintf(f, "  threshold  %g (on where the sigmoid is above it)\n",
                card->threshold == 0.0 ? 0.5 : card->threshold);
        segmamba_card_region table[SEGMAMBA_CARD_MAX_REGIONS];
        const int rows = segmamba_card_get_regions(card, table);
        if (rows) {
            fprintf(f, "  label map  ");
            for (int r = 0; r < rows; r++)
                fprintf(f, "%s%s (channel %d) -> %d", r ? ", " : "", table[r].name,
                        table[r].channel, table[r].label);
            fprintf(f, "; in this order, a later one overwriting\n");
        } else if (segmamba_card_get_writes_masks(card)) {
            fprintf(f, "  label map  none: one mask per output (predict -o writes them 4D)\n");
        }
    }
    fprintf(f, "  overlap    %g\n",
            card->overlap == 0.0 ? 0.5
            : card->overlap < 0  ? 0.0
                                 : card->overlap);
}

int cmd_convert(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *card_path = NULL;
    int quiet = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage_convert(stdout);
            return 0;
        } else if (strcmp(a, "--quiet") == 0) {
            quiet = 1;
        } else if (strcmp(a, "--card") == 0 || strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            if (!v) return cli_usage_error("convert: %s needs a value", a);
            if (strcmp(a, "--card") == 0)
                card_path = argv[++i];
            else
                out = argv[++i];
        } else if (a[0] == '-') {
            return cli_usage_error("convert: unknown option '%s'", a);
        } else if (!in) {
            in = a;
        } else {
            return cli_usage_error("convert: unexpected argument '%s'", a);
        }
    }
    if (!in || !out) return cli_usage_error("convert: %s", "IN and -o OUT are required");
    if (strcmp(in, out) == 0 || segmamba_file_is_same(in, out) ||
        (card_path && segmamba_file_is_same(card_path, out)))
        return cli_usage_error("convert: refusing to write over an input (%s)", out);

    segmamba_card card;
    segmamba_status st =
        card_path ? segmamba_card_load(card_path, &card) : segmamba_card_find(in, &card);
    if (st != SEGMAMBA_OK) return cli_fail(st);
    st = segmamba_convert(in, &card, out);
    if (st != SEGMAMBA_OK) return cli_fail(st);
    if (!quiet)
        fprintf(stderr, "segmamba: wrote %s with the model card from %s\n", out, card.origin);
    return 0;
}
