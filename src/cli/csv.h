/* The CLI's CSV: an RFC 4180 reader (a cohort's case list) and the field
 * writer of its CSV outputs (the cohort summary). */
#ifndef SM_CLI_CSV_H
#define SM_CLI_CSV_H

#include <stddef.h>

#include "segmamba.h"
#include "out.h"

typedef struct csv_table {
    char **cells; /* row-major, n_rows x n_cols, pointing into the text */
    int *lines;   /* the line each row starts on */
    int n_rows, n_cols;
} csv_table;

/* RFC 4180, parsed in place (text is NUL-terminated at len and rewritten):
 * fields separated by ',', records by LF, CRLF or CR; a field may be in
 * double quotes, inside which commas, line breaks and doubled quotes ("")
 * are text. Spaces and tabs around a field are dropped (quote a field to
 * keep them). Blank lines are skipped; every record must have as many fields
 * as the header. path names the file in messages. On failure t is empty. */
segmamba_status csv_parse(const char *path, char *text, size_t len, csv_table *t);
void csv_free(csv_table *t);

/* Appends s as one CSV field (after a ',' unless first), quoted when it
 * holds a comma, quote, line break or surrounding space. */
void csv_write_field(cli_text *o, const char *s, int first);

#endif
