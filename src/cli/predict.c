/* segmamba predict: NIfTI channels in, a label map (and optionally
 * probabilities, BraTS regions, uncertainty, a PNG preview) out, through the
 * official pipeline (src/clinical/pipeline.h) with the model's card. This
 * file: the arguments, the checks of the outputs, progress and the summary;
 * reading, checking and writing a case are case.c's. With --list, a whole
 * cohort (cohort.c). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "case.h"
#include "cli.h"
#include "cohort.h"

#define MAX_INPUTS SEGMAMBA_CARD_MAX_CHANNELS

void usage_predict(FILE *f)
{
    fprintf(f,
            "usage: segmamba predict --model M [--model M2 ...] -i IN1 [IN2 ...] -o SEG.nii.gz\n"
            "                        [options]\n"
            "       segmamba predict --model M [--model M2 ...] --list COHORT.csv --out-dir DIR\n"
            "                        [options]\n"
            "\n"
            "Segments a case with the official pipeline: crop to the non-zero box,\n"
            "normalize each channel, resample to the model's spacing, sliding window\n"
            "(overlap 0.5, Gaussian weights) with 8-way mirror averaging, argmax (or the\n"
            "card's sigmoid heads), uncrop. A sigmoid card without a label map writes -o\n"
            "as a 4D uint8 image, one mask per output (see docs/model-cards.md).\n"
            "How the model wants its inputs comes from its model card (__metadata__ of a\n"
            ".safetensors file, or MODEL.card.json next to it; else the official BraTS\n"
            "2023 setup: t2w t2f t1n t1c, 1 mm, patch 128; a model without a card that\n"
            "does not take 4 channels gets a generic one, said on stderr).\n"
            "\n"
            "  --model M            checkpoint (.pt or .safetensors); given more than once\n"
            "                       (up to 16), an ensemble, as nnU-Net's folds: checkpoints\n"
            "                       of one network (family, Mamba type, channels, features,\n"
            "                       depths) with one model card, run one after another\n"
            "                       (memory: one more set of weights each), each with its\n"
            "                       sliding windows and mirror averaging; their logits are\n"
            "                       averaged, then softmax/sigmoids and argmax as for one\n"
            "                       model. --card applies to them all\n"
            "  -i, --input F...     one NIfTI file per card channel, in the card's order\n"
            "                       (or one 4D file holding them all); files named like\n"
            "                       BraTS ones (*-t2w.nii.gz ...) are checked against it;\n"
            "                       or one DICOM folder per channel (searched recursively,\n"
            "                       any file names): its one image series, sorted by\n"
            "                       position along the slice normal, rescaled\n"
            "  --series UID...      DICOM: the Series Instance UID to read from each folder\n"
            "                       (one folder and several UIDs: one series per channel)\n"
            "  -o, --output F       label map, uint8 NIfTI with the input's geometry\n"
            "  --probabilities F    float32 4D NIfTI, one volume per model output\n"
            "                       (softmax; sigmoids for a regions or sigmoid card)\n"
            "  --regions F          uint8 4D NIfTI: TC, WT, ET masks (BraTS label sets)\n"
            "  --uncertainty F      float32 NIfTI: per-voxel entropy of the prediction (nats)\n"
            "  --preview F.png      a PNG of the middle slices with the labels overlaid\n"
            "  --dicom-seg F.dcm    DICOM input: a DICOM Segmentation (BINARY, a segment per\n"
            "                       label, the card's names and codes) referencing the series\n"
            "  --card F.json        use this model card instead of the model's\n"
            "  --no-tta             one pass instead of 8 mirrored ones (8x faster)\n"
            "  --overlap F          the fraction of a window its neighbours share, 0 to 0.95\n"
            "                       (default: the card's \"overlap\", else 0.5, the\n"
            "                       official; MONAI's overlap)\n"
            "  --threads N          threads (default: all cores)\n"
            "  --conv KIND          convolutions: auto (default), winograd, onednn, blas or\n"
            "                       ref (see 'segmamba help forward')\n"
            "  --backend B          cpu (default) or cuda (an engine built with CUDA)\n"
            "  --quiet              no progress bar or summary\n"
            "\n"
            "Outputs are written atomically and never over an input; their folders are\n"
            "checked before the work starts.\n"
            "\n"
            "Cohort mode (--list): the model (or ensemble) is loaded once and every case of\n"
            "the list is segmented; a case that fails is reported and the others go on.\n"
            "  --list F.csv         header row, then one row per case: a column 'id' and\n"
            "                       one column per card channel, named like it (see\n"
            "                       'segmamba info'), or one column 'image' with a 4D\n"
            "                       file; other columns are ignored. Comma-separated,\n"
            "                       \"double quotes\" around a field with commas, quotes\n"
            "                       (doubled) or surrounding spaces; relative paths are\n"
            "                       relative to the list's folder. Ids: letters, digits,\n"
            "                       '.', '-', '_', not starting with '.'\n"
            "  --out-dir DIR        DIR/<id>.nii.gz per case, DIR/summary.csv (id, status,\n"
            "                       seconds, error), rewritten after every case\n"
            "  --probabilities, --regions, --uncertainty, --preview, --dicom-seg\n"
            "                       take no file name here: DIR/probabilities/<id>.nii.gz,\n"
            "                       DIR/regions/<id>.nii.gz, DIR/uncertainty/<id>.nii.gz,\n"
            "                       DIR/preview/<id>.png, DIR/dicom-seg/<id>.dcm (columns\n"
            "                       of DICOM folders)\n"
            "  --ref-column NAME    reference label maps in column NAME: Dice and HD95 per\n"
            "                       region (BraTS TC, WT, ET for a BraTS card, else one\n"
            "                       per label) and their means in the summary\n"
            "  --overwrite          redo cases whose outputs exist (default: skip them)\n"
            "Under mpirun or srun (an MPI build: 'segmamba version'), the ranks share the\n"
            "cases: rank 0 hands out the next case as ranks finish, works on cases too,\n"
            "and writes the summary; each rank runs --threads threads.\n");
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
 * tenth of the work. Returns 1 (stop) after a Ctrl-C. */
