/* The case list of predict --list (cohort.c): the CSV's columns (id, the
 * card's channels or one "image" column, the reference), ids usable as file
 * names and unique, cells as paths from the list's folder. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cohort_internal.h"
#include "csv.h"

#define ID_MAX 200
#define MAX_COLUMNS 1024

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
    *out =
        cell[0] == '/' || !dir[0] ? cohort_join("", "", cell, "") : cohort_join(dir, "/", cell, "");
    return *out ? SEGMAMBA_OK : cli_error(SEGMAMBA_E_NOMEM, "out of memory for the case list");
}

/* A case's id and its row, sorted by id to find repeats. */
typedef struct id_row {
    const char *id;
    int row;
} id_row;

static int by_id(const void *a, const void *b)
{
    return strcmp(((const id_row *)a)->id, ((const id_row *)b)->id);
}

static segmamba_status check_unique_ids(const char *path, const cohort_case *cases, int n)
{
    id_row *order = malloc((size_t)(n ? n : 1) * sizeof *order);
    if (!order) return cli_error(SEGMAMBA_E_NOMEM, "%s: out of memory", path);
    for (int i = 0; i < n; i++) order[i] = (id_row){cases[i].id, i};
    qsort(order, (size_t)n, sizeof *order, by_id);
    segmamba_status st = SEGMAMBA_OK;
    for (int i = 1; i < n && st == SEGMAMBA_OK; i++) {
        const cohort_case *a = &cases[order[i - 1].row], *b = &cases[order[i].row];
        if (strcmp(a->id, b->id) == 0)
            st = cli_error(SEGMAMBA_E_FORMAT, "%s: lines %d and %d both have id '%s'", path,
                           a->line < b->line ? a->line : b->line,
                           a->line < b->line ? b->line : a->line, a->id);
    }
    free(order);
    return st;
}

segmamba_status cohort_load_list(cohort *c)
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
                segmamba_status st = cli_error(SEGMAMBA_E_FORMAT, "%s: two columns are named '%s'",
                                               path, t.cells[j]);
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
        dir = slash ? cohort_join("", "", path, "") : cohort_join("", "", "", "");
        if (!dir)
            st = cli_error(SEGMAMBA_E_NOMEM, "%s: out of memory", path);
        else if (slash)
            dir[slash == path ? 1 : slash - path] = '\0';
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
