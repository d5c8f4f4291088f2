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
 * (cohort_mpi.c); this file does not know about MPI. */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "cohort.h"

#define ID_MAX 200
#define MAX_COLUMNS 1024

typedef struct cohort_case {
    const char *id;
    char *inputs[SEGMAMBA_CARD_MAX_CHANNELS]; /* NULL for an empty cell */
    char *ref;                          /* NULL without a reference */
    int line;                           /* in the list, for messages */
} cohort_case;

struct cohort {
    cohort_options o;
    int leader;
    segmamba_card card;
    segmamba_model *model;
    char *text; /* the list, parsed in place: ids point into it */
    cohort_case *cases;
    int n, n_inputs;
    segmamba_region regions[COHORT_MAX_REGIONS];
    int n_regions;
    /* leader only */
    cohort_result *results;
    char *summary;
    int recorded, summary_failed;
};

/* The optional outputs' subfolders of --out-dir, in predict_outputs order
 * after the label map. */
static const char *const out_kind[4] = {"probabilities", "regions", "uncertainty", "preview"};

static char *join(const char *a, const char *sep, const char *b, const char *ext)
{
    const size_t n = strlen(a) + strlen(sep) + strlen(b) + strlen(ext) + 1;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s%s%s%s", a, sep, b, ext);
    return s;
}

/* ---- CSV ------------------------------------------------------------------ */

typedef struct csv_table {
    char **cells; /* row-major, n_rows x n_cols, pointing into the text */
    int *lines;   /* the line each row starts on */
    int n_rows, n_cols;
} csv_table;

static void csv_free(csv_table *t)
{
    free(t->cells);
    free(t->lines);
    memset(t, 0, sizeof *t);
}

static int is_blank(char ch) { return ch == ' ' || ch == '\t'; }

/* RFC 4180, parsed in place (text is NUL-terminated at len and rewritten):
 * fields separated by ',', records by LF, CRLF or CR; a field may be in
 * double quotes, inside which commas, line breaks and doubled quotes ("")
 * are text. Spaces and tabs around a field are dropped (quote a field to
 * keep them). Blank lines are skipped; every record must have as many fields
 * as the header. */
