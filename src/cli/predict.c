/* segmamba predict: NIfTI channels in, a label map (and optionally
 * probabilities, BraTS regions, uncertainty, a PNG preview) out, through the
 * official pipeline (src/pipeline.h) with the model's card. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "card.h"
#include "cli.h"
#include "nifti.h"
#include "pipeline.h"
#include "preview.h"

#define MAX_INPUTS SM_CARD_MAX_CHANNELS

void usage_predict(FILE *f)
{
    fprintf(f, "usage: segmamba predict --model M -i IN1 [IN2 ...] -o SEG.nii.gz [options]\n"
               "\n"
               "Segments a case with the official pipeline: crop to the non-zero box,\n"
               "normalize each channel, resample to the model's spacing, sliding window\n"
               "(overlap 0.5, Gaussian weights) with 8-way mirror averaging, argmax, uncrop.\n"
               "How the model wants its inputs comes from its model card (__metadata__ of a\n"
               ".safetensors file, or MODEL.card.json next to it; else the official BraTS\n"
               "2023 setup: t2w t2f t1n t1c, 1 mm, patch 128).\n"
               "\n"
               "  --model M            checkpoint (.pt or .safetensors)\n"
               "  -i, --input F...     one NIfTI file per card channel, in the card's order\n"
               "                       (or one 4D file holding them all); files named like\n"
               "                       BraTS ones (*-t2w.nii.gz ...) are checked against it\n"
               "  -o, --output F       label map, uint8 NIfTI with the input's geometry\n"
               "  --probabilities F    float32 4D NIfTI, one volume per model output\n"
               "                       (softmax; sigmoid for a regions card)\n"
               "  --regions F          uint8 4D NIfTI: TC, WT, ET masks (BraTS label sets)\n"
               "  --uncertainty F      float32 NIfTI: per-voxel entropy of the prediction (nats)\n"
               "  --preview F.png      a PNG of the middle slices with the labels overlaid\n"
               "  --card F.json        use this model card instead of the model's\n"
               "  --no-tta             one pass instead of 8 mirrored ones (8x faster)\n"
               "  --threads N          threads (default: all cores)\n"
               "  --conv KIND          convolution backend: onednn, blas or ref\n"
               "  --quiet              no progress bar or summary\n"
               "\n"
               "Outputs are written atomically and never over an input.\n");
}

/* ---- progress ----------------------------------------------------------- */

typedef struct progress {
    int quiet, tty;
    double start, last_print;
    int last_decile;
} progress;

static void fmt_time(char *buf, size_t cap, double s)
{
    if (s < 0) s = 0;
    const long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, cap, "%ld:%02ld", t / 60, t % 60);
}

/* On a terminal one line redrawn with \r; elsewhere (logs) a line at each
 * tenth of the work. */
static void on_progress(void *user, int done, int total)
{
    progress *p = user;
    if (p->quiet || total <= 0) return;
    const double now = cli_now(), el = now - p->start;
    const int decile = (int)(10LL * done / total);
    if (p->tty ? (done < total && now - p->last_print < 0.2) : decile == p->last_decile) return;
    p->last_print = now;
    p->last_decile = decile;
    char e[32], eta[32];
    fmt_time(e, sizeof e, el);
    fmt_time(eta, sizeof eta, done > 0 ? el * (total - done) / done : 0);
    const int width = 30, fill = (int)((long long)width * done / total);
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "%ssegmamba: [%s] %d/%d windows  %3d%%  elapsed %s  ETA %s%s",
            p->tty ? "\r" : "", bar, done, total, (int)(100LL * done / total), e, eta,
            p->tty ? (done == total ? "\n" : "") : "\n");
    fflush(stderr);
}

/* ---- input names against the card --------------------------------------- */

/* The channel a file name announces: the part between the last '-' or '_'
 * and ".nii[.gz]", with the BraTS 2021 names mapped to 2023's. NULL when
 * the name has no such part. */
static const char *channel_of_file(const char *path, char *buf, size_t cap)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t len = strlen(base);
    if (len > 7 && strcmp(base + len - 7, ".nii.gz") == 0)
        len -= 7;
    else if (len > 4 && strcmp(base + len - 4, ".nii") == 0)
        len -= 4;
    else
        return NULL;
    size_t start = len;
    while (start > 0 && base[start - 1] != '-' && base[start - 1] != '_') start--;
    if (start == 0 || len - start == 0 || len - start >= cap) return NULL;
    memcpy(buf, base + start, len - start);
    buf[len - start] = '\0';
    static const char *const alias[][2] = {
        {"t1", "t1n"}, {"t1ce", "t1c"}, {"t2", "t2w"}, {"flair", "t2f"}};
    for (size_t i = 0; i < sizeof alias / sizeof alias[0]; i++)
        if (strcmp(buf, alias[i][0]) == 0) return alias[i][1];
    return buf;
}

static int card_channel_index(const sm_card *card, const char *name)
{
    for (int c = 0; c < card->n_channels; c++)
        if (strcmp(card->channels[c], name) == 0) return c;
    return -1;
}