static int on_progress(void *user, int done, int total)
{
    progress *p = user;
    if (cli_interrupted()) return 1;
    if (p->quiet || total <= 0) return 0;
    const double now = cli_now(), el = now - p->start;
    const int decile = (int)(10LL * done / total);
    if (p->tty ? (done < total && now - p->last_print < 0.2) : decile == p->last_decile) return 0;
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
    return 0;
}

/* ---- the command ---------------------------------------------------------- */

typedef struct predict_args {
    const char *models[CASE_MAX_MODELS]; /* --model, once or more: an ensemble */
    int n_models;
    const char *card, *inputs[MAX_INPUTS], *series[MAX_INPUTS];
    int n_inputs, n_series;
    case_outputs out;
    const char *list, *out_dir, *ref_column;
    int overwrite;
    int no_tta, threads, quiet;
    double overlap;              /* --overlap; 0: the official 0.5 */
    segmamba_options model_opts; /* how models are opened: --conv, --backend */
} predict_args;

/* The optional outputs: a file name each for one case; with --list, flags
 * (the file names come from the case ids). */
static const char **optional_output(predict_args *a, const char *opt)
{
    if (strcmp(opt, "--probabilities") == 0) return &a->out.prob;
    if (strcmp(opt, "--regions") == 0) return &a->out.regions;
    if (strcmp(opt, "--uncertainty") == 0) return &a->out.unc;
    if (strcmp(opt, "--preview") == 0) return &a->out.preview;
    if (strcmp(opt, "--dicom-seg") == 0) return &a->out.dicom_seg;
    return NULL;
}

