/* What makes checkpoints one ensemble (segmamba_predict_ensemble): the
 * same network (segmamba_config_differs) and the same model card
 * (segmamba_card_differs), each difference named for the message. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "segmamba_pipeline.h"

/* Writes the difference to why; returns 1. */
static int say(char *why, size_t n, const char *fmt, ...)
{
    if (why && n) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, n, fmt, ap);
        va_end(ap);
    }
    return 1;
}

/* "4,8,12,18" */
static const char *ints(const int *v, int n, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%d", i ? "," : "", v[i]);
    return buf;
}

static int ints_differ(const char *what, const int *a, const int *b, int n, char *why, size_t cap)
{
    if (memcmp(a, b, (size_t)n * sizeof *a) == 0) return 0;
    char x[96], y[96];
    return say(why, cap, "%s %s vs %s", what, ints(a, n, x, sizeof x), ints(b, n, y, sizeof y));
}

int segmamba_config_differs(const segmamba_config *a, const segmamba_config *b, char *why, size_t n)
{
    const char *fa, *fb, *ta, *tb;
    segmamba_get_config_names(a, &fa, &ta);
    segmamba_get_config_names(b, &fb, &tb);
    if (a->family != b->family) return say(why, n, "family %s vs %s", fa, fb);
    if (a->mamba_type != b->mamba_type) return say(why, n, "Mamba type %s vs %s", ta, tb);
    if (a->in_chans != b->in_chans)
        return say(why, n, "input channels %d vs %d", a->in_chans, b->in_chans);
    if (a->out_chans != b->out_chans)
        return say(why, n, "output channels %d vs %d", a->out_chans, b->out_chans);
    const int S = SEGMAMBA_STAGES;
    if (ints_differ("features", a->feat, b->feat, S, why, n)) return 1;
    if (ints_differ("depths", a->depths, b->depths, S, why, n)) return 1;
    if (a->hidden != b->hidden) return say(why, n, "hidden size %d vs %d", a->hidden, b->hidden);
    if (a->d_state != b->d_state) return say(why, n, "d_state %d vs %d", a->d_state, b->d_state);
    if (a->d_conv != b->d_conv) return say(why, n, "d_conv %d vs %d", a->d_conv, b->d_conv);
    if (a->expand != b->expand) return say(why, n, "expand %d vs %d", a->expand, b->expand);
    if (ints_differ("dt_rank", a->dt_rank, b->dt_rank, S, why, n)) return 1;
    if (a->mamba_type == SEGMAMBA_MAMBA_V3 &&
        ints_differ("nslices", a->nslices, b->nslices, S, why, n))
        return 1;
    if (a->fue != b->fue)
        return say(why, n, "FUE %s vs %s", a->fue ? "on" : "off", b->fue ? "on" : "off");
    return 0;
}

static const char *norm_name(const segmamba_norm *x, char *buf, size_t cap)
{
    if (x->kind == SEGMAMBA_NORM_CT)
        snprintf(buf, cap, "ct (clip %g..%g, mean %g, std %g)", x->clip_lo, x->clip_hi, x->mean,
                 x->std);
    else
        snprintf(buf, cap, "zscore");
    return buf;
}

static const char *output_name(segmamba_output_kind k)
{
    return k == SEGMAMBA_OUTPUT_REGIONS   ? "regions"
           : k == SEGMAMBA_OUTPUT_SIGMOID ? "sigmoid"
                                          : "argmax";
}

int segmamba_card_differs(const segmamba_card *a, const segmamba_card *b, char *why, size_t n)
{
    if (a->n_channels != b->n_channels)
        return say(why, n, "channels: %d vs %d", a->n_channels, b->n_channels);
    for (int c = 0; c < a->n_channels; c++) {
        if (strcmp(a->channels[c], b->channels[c]) != 0)
            return say(why, n, "channel %d: '%s' vs '%s'", c + 1, a->channels[c], b->channels[c]);
        char x[160], y[160];
        norm_name(&a->norm[c], x, sizeof x);
        norm_name(&b->norm[c], y, sizeof y);
        if (a->norm[c].kind != b->norm[c].kind ||
            (a->norm[c].kind == SEGMAMBA_NORM_CT &&
             memcmp(&a->norm[c], &b->norm[c], sizeof a->norm[c]) != 0))
            return say(why, n, "channel '%s' normalization: %s vs %s", a->channels[c], x, y);
    }
    if (memcmp(a->spacing, b->spacing, sizeof a->spacing) != 0)
        return say(why, n, "spacing %gx%gx%g vs %gx%gx%g mm", a->spacing[0], a->spacing[1],
                   a->spacing[2], b->spacing[0], b->spacing[1], b->spacing[2]);
    if (memcmp(a->patch, b->patch, sizeof a->patch) != 0)
        return say(why, n, "patch %dx%dx%d vs %dx%dx%d", a->patch[0], a->patch[1], a->patch[2],
                   b->patch[0], b->patch[1], b->patch[2]);
    if (ints_differ("nslices", a->nslices, b->nslices, SEGMAMBA_STAGES, why, n)) return 1;
    if (a->fue != b->fue) return say(why, n, "fue %d vs %d", a->fue, b->fue);
    if (a->n_labels != b->n_labels)
        return say(why, n, "labels: %d vs %d", a->n_labels, b->n_labels);
    for (int l = 0; l < a->n_labels; l++)
        if (strcmp(a->labels[l], b->labels[l]) != 0)
            return say(why, n, "label %d: '%s' vs '%s'", l, a->labels[l], b->labels[l]);
    for (int l = 0; l < a->n_labels; l++)
        if (memcmp(&a->codes[l], &b->codes[l], sizeof a->codes[l]) != 0)
            return say(why, n, "label %d ('%s'): DICOM codes differ", l, a->labels[l]);
    if (a->output != b->output)
        return say(why, n, "output %s vs %s", output_name(a->output), output_name(b->output));
    if (a->output != SEGMAMBA_OUTPUT_ARGMAX && a->threshold != b->threshold)
        return say(why, n, "threshold %g vs %g", a->threshold, b->threshold);
    if (a->overlap != b->overlap) return say(why, n, "overlap %g vs %g", a->overlap, b->overlap);
    segmamba_card_region ra[SEGMAMBA_CARD_MAX_REGIONS], rb[SEGMAMBA_CARD_MAX_REGIONS];
    const int na = segmamba_card_get_regions(a, ra), nb = segmamba_card_get_regions(b, rb);
    if (na != nb) return say(why, n, "regions table: %d vs %d rows", na, nb);
    for (int r = 0; r < na; r++)
        if (strcmp(ra[r].name, rb[r].name) != 0 || ra[r].channel != rb[r].channel ||
            ra[r].label != rb[r].label)
            return say(why, n, "region %d: %s (channel %d, label %d) vs %s (channel %d, label %d)",
                       r + 1, ra[r].name, ra[r].channel, ra[r].label, rb[r].name, rb[r].channel,
                       rb[r].label);
    return 0;
}
