/* RFC 4180 CSV: the reader of a cohort's case list and the field writer of
 * the summary (csv.h). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "csv.h"

void csv_free(csv_table *t)
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
segmamba_status csv_parse(const char *path, char *text, size_t len, csv_table *t)
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
void csv_write_field(cli_text *o, const char *s, int first)
{
    const size_t n = strlen(s);
    const int quote = strpbrk(s, ",\"\r\n") || (n && (is_blank(s[0]) || is_blank(s[n - 1])));
    cli_text_printf(o, "%s%s", first ? "" : ",", quote ? "\"" : "");
    for (const char *p = s; *p; p++) cli_text_printf(o, *p == '"' ? "\"\"" : "%c", *p);
    if (quote) cli_text_printf(o, "\"");
}