static int parse_args(int argc, char **argv, predict_args *a)
{
    int list_mode = 0;
    for (int i = 0; i < argc; i++) list_mode |= strcmp(argv[i], "--list") == 0;
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        const char **optional = optional_output(a, s);
        if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
            usage_predict(stdout);
            return -1;
        } else if (strcmp(s, "--no-tta") == 0) {
            a->no_tta = 1;
        } else if (strcmp(s, "--quiet") == 0) {
            a->quiet = 1;
        } else if (strcmp(s, "--overwrite") == 0) {
            a->overwrite = 1;
        } else if (optional && list_mode) {
            *optional = "";
        } else if (strcmp(s, "-i") == 0 || strcmp(s, "--input") == 0) {
            if (!v || v[0] == '-') return cli_usage_error("predict: %s needs one or more files", s);
            while (i + 1 < argc && argv[i + 1][0] != '-') {
                if (a->n_inputs == MAX_INPUTS)
                    return cli_usage_error("predict: more than %s inputs", "16");
                a->inputs[a->n_inputs++] = argv[++i];
            }
        } else if (strcmp(s, "--series") == 0) {
            if (!v || v[0] == '-') return cli_usage_error("predict: %s needs one or more UIDs", s);
            while (i + 1 < argc && argv[i + 1][0] != '-') {
                if (a->n_series == MAX_INPUTS)
                    return cli_usage_error("predict: more than %s --series UIDs", "16");
                a->series[a->n_series++] = argv[++i];
            }
        } else if (!v) {
            return cli_usage_error(strncmp(s, "-", 1) == 0 ? "predict: unknown option or missing "
                                                             "value: '%s'"
                                                           : "predict: unexpected argument '%s'",
                                   s);
        } else if (optional) {
            *optional = argv[++i];
        } else if (strcmp(s, "--model") == 0) {
            if (a->n_models == CASE_MAX_MODELS)
                return cli_usage_error("predict: more than %s models", "16");
            a->models[a->n_models++] = argv[++i];
        } else if (strcmp(s, "-o") == 0 || strcmp(s, "--output") == 0) {
            a->out.seg = argv[++i];
        } else if (strcmp(s, "--list") == 0) {
            a->list = argv[++i];
        } else if (strcmp(s, "--out-dir") == 0) {
            a->out_dir = argv[++i];
        } else if (strcmp(s, "--ref-column") == 0) {
            a->ref_column = argv[++i];
        } else if (strcmp(s, "--card") == 0) {
            a->card = argv[++i];
        } else if (strcmp(s, "--threads") == 0) {
            if (!cli_parse_int(argv[++i], 1, 4096, &a->threads))
                return cli_usage_error("predict: --threads wants a positive integer, not '%s'", v);
        } else if (strcmp(s, "--conv") == 0) {
            if (!cli_parse_conv(argv[++i], &a->model_opts))
                return cli_usage_error("predict: --conv wants " CLI_CONV_KINDS ", not '%s'", v);
        } else if (strcmp(s, "--overlap") == 0) {
            char *end;
            const double o = strtod(argv[++i], &end);
            if (end == v || *end || !(o >= 0.0 && o <= 0.95))
                return cli_usage_error("predict: --overlap wants a number from 0 to 0.95, not "
                                       "'%s'",
                                       v);
            a->overlap = o > 0.0 ? o : -1.0; /* the API's "none" */
        } else if (strcmp(s, "--backend") == 0) {
            if (!cli_parse_backend(argv[++i], &a->model_opts.backend))
                return cli_usage_error("predict: --backend wants cpu or cuda, not '%s'", v);
        } else {
            return cli_usage_error(s[0] == '-' ? "predict: unknown option '%s'"
                                               : "predict: unexpected argument '%s'",
                                   s);
        }
    }
    if (list_mode) {
        if (a->n_inputs || a->out.seg || a->n_series)
            return cli_usage_error("predict: %s", "--list takes the inputs and outputs from the "
                                                  "list; -i and -o are for one case");
        if (!a->n_models || !a->out_dir)
            return cli_usage_error("predict: %s", "--list needs --model and --out-dir");
        return 0;
    }
    if (a->out_dir || a->ref_column || a->overwrite)
        return cli_usage_error("predict: %s", "--out-dir, --ref-column and --overwrite go with "
                                              "--list");
    if (!a->n_models || !a->n_inputs || !a->out.seg)
        return cli_usage_error("predict: %s", "--model, -i and -o are required");
    return 0;
}