static void print_channel_list(const sm_card *card)
{
    for (int c = 0; c < card->n_channels; c++) fprintf(stderr, " %s", card->channels[c]);
}

/* A file named after another card channel than its position's is refused:
 * swapped modalities give a confident, wrong segmentation. */
static int check_input_names(const sm_card *card, const char *const *in, int n)
{
    if (n != card->n_channels) return 0;
    for (int i = 0; i < n; i++) {
        char buf[SM_CARD_NAME_MAX];
        const char *ch = channel_of_file(in[i], buf, sizeof buf);
        const int at = ch ? card_channel_index(card, ch) : -1;
        if (at >= 0 && at != i) {
            fprintf(stderr,
                    "segmamba: error: input %d (%s) looks like channel '%s', but the model "
                    "card (%s) wants '%s' there; give the inputs in the order",
                    i + 1, in[i], ch, card->origin, card->channels[i]);
            print_channel_list(card);
            fprintf(stderr, "\n");
            return SEGMAMBA_E_ARG;
        }
    }
    return 0;
}

/* ---- the command ---------------------------------------------------------- */

typedef struct predict_args {
    const char *model, *card, *inputs[MAX_INPUTS];
    int n_inputs;
    const char *out, *prob, *regions, *unc, *preview;
    int no_tta, threads, quiet;
    segmamba_conv_backend conv;
} predict_args;

static int parse_args(int argc, char **argv, predict_args *a)
{
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
            usage_predict(stdout);
            return -1;
        } else if (strcmp(s, "--no-tta") == 0) {
            a->no_tta = 1;
        } else if (strcmp(s, "--quiet") == 0) {
            a->quiet = 1;
        } else if (strcmp(s, "-i") == 0 || strcmp(s, "--input") == 0) {
            if (!v || v[0] == '-') return cli_usage_error("predict: %s needs one or more files", s);
            while (i + 1 < argc && argv[i + 1][0] != '-') {
                if (a->n_inputs == MAX_INPUTS)
                    return cli_usage_error("predict: more than %s inputs", "16");
                a->inputs[a->n_inputs++] = argv[++i];
            }
        } else if (!v) {
            return cli_usage_error(strncmp(s, "-", 1) == 0 ? "predict: unknown option or missing "
                                                             "value: '%s'"
                                                           : "predict: unexpected argument '%s'",
                                   s);
        } else if (strcmp(s, "--model") == 0) {
            a->model = argv[++i];
        } else if (strcmp(s, "-o") == 0 || strcmp(s, "--output") == 0) {
            a->out = argv[++i];
        } else if (strcmp(s, "--probabilities") == 0) {
            a->prob = argv[++i];
        } else if (strcmp(s, "--regions") == 0) {
            a->regions = argv[++i];
        } else if (strcmp(s, "--uncertainty") == 0) {
            a->unc = argv[++i];
        } else if (strcmp(s, "--preview") == 0) {
            a->preview = argv[++i];
        } else if (strcmp(s, "--card") == 0) {
            a->card = argv[++i];
        } else if (strcmp(s, "--threads") == 0) {
            if (!cli_parse_int(argv[++i], 1, 4096, &a->threads))
                return cli_usage_error("predict: --threads wants a positive integer, not '%s'", v);
        } else if (strcmp(s, "--conv") == 0) {
            if (!cli_parse_conv(argv[++i], &a->conv))
                return cli_usage_error("predict: --conv wants onednn, blas or ref, not '%s'", v);
        } else {
            return cli_usage_error(s[0] == '-' ? "predict: unknown option '%s'"
                                               : "predict: unexpected argument '%s'",
                                   s);
        }
    }
    if (!a->model || !a->n_inputs || !a->out)
        return cli_usage_error("predict: %s", "--model, -i and -o are required");
    return 0;
}

/* Every output differs from every input and from the other outputs. */
static int check_outputs(const predict_args *a)
{
    const char *outs[5] = {a->out, a->prob, a->regions, a->unc, a->preview};
    const char *what[5] = {"-o", "--probabilities", "--regions", "--uncertainty", "--preview"};
    for (int i = 0; i < 5; i++) {
        if (!outs[i]) continue;
        for (int j = 0; j < a->n_inputs; j++)
            if (strcmp(outs[i], a->inputs[j]) == 0 || sm_same_file(outs[i], a->inputs[j])) {
                fprintf(stderr, "segmamba: error: %s %s is an input; refusing to overwrite it\n",
                        what[i], outs[i]);
                return SEGMAMBA_E_ARG;
            }
        if (strcmp(outs[i], a->model) == 0 || sm_same_file(outs[i], a->model)) {
            fprintf(stderr, "segmamba: error: %s %s is the model; refusing to overwrite it\n",
                    what[i], outs[i]);
            return SEGMAMBA_E_ARG;
        }
        for (int j = 0; j < i; j++)
            if (outs[j] && (strcmp(outs[i], outs[j]) == 0 || sm_same_file(outs[i], outs[j]))) {
                fprintf(stderr, "segmamba: error: %s and %s both write %s\n", what[j], what[i],
                        outs[i]);
                return SEGMAMBA_E_ARG;
            }
    }
    return 0;
}

