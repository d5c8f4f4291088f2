#include "out.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "segmamba_pipeline.h"

/* The CLI runs its commands on one thread. */
static char *pending;

static char *vformat(const char *fmt, va_list ap)
{
    va_list copy;
    va_copy(copy, ap);
    const int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s) vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

segmamba_status cli_error(segmamba_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = vformat(fmt, ap);
    va_end(ap);
    free(pending);
    pending = s;
    return code;
}

segmamba_status cli_error_wrap(segmamba_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *prefix = vformat(fmt, ap);
    va_end(ap);
    const char *old = cli_last_error();
    const size_t n = prefix ? strlen(prefix) + strlen(old) + 3 : 0;
    char *s = prefix ? malloc(n) : NULL;
    if (s) snprintf(s, n, "%s: %s", prefix, old);
    free(prefix);
    if (s) {
        free(pending);
        pending = s;
    }
    return code;
}

const char *cli_last_error(void) { return pending ? pending : segmamba_get_last_error(); }

void cli_error_clear(void)
{
    free(pending);
    pending = NULL;
}

segmamba_status cli_text_open(cli_text *t)
{
    memset(t, 0, sizeof *t);
    t->f = open_memstream(&t->buf, &t->len);
    return t->f ? SEGMAMBA_OK : cli_error(SEGMAMBA_E_NOMEM, "out of memory for an output text");
}

void cli_text_printf(cli_text *t, const char *fmt, ...)
{
    if (!t->f) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(t->f, fmt, ap);
    va_end(ap);
}

void cli_text_json_string(cli_text *t, const char *s)
{
    if (!t->f) return;
    fputc('"', t->f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(t->f, "\\%c", *p);
        else if (*p == '\n' || *p == '\r' || *p == '\t')
            fprintf(t->f, "\\%c", *p == '\n' ? 'n' : *p == '\r' ? 'r' : 't');
        else if (*p < 0x20)
            fprintf(t->f, "\\u%04x", *p);
        else
            fputc(*p, t->f);
    }
    fputc('"', t->f);
}

segmamba_status cli_text_write(cli_text *t, const char *path)
{
    segmamba_status st = SEGMAMBA_OK;
    if (!t->f || ferror(t->f)) st = cli_error(SEGMAMBA_E_NOMEM, "%s: out of memory", path);
    if (t->f && fclose(t->f) != 0 && st == SEGMAMBA_OK)
        st = cli_error(SEGMAMBA_E_NOMEM, "%s: out of memory", path);
    t->f = NULL;
    if (st == SEGMAMBA_OK) st = segmamba_file_write(path, t->buf, t->len);
    cli_text_free(t);
    return st;
}

void cli_text_free(cli_text *t)
{
    if (t->f) fclose(t->f);
    free(t->buf);
    memset(t, 0, sizeof *t);
}