/* Every output differs from every input and from the other outputs, and
 * can be created: checked before the minutes of work whose results the
 * outputs would hold. */
static int check_outputs(const predict_args *a)
{
    const char *outs[6] = {a->out.seg, a->out.prob,    a->out.regions,
                           a->out.unc, a->out.preview, a->out.dicom_seg};
    const char *what[6] = {"-o",        "--probabilities", "--regions", "--uncertainty",
                           "--preview", "--dicom-seg"};
    for (int i = 0; i < 6; i++) {
        if (!outs[i]) continue;
        for (int j = 0; j < a->n_inputs; j++)
            if (strcmp(outs[i], a->inputs[j]) == 0 ||
                segmamba_file_is_same(outs[i], a->inputs[j])) {
                fprintf(stderr, "segmamba: error: %s %s is an input; refusing to overwrite it\n",
                        what[i], outs[i]);
                return SEGMAMBA_E_ARG;
            }
        for (int j = 0; j < a->n_models; j++)
            if (strcmp(outs[i], a->models[j]) == 0 ||
                segmamba_file_is_same(outs[i], a->models[j])) {
                fprintf(stderr, "segmamba: error: %s %s is the model; refusing to overwrite it\n",
                        what[i], outs[i]);
                return SEGMAMBA_E_ARG;
            }
        for (int j = 0; j < i; j++)
            if (outs[j] &&
                (strcmp(outs[i], outs[j]) == 0 || segmamba_file_is_same(outs[i], outs[j]))) {
                fprintf(stderr, "segmamba: error: %s and %s both write %s\n", what[j], what[i],
                        outs[i]);
                return SEGMAMBA_E_ARG;
            }
        const segmamba_status st = segmamba_file_check_writable(outs[i]);
        if (st != SEGMAMBA_OK) return cli_fail(st);
    }
    return 0;
}

static void print_summary(const predict_args *a, const segmamba_card *card,
                          const segmamba_volume *vol, const segmamba_prediction *p, double seconds)
{
    int64_t count[256] = {0};
    const size_t n = (size_t)vol->d * vol->h * vol->w;
    for (size_t i = 0; i < n; i++) count[p->labels[i]]++;
    fprintf(stderr,
            "segmamba: %dx%dx%d, crop [%d:%d, %d:%d, %d:%d], %d windows in %.1f s; wrote %s\n",
            vol->d, vol->h, vol->w, p->box[0][0], p->box[0][1], p->box[1][0], p->box[1][1],
            p->box[2][0], p->box[2][1], p->windows, seconds, a->out.seg);
    if (segmamba_card_get_writes_masks(card)) {
        fprintf(stderr, "segmamba: voxels per mask (they overlap):");
        for (int c = 0; c < p->n_masks; c++) {
            int64_t on = 0;
            for (size_t i = 0; i < n; i++) on += p->masks[(size_t)c * n + i];
            fprintf(stderr, " %s %lld", card->labels[c + 1], (long long)on);
        }
        fprintf(stderr, "\n");
        return;
    }
    fprintf(stderr, "segmamba: voxels per label:");
    for (int l = 0; l < card->n_labels; l++)
        fprintf(stderr, " %s %lld", card->labels[l], (long long)count[l]);
    fprintf(stderr, "\n");
}

