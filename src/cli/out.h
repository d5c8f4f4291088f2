/* The CLI's own messages and text outputs. The CLI sees the library only
 * through segmamba.h and segmamba_pipeline.h, so it keeps the messages of
 * its own refusals (a bad CSV line, a missing column) here, next to the
 * library's segmamba_get_last_error(), and builds its JSON and CSV outputs in
 * memory before one atomic segmamba_file_write. */
#ifndef SM_CLI_OUT_H
#define SM_CLI_OUT_H

#include <stdio.h>

#include "segmamba.h"

#if defined(__GNUC__)
#define CLI_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CLI_PRINTF(a, b)
#endif

/* Propagates a non-OK status. */
#define CLI_TRY(expr)                                                                              \
    do {                                                                                           \
        segmamba_status cli_try_status_ = (expr);                                                  \
        if (cli_try_status_ != SEGMAMBA_OK) return cli_try_status_;                                \
    } while (0)

/* Records a CLI-side failure and returns code: return cli_error(...). */
segmamba_status cli_error(segmamba_status code, const char *fmt, ...) CLI_PRINTF(2, 3);

/* Prefixes the pending message (the CLI's, else the library's) with more
 * context: "reference: <message>". */
segmamba_status cli_error_wrap(segmamba_status code, const char *fmt, ...) CLI_PRINTF(2, 3);

/* The message of the last failure: the CLI's own if one is pending, else
 * the library's. cli_error_clear drops the CLI's once it has been shown or
 * stored, so that a later library failure is not hidden behind it. */
const char *cli_last_error(void);
void cli_error_clear(void);

/* Text built in memory (open_memstream). Appends never fail outright; a
 * failure shows when the text is written. */
typedef struct cli_text {
    FILE *f;
    char *buf;
    size_t len;
} cli_text;

segmamba_status cli_text_open(cli_text *t);
void cli_text_printf(cli_text *t, const char *fmt, ...) CLI_PRINTF(2, 3);
/* s as a quoted JSON string (quotes, backslashes and control characters
 * escaped; other UTF-8 bytes as they are). */
void cli_text_json_string(cli_text *t, const char *s);
/* Writes the text to path atomically and frees it (also on failure). */
segmamba_status cli_text_write(cli_text *t, const char *path);
void cli_text_free(cli_text *t);

#endif