static segmamba_status csv_parse(const char *path, char *text, size_t len, csv_table *t)
{
    memset(t, 0, sizeof *t);
    if (len > INT_MAX / 2)
        return cli_error(SEGMAMBA_E_UNSUPPORTED, "%s: %zu bytes; a list is at most %d", path, len,
                       INT_MAX / 2);
    if (memchr(text, '\0', len))
        return cli_error(SEGMAMBA_E_FORMAT, "%s: holds a NUL byte; not a text CSV file", path);
    size_t r = len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0; /* UTF-8 BOM */
    size_t cap = 0, n_cells = 0;
    int line = 1, rows_cap = 0;
    segmamba_status st = SEGMAMBA_OK;
    while (r < len && st == SEGMAMBA_OK) {
        size_t q = r;
        while (q < len && is_blank(text[q])) q++;
        if (q == len || text[q] == '\n' || text[q] == '\r') { /* a blank line */
            r = q + (q < len) + (q + 1 < len && text[q] == '\r' && text[q + 1] == '\n');
            line++;
            continue;
        }
        const int row_line = line;
        int nf = 0;
        char delim;
        do {
            while (r < len && is_blank(text[r])) r++;
            char *field;
            if (text[r] == '"') {
                size_t w = ++r;
                field = text + w;
                for (;;) {
                    if (r >= len) {
                        st = cli_error(SEGMAMBA_E_FORMAT,
                                     "%s: line %d: a quoted field is not closed (a '\"' inside "
                                     "quotes is written \"\")",
                                     path, row_line);
                        break;
                    }
                    if (text[r] == '"' && text[r + 1] != '"') {
                        r++;
                        break;
                    }
                    if (text[r] == '\n' || (text[r] == '\r' && text[r + 1] != '\n')) line++;
                    text[w++] = text[r];
                    r += text[r] == '"' ? 2 : 1;
                }
                if (st != SEGMAMBA_OK) break;
                while (r < len && is_blank(text[r])) r++;
                delim = text[r];
                if (delim != ',' && delim != '\n' && delim != '\r' && delim != '\0') {
                    st = cli_error(SEGMAMBA_E_FORMAT,
                                 "%s: line %d: text after the closing quote of field %d", path,
                                 line, nf + 1);
                    break;
                }
                text[w] = '\0'; /* w < r: the closing quote was consumed */
            } else {
                field = text + r;
                while (r < len && text[r] != ',' && text[r] != '\n' && text[r] != '\r') {
                    if (text[r] == '"') {
                        st = cli_error(SEGMAMBA_E_FORMAT,
                                     "%s: line %d: a '\"' inside unquoted field %d; put the "
                                     "whole field in quotes and double the quote",
                                     path, line, nf + 1);
                        break;
                    }
                    r++;
                }
                if (st != SEGMAMBA_OK) break;
                delim = text[r];
                size_t e = r;
                while (text + e > field && is_blank(text[e - 1])) e--;
                text[e] = '\0';
            }
            if (n_cells == cap) {
                cap = cap ? 2 * cap : 64;
                char **grown = realloc(t->cells, cap * sizeof *grown);
                if (!grown) {
                    st = cli_error(SEGMAMBA_E_NOMEM, "%s: out of memory", path);
                    break;
                }
                t->cells = grown;
            }
            t->cells[n_cells++] = field;
            nf++;
            if (r < len) r++; /* the delimiter */
            if (delim == '\r' && r < len && text[r] == '\n') r++;
        } while (delim == ',');
        if (st != SEGMAMBA_OK) break;
        line++;
        if (t->n_rows == 0) {
            t->n_cols = nf;
        } else if (nf != t->n_cols) {
            st = cli_error(SEGMAMBA_E_FORMAT, "%s: line %d has %d fields; the header has %d", path,
                         row_line, nf, t->n_cols);
            break;
        }
        if (t->n_rows == rows_cap) {
            rows_cap = rows_cap ? 2 * rows_cap : 64;
            int *grown = realloc(t->lines, (size_t)rows_cap * sizeof *grown);
            if (!grown) {
                st = cli_error(SEGMAMBA_E_NOMEM, "%s: out of memory", path);
                break;
            }
            t->lines = grown;
        }
        t->lines[t->n_rows++] = row_line;
    }
    if (st == SEGMAMBA_OK && t->n_rows == 0)
        st = cli_error(SEGMAMBA_E_FORMAT, "%s: empty; a header row is needed", path);
    if (st != SEGMAMBA_OK) csv_free(t);
    return st;
}

/* Appends s as one CSV field, quoted when it holds a comma, quote, line
 * break or surrounding space. */
static void csv_out_field(cli_text *o, const char *s, int first)
{
    const size_t n = strlen(s);
    const int quote = strpbrk(s, ",\"\r\n") || (n && (is_blank(s[0]) || is_blank(s[n - 1])));
    cli_text_printf(o, "%s%s", first ? "" : ",", quote ? "\"" : "");
    for (const char *p = s; *p; p++) cli_text_printf(o, *p == '"' ? "\"\"" : "%c", *p);
    if (quote) cli_text_printf(o, "\"");
}

/* ---- the list ---------------------------------------------------------------- */

static int column(const csv_table *t, const char *name)
{
    for (int j = 0; j < t->n_cols; j++)
        if (strcmp(t->cells[j], name) == 0) return j;
    return -1;
}

/* Ids become file names: letters, digits, '.', '-', '_'; no leading '.',
 * no "..". */
static int valid_id(const char *s)
{
    const size_t n = strlen(s);
    if (n == 0 || n > ID_MAX || s[0] == '.' || strstr(s, "..")) return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '-' || *p == '_'))
            return 0;
    return 1;
}

/* A cell as a path: NULL when empty, relative paths taken from the list's
 * folder. */
static segmamba_status cell_path(const char *dir, const char *cell, char **out)
{
    *out = NULL;
    if (!cell[0]) return SEGMAMBA_OK;
    *out = cell[0] == '/' || !dir[0] ? join("", "", cell, "") : join(dir, "/", cell, "");
    return *out ? SEGMAMBA_OK : cli_error(SEGMAMBA_E_NOMEM, "out of memory for the case list");
}