static int predict_cohort(const predict_args *a)
{
    cohort_options o = {.n_models = a->n_models,
                        .card = a->card,
                        .list = a->list,
                        .out_dir = a->out_dir,
                        .ref_column = a->ref_column,
                        .want_prob = a->out.prob != NULL,
                        .want_regions = a->out.regions != NULL,
                        .want_unc = a->out.unc != NULL,
                        .want_preview = a->out.preview != NULL,
                        .want_dicom_seg = a->out.dicom_seg != NULL,
                        .overwrite = a->overwrite,
                        .no_tta = a->no_tta,
                        .overlap = a->overlap,
                        .threads = a->threads,
                        .quiet = a->quiet,
                        .model_opts = a->model_opts};
    memcpy(o.models, a->models, sizeof o.models);
    return cohort_main(&o);
}

int cmd_predict(int argc, char **argv)
{
    predict_args a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc < 0 ? 0 : rc;
    cli_catch_interrupt();
    if (a.list) return predict_cohort(&a);

    segmamba_card card;
    segmamba_model *m[CASE_MAX_MODELS] = {NULL};
    const int nm = a.n_models;
    segmamba_status st = case_load_cards(a.models, nm, a.card, &a.model_opts, &card, m);
    if (st != SEGMAMBA_OK) return cli_fail(st);
    const int n_given = a.n_series > a.n_inputs ? a.n_series : a.n_inputs;
    if (n_given != card.n_channels && n_given != 1) {
        case_close_models(m, nm);
        char list[SEGMAMBA_CARD_MAX_CHANNELS * SEGMAMBA_CARD_NAME_MAX];
        fprintf(stderr,
                "segmamba: error: %d inputs given; the model card (%s) wants %d, in the "
                "order%s\n",
                n_given, card.origin, card.n_channels, case_channel_list(&card, list, sizeof list));
        return SEGMAMBA_E_ARG;
    }
    st = case_check_names(&card, a.inputs, a.n_inputs);
    if (st == SEGMAMBA_OK) st = case_check_regions(&card, a.out.regions != NULL);
    if (st == SEGMAMBA_OK && (rc = check_outputs(&a))) st = SEGMAMBA_E_ARG;
    if (st != SEGMAMBA_OK) {
        case_close_models(m, nm);
        return rc ? rc : cli_fail(st);
    }
    segmamba_set_threads(a.threads);

    segmamba_volume vol = {0};
    segmamba_dicom_source *src = NULL;
    st = case_read_input(a.inputs, a.n_inputs, a.series, a.n_series, &vol, &src);
    if (st == SEGMAMBA_OK && a.out.dicom_seg && !src)
        st = cli_error(SEGMAMBA_E_ARG, "--dicom-seg needs DICOM input (folders), not %s",
                       a.inputs[0]);
    if (st == SEGMAMBA_OK) st = case_check_channels(&card, &vol, a.inputs[0]);
    if (st != SEGMAMBA_OK) {
        segmamba_volume_free(&vol);
        segmamba_dicom_source_free(src);
        case_close_models(m, nm);
        return cli_fail(st);
    }

    st = case_open_models(a.models, nm, &card, &a.model_opts, m);

    progress prog = {.quiet = a.quiet, .tty = isatty(2), .start = cli_now(), .last_decile = -1};
    segmamba_predict_options popt = {.no_tta = a.no_tta,
                                     .overlap = a.overlap,
                                     .want_probabilities = a.out.prob != NULL,
                                     .want_regions = a.out.regions != NULL,
                                     .want_uncertainty = a.out.unc != NULL,
                                     .progress = on_progress,
                                     .progress_user = &prog};
    segmamba_prediction pred = {0};
    if (st == SEGMAMBA_OK) st = segmamba_predict_ensemble(m, nm, &card, &vol, &popt, &pred);
    const double seconds = cli_now() - prog.start;
    case_close_models(m, nm);
    if (st == SEGMAMBA_OK) st = case_write_outputs(&a.out, &card, &vol, &pred, src);
    if (st == SEGMAMBA_OK && !a.quiet) print_summary(&a, &card, &vol, &pred, seconds);
    segmamba_prediction_free(&pred);
    segmamba_volume_free(&vol);
    segmamba_dicom_source_free(src);
    return st == SEGMAMBA_OK ? 0 : cli_fail(st);
}
