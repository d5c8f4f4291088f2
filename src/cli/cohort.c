/* segmamba predict --list: a cohort through one loaded model.
 *
 * The list is a CSV file (RFC 4180 with a header row): a column "id", one
 * column per card channel named like it (or one column "image" holding 4D
 * files), optionally a reference column, anything else ignored. Each case
 * writes DIR/<id>.nii.gz (and DIR/<kind>/<id>.* for the optional outputs);
 * DIR/summary.csv is rewritten atomically after every case, so it is always
 * a whole file, in list order, with running means. A case whose outputs all
 * exist is skipped (its metrics still computed from them), unless
 * --overwrite. Under an MPI launcher the ranks share the cases
 * (cohort_mpi.c); these files do not know about MPI.
 *
 * This file: set-up (cohort_open/close), one case and the command;
 * cohort_list.c loads the list (its CSV reader is csv.c), cohort_summary.c
 * scores cases and writes the summary; cohort_internal.h is what they
 * share. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cohort_internal.h"

/* The optional outputs' subfolders of --out-dir, in case_outputs order
 * after the label map. */
static const char *const out_kind[5] = {"probabilities", "regions", "uncertainty", "preview",
                                        "dicom-seg"};
static const char *const out_ext[5] = {".nii.gz", ".nii.gz", ".nii.gz", ".png", ".dcm"};

char *cohort_join(const char *a, const char *sep, const char *b, const char *ext)
{
    const size_t n = strlen(a) + strlen(sep) + strlen(b) + strlen(ext) + 1;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s%s%s%s", a, sep, b, ext);
    return s;
}

/* ---- set-up -------------------------------------------------------------- */

/* mkdir -p. */
static segmamba_status make_dirs(const char *path)
{
    char *p = cohort_join("", "", path, "");
    if (!p) return cli_error(SEGMAMBA_E_NOMEM, "out of memory");
    segmamba_status st = SEGMAMBA_OK;
    for (char *s = p + 1;; s++) {
        if (*s && *s != '/') continue;
        const char save = *s;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            st = cli_error(SEGMAMBA_E_IO, "%s: cannot create folder %s: %s", path, p,
                           strerror(errno));
            break;
        }
        *s = save;
        if (!save) break;
    }
    free(p);
    struct stat sb;
    if (st == SEGMAMBA_OK && (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)))
        st = cli_error(SEGMAMBA_E_IO, "%s: not a folder", path);
    return st;
}

/* BraTS TC, WT, ET for a BraTS card (as `segmamba metrics` scores), else
 * one region per label but the background, named after it. */
static void choose_regions(cohort *c)
{
    const segmamba_card *card = &c->card;
    if ((card->output == SEGMAMBA_OUTPUT_REGIONS && card->n_regions == 0) ||
        (card->output == SEGMAMBA_OUTPUT_ARGMAX && card->n_labels == 4)) {
        segmamba_region_init_brats(c->regions);
        c->n_regions = 3;
        return;
    }
    c->n_regions = 0;
    for (int l = 1; l < card->n_labels; l++) {
        const uint8_t label = (uint8_t)l;
        segmamba_region_init(&c->regions[c->n_regions++], card->labels[l], &label, 1);
    }
}

segmamba_status cohort_open(const cohort_options *o, int leader, cohort **out)
{
    *out = NULL;
    cohort *c = calloc(1, sizeof *c);
    if (!c) return cli_error(SEGMAMBA_E_NOMEM, "out of memory");
    c->o = *o;
    c->leader = leader;
    segmamba_status st =
        case_load_cards(o->models, o->n_models, o->card, &o->model_opts, &c->card, c->models);
    if (st == SEGMAMBA_OK) st = case_check_regions(&c->card, o->want_regions);
    if (st == SEGMAMBA_OK) st = cohort_load_list(c);
    if (st == SEGMAMBA_OK) choose_regions(c);
    if (st == SEGMAMBA_OK && leader) {
        st = make_dirs(o->out_dir);
        const int want[5] = {o->want_prob, o->want_regions, o->want_unc, o->want_preview,
                             o->want_dicom_seg};
        for (int k = 0; k < 5 && st == SEGMAMBA_OK; k++) {
            if (!want[k]) continue;
            char *sub = cohort_join(o->out_dir, "/", out_kind[k], "");
            st = sub ? make_dirs(sub) : cli_error(SEGMAMBA_E_NOMEM, "out of memory");
            free(sub);
        }
        c->summary = cohort_join(o->out_dir, "/", "summary", ".csv");
        c->results = calloc((size_t)(c->n ? c->n : 1), sizeof *c->results);
        if (st == SEGMAMBA_OK && (!c->summary || !c->results))
            st = cli_error(SEGMAMBA_E_NOMEM, "out of memory");
        if (st == SEGMAMBA_OK &&
            (strcmp(c->summary, o->list) == 0 || segmamba_file_is_same(c->summary, o->list)))
            st = cli_error(SEGMAMBA_E_ARG,
                           "%s: the list is where the summary goes; move it out of "
                           "--out-dir or rename it",
                           o->list);
        if (st == SEGMAMBA_OK) st = cohort_write_summary(c);
    }
    if (st == SEGMAMBA_OK) {
        segmamba_set_threads(o->threads);
        st = case_open_models(o->models, o->n_models, &c->card, &o->model_opts, c->models);
    }
    if (st != SEGMAMBA_OK) {
        cohort_close(c);
        return st;
    }
    *out = c;
    return SEGMAMBA_OK;
}