static sm_status write_outputs(const predict_args *a, const sm_card *card, const sm_volume *vol,
                               const sm_prediction *p)
{
    sm_status st = sm_nifti_write_u8(a->out, &vol->geom, p->labels, 1);
    if (st == SEGMAMBA_OK && a->prob)
        st = sm_nifti_write_f32(a->prob, &vol->geom, p->probabilities, p->n_prob);
    if (st == SEGMAMBA_OK && a->regions)
        st = sm_nifti_write_u8(a->regions, &vol->geom, p->regions, 3);
    if (st == SEGMAMBA_OK && a->unc) st = sm_nifti_write_f32(a->unc, &vol->geom, p->uncertainty, 1);
    if (st == SEGMAMBA_OK && a->preview) {
        const char *names[SM_CARD_MAX_LABELS];
        for (int l = 1; l < card->n_labels; l++) names[l - 1] = card->labels[l];
        st = sm_preview_write(a->preview, vol, p->labels, names, card->n_labels - 1);
    }
    return st;
}

static void print_summary(const predict_args *a, const sm_card *card, const sm_volume *vol,
                          const sm_prediction *p, double seconds)
{
    int64_t count[256] = {0};
    const size_t n = (size_t)vol->d * vol->h * vol->w;
    for (size_t i = 0; i < n; i++) count[p->labels[i]]++;
    fprintf(stderr,
            "segmamba: %dx%dx%d, crop [%d:%d, %d:%d, %d:%d], %d windows in %.1f s; wrote %s\n",
            vol->d, vol->h, vol->w, p->box[0][0], p->box[0][1], p->box[1][0], p->box[1][1],
            p->box[2][0], p->box[2][1], p->windows, seconds, a->out);
    fprintf(stderr, "segmamba: voxels per label:");
    for (int l = 0; l < card->n_labels; l++)
        fprintf(stderr, " %s %lld", card->labels[l], (long long)count[l]);
    fprintf(stderr, "\n");
}

int cmd_predict(int argc, char **argv)
{
    predict_args a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc < 0 ? 0 : rc;

    sm_card card;
    sm_status st = a.card ? sm_card_load(a.card, &card) : sm_card_for_model(a.model, &card);
    if (st != SEGMAMBA_OK) return cli_fail(st);
    if (a.n_inputs != card.n_channels && a.n_inputs != 1) {
        fprintf(stderr,
                "segmamba: error: %d inputs given; the model card (%s) wants %d, in the "
                "order",
                a.n_inputs, card.origin, card.n_channels);
        print_channel_list(&card);
        fprintf(stderr, "\n");
        return SEGMAMBA_E_ARG;
    }
    if ((rc = check_input_names(&card, a.inputs, a.n_inputs))) return rc;
    if (a.regions && (card.n_labels != 4 && card.output != SM_OUTPUT_REGIONS))
        return cli_usage_error("predict: --regions needs a BraTS model (labels background, NCR, "
                               "ED, ET); this card has %s",
                               "other labels");
    if ((rc = check_outputs(&a))) return rc;
    segmamba_set_threads(a.threads);

    sm_volume vol = {0};
    st = sm_nifti_read_channels(a.inputs, a.n_inputs, &vol);
    if (st != SEGMAMBA_OK) return cli_fail(st);
    if (vol.c != card.n_channels) {
        fprintf(stderr,
                "segmamba: error: %s holds %d channels; the model card (%s) wants %d:", a.inputs[0],
                vol.c, card.origin, card.n_channels);
        print_channel_list(&card);
        fprintf(stderr, "\n");
        sm_volume_free(&vol);
        return SEGMAMBA_E_ARG;
    }

    segmamba_options opts = {.conv = a.conv, .fue = card.fue};
    memcpy(opts.nslices, card.nslices, sizeof opts.nslices);
    segmamba_model *m = NULL;
    st = segmamba_open(a.model, &opts, &m);
    if (st == SEGMAMBA_OK) st = sm_card_check_model(&card, m);

    progress prog = {.quiet = a.quiet, .tty = isatty(2), .start = cli_now(), .last_decile = -1};
    sm_predict_options popt = {.no_tta = a.no_tta,
                               .want_probabilities = a.prob != NULL,
                               .want_regions = a.regions != NULL,
                               .want_uncertainty = a.unc != NULL,
                               .progress = on_progress,
                               .progress_user = &prog};
    sm_prediction pred = {0};
    if (st == SEGMAMBA_OK) st = sm_predict(m, &card, &vol, &popt, &pred);
    const double seconds = cli_now() - prog.start;
    segmamba_close(m);
    if (st == SEGMAMBA_OK) st = write_outputs(&a, &card, &vol, &pred);
    if (st == SEGMAMBA_OK && !a.quiet) print_summary(&a, &card, &vol, &pred, seconds);
    sm_prediction_free(&pred);
    sm_volume_free(&vol);
    return st == SEGMAMBA_OK ? 0 : cli_fail(st);
}