static const cohort_case *sort_base;
static int by_id(const void *a, const void *b)
{
    return strcmp(sort_base[*(const int *)a].id, sort_base[*(const int *)b].id);
}

static segmamba_status check_unique_ids(const char *path, const cohort_case *cases, int n)
{
    int *order = malloc((size_t)(n ? n : 1) * sizeof *order);
    if (!order) return cli_error(SEGMAMBA_E_NOMEM, "%s: out of memory", path);
    for (int i = 0; i < n; i++) order[i] = i;
    sort_base = cases;
    qsort(order, (size_t)n, sizeof *order, by_id);
    segmamba_status st = SEGMAMBA_OK;
    for (int i = 1; i < n && st == SEGMAMBA_OK; i++) {
        const cohort_case *a = &cases[order[i - 1]], *b = &cases[order[i]];
        if (strcmp(a->id, b->id) == 0)
            st = cli_error(SEGMAMBA_E_FORMAT, "%s: lines %d and %d both have id '%s'", path,
                         a->line < b->line ? a->line : b->line,
                         a->line < b->line ? b->line : a->line, a->id);
    }
    free(order);
    return st;
}

static segmamba_status load_list(cohort *c)
{
    const char *path = c->o.list;
    size_t len;
    CLI_TRY(segmamba_file_read(path, (unsigned char **)&c->text, &len));
    csv_table t;
    CLI_TRY(csv_parse(path, c->text, len, &t));
    if (t.n_cols > MAX_COLUMNS) {
        csv_free(&t);
        return cli_error(SEGMAMBA_E_UNSUPPORTED, "%s: the header has %d columns; at most %d", path,
                       t.n_cols, MAX_COLUMNS);
    }
    for (int j = 0; j < t.n_cols; j++)
        for (int k = 0; k < j; k++)
            if (t.cells[j][0] && strcmp(t.cells[j], t.cells[k]) == 0) {
                segmamba_status st = cli_error(SEGMAMBA_E_FORMAT, "%s: two columns are named '%s'", path,
                                       t.cells[j]);
                csv_free(&t);
                return st;
            }
    const segmamba_card *card = &c->card;
    int col_id = column(&t, "id"), col_in[SEGMAMBA_CARD_MAX_CHANNELS], missing = -1;
    for (int ch = 0; ch < card->n_channels; ch++)
        if ((col_in[ch] = column(&t, card->channels[ch])) < 0 && missing < 0) missing = ch;
    c->n_inputs = card->n_channels;
    if (missing >= 0 && (col_in[0] = column(&t, "image")) >= 0) {
        c->n_inputs = 1;
        missing = -1;
    }
    const int col_ref = c->o.ref_column ? column(&t, c->o.ref_column) : -1;
    segmamba_status st = SEGMAMBA_OK;
    if (col_id < 0 || missing >= 0) {
        char want[SEGMAMBA_CARD_MAX_CHANNELS * SEGMAMBA_CARD_NAME_MAX];
        size_t used = 0;
        want[0] = '\0';
        for (int ch = 0; ch < card->n_channels && used < sizeof want; ch++)
            used += (size_t)snprintf(want + used, sizeof want - used, ",%s", card->channels[ch]);
        st = cli_error(SEGMAMBA_E_FORMAT,
                     "%s: the header has no column '%s'; it needs id%s (the model card's "
                     "channels, %s) or id,image (one 4D file per case)",
                     path, col_id < 0 ? "id" : card->channels[missing], want, card->origin);
    } else if (c->o.ref_column && col_ref < 0) {
        st = cli_error(SEGMAMBA_E_ARG, "%s: --ref-column %s: the header has no such column", path,
                     c->o.ref_column);
    }
    c->n = t.n_rows - 1;
    if (st == SEGMAMBA_OK && !(c->cases = calloc((size_t)(c->n ? c->n : 1), sizeof *c->cases)))
        st = cli_error(SEGMAMBA_E_NOMEM, "%s: out of memory", path);
    char *dir = NULL;
    if (st == SEGMAMBA_OK) {
        const char *slash = strrchr(path, '/');
        dir = slash ? join("", "", path, "") : join("", "", "", "");
        if (!dir) st = cli_error(SEGMAMBA_E_NOMEM, "%s: out of memory", path);
        else if (slash) dir[slash == path ? 1 : slash - path] = '\0';
    }
    for (int i = 0; i < c->n && st == SEGMAMBA_OK; i++) {
        char **row = t.cells + (size_t)(i + 1) * t.n_cols;
        cohort_case *cs = &c->cases[i];
        cs->id = row[col_id];
        cs->line = t.lines[i + 1];
        if (!valid_id(cs->id)) {
            st = cli_error(SEGMAMBA_E_FORMAT,
                         "%s: line %d: id '%s' is not usable as a file name: ids are 1 to %d "
                         "letters, digits, '.', '-' or '_', not starting with '.' and without "
                         "'..'",
                         path, cs->line, cs->id, ID_MAX);
            break;
        }
        for (int k = 0; k < c->n_inputs && st == SEGMAMBA_OK; k++)
            st = cell_path(dir, row[col_in[k]], &cs->inputs[k]);
        if (st == SEGMAMBA_OK && col_ref >= 0) st = cell_path(dir, row[col_ref], &cs->ref);
    }
    free(dir);
    if (st == SEGMAMBA_OK) st = check_unique_ids(path, c->cases, c->n);
    csv_free(&t);
    return st;
}