void cohort_close(cohort *c)
{
    if (!c) return;
    case_close_models(c->models, c->o.n_models);
    for (int i = 0; c->cases && i < c->n; i++) {
        for (int k = 0; k < SEGMAMBA_CARD_MAX_CHANNELS; k++) free(c->cases[i].inputs[k]);
        free(c->cases[i].ref);
    }
    free(c->cases);
    free(c->text);
    free(c->results);
    free(c->summary);
    free(c);
}

int cohort_size(const cohort *c) { return c->n; }

/* ---- one case ------------------------------------------------------------ */

typedef struct out_files {
    char *path[6]; /* label map, then out_kind's; NULL when not wanted */
} out_files;

static void out_files_free(out_files *f)
{
    for (int k = 0; k < 6; k++) free(f->path[k]);
}

static segmamba_status out_files_make(const cohort *c, const char *id, out_files *f)
{
    memset(f, 0, sizeof *f);
    const int want[5] = {c->o.want_prob, c->o.want_regions, c->o.want_unc, c->o.want_preview,
                         c->o.want_dicom_seg};
    f->path[0] = cohort_join(c->o.out_dir, "/", id, ".nii.gz");
    int ok = f->path[0] != NULL;
    for (int k = 0; k < 5 && ok; k++) {
        if (!want[k]) continue;
        char *sub = cohort_join(c->o.out_dir, "/", out_kind[k], "/");
        f->path[k + 1] = sub ? cohort_join(sub, "", id, out_ext[k]) : NULL;
        ok = f->path[k + 1] != NULL;
        free(sub);
    }
    if (!ok) {
        out_files_free(f);
        return cli_error(SEGMAMBA_E_NOMEM, "out of memory");
    }
    return SEGMAMBA_OK;
}

static int same(const char *a, const char *b)
{
    return a && b && (strcmp(a, b) == 0 || segmamba_file_is_same(a, b));
}

/* An output over one of the case's files (an input, the reference, the
 * model, the list) is refused. */
static segmamba_status check_clobber(const cohort *c, const cohort_case *cs, const out_files *f)
{
    for (int k = 0; k < 6; k++) {
        if (!f->path[k]) continue;
        const char *hit = NULL;
        for (int i = 0; i < c->n_inputs && !hit; i++)
            if (same(f->path[k], cs->inputs[i])) hit = "an input";
        if (!hit && same(f->path[k], cs->ref)) hit = "the reference";
        for (int m = 0; m < c->o.n_models && !hit; m++)
            if (same(f->path[k], c->o.models[m])) hit = "the model";
        if (!hit && same(f->path[k], c->o.list)) hit = "the list";
        if (hit)
            return cli_error(SEGMAMBA_E_ARG, "output %s is %s; refusing to overwrite it",
                             f->path[k], hit);
    }
    return SEGMAMBA_OK;
}

static int all_exist(const out_files *f)
{
    for (int k = 0; k < 6; k++) {
        struct stat sb;
        if (f->path[k] && (stat(f->path[k], &sb) != 0 || !S_ISREG(sb.st_mode))) return 0;
    }
    return 1;
}

typedef struct poll_ctx {
    cohort_poll_fn fn;
    void *user;
} poll_ctx;

static int on_window(void *user, int done, int total)
{
    (void)done;
    (void)total;
    const poll_ctx *p = user;
    if (p->fn) p->fn(p->user);
    return cli_interrupted();
}

/* Reads, segments and writes one case; E_ARG-style refusals come first so
 * that nothing is computed for a case that cannot be written. */
static segmamba_status segment(cohort *c, const cohort_case *cs, const out_files *f,
                               cohort_result *r, const poll_ctx *poll)
{
    const segmamba_card *card = &c->card;
    for (int k = 0; k < c->n_inputs; k++)
        if (!cs->inputs[k])
            return cli_error(SEGMAMBA_E_ARG, "no file in column '%s'",
                             c->n_inputs == 1 ? "image" : card->channels[k]);
    CLI_TRY(case_check_names(card, (const char *const *)cs->inputs, c->n_inputs));
    segmamba_volume vol = {0};
    segmamba_dicom_source *src = NULL;
    segmamba_status st =
        case_read_input((const char *const *)cs->inputs, c->n_inputs, NULL, 0, &vol, &src);
    if (st == SEGMAMBA_OK && c->o.want_dicom_seg && !src)
        st = cli_error(SEGMAMBA_E_ARG, "--dicom-seg needs DICOM input (folders), not %s",
                       cs->inputs[0]);
    if (st == SEGMAMBA_OK) st = case_check_channels(card, &vol, cs->inputs[0]);
    const segmamba_predict_options popt = {.no_tta = c->o.no_tta,
                                           .overlap = c->o.overlap,
                                           .want_probabilities = c->o.want_prob,
                                           .want_regions = c->o.want_regions,
                                           .want_uncertainty = c->o.want_unc,
                                           .progress = on_window,
                                           .progress_user = (void *)poll};
    segmamba_prediction pred = {0};
    if (st == SEGMAMBA_OK)
        st = segmamba_predict_ensemble(c->models, c->o.n_models, card, &vol, &popt, &pred);
    const case_outputs outs = {f->path[0], f->path[1], f->path[2],
                               f->path[3], f->path[4], f->path[5]};
    if (st == SEGMAMBA_OK) st = case_write_outputs(&outs, card, &vol, &pred, src);
    r->state = st == SEGMAMBA_OK ? COHORT_OK : COHORT_FAILED;
    if (st == SEGMAMBA_OK && cs->ref) {
        st = cohort_score(c, cs, pred.labels, &vol.geom, r);
        if (st != SEGMAMBA_OK) cli_error_wrap(st, "reference");
    }
    segmamba_prediction_free(&pred);
    segmamba_volume_free(&vol);
    segmamba_dicom_source_free(src);
    return st;
}

/* The message as one line: CSV cell and log line. */
static void set_error(cohort_result *r, segmamba_status st)
{
    r->code = (int)st;
    snprintf(r->error, sizeof r->error, "%s", cli_last_error());
    cli_error_clear();
    for (char *p = r->error; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
}

void cohort_run_case(cohort *c, int index, cohort_result *r, cohort_poll_fn poll, void *user)
{
    memset(r, 0, sizeof *r);
    r->index = index;
    r->state = COHORT_FAILED;
    const double t0 = cli_now();
    const cohort_case *cs = &c->cases[index];
    const poll_ctx pc = {poll, user};
    out_files f;
    segmamba_status st = out_files_make(c, cs->id, &f);
    if (st == SEGMAMBA_OK) st = check_clobber(c, cs, &f);
    if (st == SEGMAMBA_OK && !c->o.overwrite && all_exist(&f)) {
        r->state = COHORT_SKIPPED;
        if (cs->ref && (st = cohort_score_existing(c, cs, f.path[0], r)) != SEGMAMBA_OK)
            cli_error_wrap(st, "reference");
    } else if (st == SEGMAMBA_OK) {
        st = segment(c, cs, &f, r, &pc);
    }
    if (st != SEGMAMBA_OK) set_error(r, st);
    r->seconds = cli_now() - t0;
    out_files_free(&f);
}

/* ---- the command ------------------------------------------------------------- */

/* The environment variables by which Open MPI's mpirun, MPICH's hydra and
 * Slurm's srun (PMI-2 or PMIx) tell a process it is one of a job's ranks. */
int cohort_under_mpi_launcher(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

#if !SM_HAVE_MPI
static int launcher_size(void)
{
    const char *s = getenv("OMPI_COMM_WORLD_SIZE");
    if (!s) s = getenv("PMI_SIZE");
    int n = 1;
    return s && cli_parse_int(s, 1, 1 << 30, &n) ? n : 1;
}
#endif

int cohort_main(const cohort_options *o)
{
#if SM_HAVE_MPI
    if (cohort_under_mpi_launcher()) return cohort_mpi_main(o);
#else
    if (launcher_size() > 1) {
        fprintf(stderr,
                "segmamba: error: started as one of %d MPI ranks, but this segmamba was "
                "built without MPI; every rank would run the whole list. Rebuild with "
                "-Dmpi=enabled (Debian: libopenmpi-dev)\n",
                launcher_size());
        return SEGMAMBA_E_UNSUPPORTED;
    }
#endif
    const double t0 = cli_now();
    cohort *c;
    segmamba_status st = cohort_open(o, 1, &c);
    if (st != SEGMAMBA_OK) return cli_fail(st);
    /* After a Ctrl-C the case under way fails as cancelled (nothing of it
     * written) and the rest are left for a later run to resume. */
    for (int i = 0; i < c->n && !cli_interrupted(); i++) {
        cohort_result r;
        cohort_run_case(c, i, &r, NULL, NULL);
        cohort_record(c, &r, -1);
    }
    const int rc = cohort_finish(c, cli_now() - t0, 1);
    cohort_close(c);
    return rc;
}