/* ---- set-up -------------------------------------------------------------- */

/* mkdir -p. */
static segmamba_status make_dirs(const char *path)
{
    char *p = join("", "", path, "");
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
    if (card->output == SEGMAMBA_OUTPUT_REGIONS || card->n_labels == 4) {
        segmamba_regions_brats(c->regions);
        c->n_regions = 3;
        return;
    }
    c->n_regions = 0;
    for (int l = 1; l < card->n_labels; l++) {
        const uint8_t label = (uint8_t)l;
        segmamba_region_set(&c->regions[c->n_regions++], card->labels[l], &label, 1);
    }
}

static segmamba_status write_summary(cohort *c);

segmamba_status cohort_open(const cohort_options *o, int leader, cohort **out)
{
    *out = NULL;
    cohort *c = calloc(1, sizeof *c);
    if (!c) return cli_error(SEGMAMBA_E_NOMEM, "out of memory");
    c->o = *o;
    c->leader = leader;
    segmamba_status st = predict_load_card(o->model, o->card, &c->card);
    if (st == SEGMAMBA_OK) st = predict_check_regions(&c->card, o->want_regions);
    if (st == SEGMAMBA_OK) st = load_list(c);
    if (st == SEGMAMBA_OK) choose_regions(c);
    if (st == SEGMAMBA_OK && leader) {
        st = make_dirs(o->out_dir);
        const int want[4] = {o->want_prob, o->want_regions, o->want_unc, o->want_preview};
        for (int k = 0; k < 4 && st == SEGMAMBA_OK; k++) {
            if (!want[k]) continue;
            char *sub = join(o->out_dir, "/", out_kind[k], "");
            st = sub ? make_dirs(sub) : cli_error(SEGMAMBA_E_NOMEM, "out of memory");
            free(sub);
        }
        c->summary = join(o->out_dir, "/", "summary", ".csv");
        c->results = calloc((size_t)(c->n ? c->n : 1), sizeof *c->results);
        if (st == SEGMAMBA_OK && (!c->summary || !c->results))
            st = cli_error(SEGMAMBA_E_NOMEM, "out of memory");
        if (st == SEGMAMBA_OK &&
            (strcmp(c->summary, o->list) == 0 || segmamba_same_file(c->summary, o->list)))
            st = cli_error(SEGMAMBA_E_ARG, "%s: the list is where the summary goes; move it out of "
                                         "--out-dir or rename it",
                         o->list);
        if (st == SEGMAMBA_OK) st = write_summary(c);
    }
    if (st == SEGMAMBA_OK) {
        segmamba_set_threads(o->threads);
        st = predict_open_model(o->model, &c->card, &o->conv, &c->model);
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
    segmamba_close(c->model);
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

typedef struct case_files {
    char *path[5]; /* label map, then out_kind's; NULL when not wanted */
} case_files;

static void case_files_free(case_files *f)
{
    for (int k = 0; k < 5; k++) free(f->path[k]);
}

static segmamba_status case_files_make(const cohort *c, const char *id, case_files *f)
{
    memset(f, 0, sizeof *f);
    const int want[4] = {c->o.want_prob, c->o.want_regions, c->o.want_unc, c->o.want_preview};
    f->path[0] = join(c->o.out_dir, "/", id, ".nii.gz");
    int ok = f->path[0] != NULL;
    for (int k = 0; k < 4 && ok; k++) {
        if (!want[k]) continue;
        char *sub = join(c->o.out_dir, "/", out_kind[k], "/");
        f->path[k + 1] = sub ? join(sub, "", id, k == 3 ? ".png" : ".nii.gz") : NULL;
        ok = f->path[k + 1] != NULL;
        free(sub);
    }
    if (!ok) {
        case_files_free(f);
        return cli_error(SEGMAMBA_E_NOMEM, "out of memory");
    }
    return SEGMAMBA_OK;
}

static int same(const char *a, const char *b)
{
    return a && b && (strcmp(a, b) == 0 || segmamba_same_file(a, b));
}

/* An output over one of the case's files (an input, the reference, the
 * model, the list) is refused. */
static segmamba_status check_clobber(const cohort *c, const cohort_case *cs, const case_files *f)
{
    for (int k = 0; k < 5; k++) {
        if (!f->path[k]) continue;
        const char *hit = NULL;
        for (int i = 0; i < c->n_inputs && !hit; i++)
            if (same(f->path[k], cs->inputs[i])) hit = "an input";
        if (!hit && same(f->path[k], cs->ref)) hit = "the reference";
        if (!hit && same(f->path[k], c->o.model)) hit = "the model";
        if (!hit && same(f->path[k], c->o.list)) hit = "the list";
        if (hit)
            return cli_error(SEGMAMBA_E_ARG, "output %s is %s; refusing to overwrite it",
                           f->path[k], hit);
    }
    return SEGMAMBA_OK;
}

static int all_exist(const case_files *f)
{
    for (int k = 0; k < 5; k++) {
        struct stat sb;
        if (f->path[k] && (stat(f->path[k], &sb) != 0 || !S_ISREG(sb.st_mode))) return 0;
    }
    return 1;
}

/* Dice and HD95 of labels (with geometry geom) against the case's
 * reference. */
static segmamba_status score(const cohort *c, const cohort_case *cs, const uint8_t *labels,
                       const segmamba_geometry *geom, cohort_result *r)
{
    segmamba_volume ref = {0};
    uint8_t *lr = NULL;
    segmamba_status st = segmamba_nifti_read(cs->ref, &ref);
    if (st == SEGMAMBA_OK) st = segmamba_volume_labels(&ref, cs->ref, &lr);
    char why[256];
    if (st == SEGMAMBA_OK && segmamba_geometry_differs(geom, &ref.geom, why, sizeof why))
        st = cli_error(SEGMAMBA_E_SHAPE, "%s: %s from the case's images", cs->ref, why);
    segmamba_region_score s[COHORT_MAX_REGIONS];
    if (st == SEGMAMBA_OK)
        st = segmamba_metrics_regions(labels, lr, geom->d, geom->h, geom->w, geom->spacing, c->regions,
                                c->n_regions, 0, s);
    if (st == SEGMAMBA_OK) {
        for (int k = 0; k < c->n_regions; k++) {
            r->dice[k] = s[k].dice;
            r->hd95[k] = s[k].hd95;
        }
        r->scored = 1;
    }
    free(lr);
    segmamba_volume_free(&ref);
    return st;
}

/* Metrics of a skipped case, from the label map it already has. */
static segmamba_status score_existing(const cohort *c, const cohort_case *cs, const char *seg,
                                cohort_result *r)
{
    segmamba_volume v = {0};
    uint8_t *labels = NULL;
    segmamba_status st = segmamba_nifti_read(seg, &v);
    if (st == SEGMAMBA_OK) st = segmamba_volume_labels(&v, seg, &labels);
    if (st == SEGMAMBA_OK) st = score(c, cs, labels, &v.geom, r);
    free(labels);
    segmamba_volume_free(&v);
    return st;
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
static segmamba_status segment(cohort *c, const cohort_case *cs, const case_files *f, cohort_result *r,
                         const poll_ctx *poll)
{
    const segmamba_card *card = &c->card;
    for (int k = 0; k < c->n_inputs; k++)
        if (!cs->inputs[k])
            return cli_error(SEGMAMBA_E_ARG, "no file in column '%s'",
                           c->n_inputs == 1 ? "image" : card->channels[k]);
    CLI_TRY(predict_check_names(card, (const char *const *)cs->inputs, c->n_inputs));
    segmamba_volume vol = {0};
    segmamba_status st = segmamba_nifti_read_channels((const char *const *)cs->inputs, c->n_inputs, &vol);
    if (st == SEGMAMBA_OK)
        st = segmamba_volume_check_finite(&vol, (const char *const *)cs->inputs, c->n_inputs);
    if (st == SEGMAMBA_OK) st = predict_check_channels(card, &vol, cs->inputs[0]);
    const segmamba_predict_options popt = {.no_tta = c->o.no_tta,
                                     .want_probabilities = c->o.want_prob,
                                     .want_regions = c->o.want_regions,
                                     .want_uncertainty = c->o.want_unc,
                                     .progress = on_window,
                                     .progress_user = (void *)poll};
    segmamba_prediction pred = {0};
    if (st == SEGMAMBA_OK) st = segmamba_predict(c->model, card, &vol, &popt, &pred);
    const predict_outputs outs = {f->path[0], f->path[1], f->path[2], f->path[3], f->path[4]};
    if (st == SEGMAMBA_OK) st = predict_write_outputs(&outs, card, &vol, &pred);
    r->state = st == SEGMAMBA_OK ? COHORT_OK : COHORT_FAILED;
    if (st == SEGMAMBA_OK && cs->ref) {
        st = score(c, cs, pred.labels, &vol.geom, r);
        if (st != SEGMAMBA_OK) cli_error_wrap(st, "reference");
    }
    segmamba_prediction_free(&pred);
    segmamba_volume_free(&vol);
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
    case_files f;
    segmamba_status st = case_files_make(c, cs->id, &f);
    if (st == SEGMAMBA_OK) st = check_clobber(c, cs, &f);
    if (st == SEGMAMBA_OK && !c->o.overwrite && all_exist(&f)) {
        r->state = COHORT_SKIPPED;
        if (cs->ref && (st = score_existing(c, cs, f.path[0], r)) != SEGMAMBA_OK)
            cli_error_wrap(st, "reference");
    } else if (st == SEGMAMBA_OK) {
        st = segment(c, cs, &f, r, &pc);
    }
    if (st != SEGMAMBA_OK) set_error(r, st);
    r->seconds = cli_now() - t0;
    case_files_free(&f);
}

/* ---- the summary ------------------------------------------------------------ */

static const char *state_name(int s)
{
    return s == COHORT_OK ? "ok" : s == COHORT_SKIPPED ? "skipped" : "failed";
}

static void summary_number(cli_text *o, const char *fmt, double v, int present)
{
    if (present) cli_text_printf(o, fmt, v);
    else cli_text_printf(o, ",");
}

/* id, status, seconds, error, then with a reference column <region>_dice,
 * <region>_hd95 per region and the case's mean_dice, mean_hd95; the
 * cases done so far in list order, then a row "(mean)" (no id can hold
 * parentheses): mean seconds of the cases segmented, mean metrics of the
 * cases scored. */
static segmamba_status write_summary(cohort *c)
{
    const int nr = c->o.ref_column ? c->n_regions : 0;
    cli_text o;
    segmamba_status st = cli_text_open(&o);
    cli_text_printf(&o, "id,status,seconds,error");
    for (int k = 0; k < nr; k++) {
        char name[64];
        snprintf(name, sizeof name, "%s_dice", c->regions[k].name);
        csv_out_field(&o, name, 0);
        snprintf(name, sizeof name, "%s_hd95", c->regions[k].name);
        csv_out_field(&o, name, 0);
    }
    if (nr) cli_text_printf(&o, ",mean_dice,mean_hd95");
    cli_text_printf(&o, "\n");
    double sum_s = 0, sum_d[COHORT_MAX_REGIONS + 1] = {0}, sum_h[COHORT_MAX_REGIONS + 1] = {0};
    int ran = 0, scored = 0;
    for (int i = 0; i < c->n; i++) {
        const cohort_result *r = &c->results[i];
        if (r->state == COHORT_PENDING) continue;
        csv_out_field(&o, c->cases[i].id, 1);
        cli_text_printf(&o, ",%s", state_name(r->state));
        summary_number(&o, ",%.3f", r->seconds, r->state != COHORT_SKIPPED);
        csv_out_field(&o, r->error, 0);
        if (r->state == COHORT_OK) {
            sum_s += r->seconds;
            ran++;
        }
        double dice[COHORT_MAX_REGIONS + 1], hd95[COHORT_MAX_REGIONS + 1];
        dice[nr] = hd95[nr] = 0;
        for (int k = 0; k < nr; k++) {
            dice[k] = r->dice[k];
            hd95[k] = r->hd95[k];
            dice[nr] += r->dice[k] / nr;
            hd95[nr] += r->hd95[k] / nr;
        }
        for (int k = 0; k <= nr && nr; k++) {
            summary_number(&o, ",%.6f", dice[k], r->scored);
            summary_number(&o, ",%.4f", hd95[k], r->scored);
            if (r->scored) {
                sum_d[k] += dice[k];
                sum_h[k] += hd95[k];
            }
        }
        scored += r->scored;
        cli_text_printf(&o, "\n");
    }
    cli_text_printf(&o, "(mean),mean");
    summary_number(&o, ",%.3f", ran ? sum_s / ran : 0, ran > 0);
    cli_text_printf(&o, ",");
    for (int k = 0; k <= nr && nr; k++) {
        summary_number(&o, ",%.6f", scored ? sum_d[k] / scored : 0, scored > 0);
        summary_number(&o, ",%.4f", scored ? sum_h[k] / scored : 0, scored > 0);
    }
    cli_text_printf(&o, "\n");
    return st == SEGMAMBA_OK ? cli_text_write(&o, c->summary) : st;
}

void cohort_record(cohort *c, const cohort_result *r, int rank)
{
    if (r->index < 0 || r->index >= c->n) return;
    c->results[r->index] = *r;
    c->recorded++;
    const char *id = c->cases[r->index].id;
    if (r->error[0])
        fprintf(stderr, "segmamba: [%d/%d] %s: %s: %s\n", c->recorded, c->n, id,
                r->state == COHORT_FAILED ? "failed" : state_name(r->state), r->error);
    else if (!c->o.quiet && rank < 0)
        fprintf(stderr, "segmamba: [%d/%d] %s: %s in %.1f s\n", c->recorded, c->n, id,
                state_name(r->state), r->seconds);
    else if (!c->o.quiet)
        fprintf(stderr, "segmamba: [%d/%d] %s: %s in %.1f s (rank %d)\n", c->recorded, c->n, id,
                state_name(r->state), r->seconds, rank);
    if (write_summary(c) != SEGMAMBA_OK) {
        fprintf(stderr, "segmamba: error: %s\n", cli_last_error());
        cli_error_clear();
        c->summary_failed = 1;
    }
}

int cohort_finish(cohort *c, double seconds, int ranks)
{
    int count[4] = {0}, rc = 0;
    for (int i = 0; i < c->n; i++) {
        count[c->results[i].state]++;
        if (!rc && c->results[i].code) rc = c->results[i].code;
    }
    if (!c->o.quiet || count[COHORT_FAILED])
        fprintf(stderr,
                "segmamba: %d cases in %.1f s on %d process%s: %d ok, %d skipped, %d failed; "
                "summary %s\n",
                c->n, seconds, ranks, ranks == 1 ? "" : "es", count[COHORT_OK],
                count[COHORT_SKIPPED], count[COHORT_FAILED], c->summary);
    if (!rc && c->summary_failed) rc = SEGMAMBA_E_IO;
    return rc;
}

/* ---- the command ------------------------------------------------------------- */

/* The environment variables by which Open MPI's mpirun, MPICH's hydra and
 * Slurm's srun (PMI-2 or PMIx) tell a process it is one of a job's ranks. */
int cohort_under_mpi_launcher(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK",
                                       "PMIX_RANK"};
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
        fprintf(stderr, "segmamba: error: started as one of %d MPI ranks, but this segmamba was "
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
