#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Messages are built from file names and values read from files, so their
 * length is not bounded: the buffer is sized for each message. */
static _Thread_local char *last_message;

static char *format_message(const char *fmt, va_list ap)
{
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0) return NULL;
    char *s = malloc((size_t)n + 1);
    if (s) vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

static void set_message(char *s)
{
    free(last_message);
    last_message = s;
}

sm_status sm_fail(sm_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_message(format_message(fmt, ap));
    va_end(ap);
    return code;
}

sm_status sm_fail_wrap(sm_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *prefix = format_message(fmt, ap);
    va_end(ap);
    if (!prefix) return code;
    const char *old = last_message ? last_message : "";
    size_t n = strlen(prefix) + strlen(old) + 3;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s: %s", prefix, old);
    free(prefix);
    if (s) set_message(s);
    return code;
}

void sm_error_clear(void) { set_message(NULL); }

const char *segmamba_get_last_error(void) { return last_message ? last_message : ""; }

const char *segmamba_get_status_name(segmamba_status s)
{
    switch (s) {
    case SEGMAMBA_OK: return "OK";
    case SEGMAMBA_E_ARG: return "E_ARG";
    case SEGMAMBA_E_IO: return "E_IO";
    case SEGMAMBA_E_FORMAT: return "E_FORMAT";
    case SEGMAMBA_E_UNSUPPORTED: return "E_UNSUPPORTED";
    case SEGMAMBA_E_MODEL: return "E_MODEL";
    case SEGMAMBA_E_SHAPE: return "E_SHAPE";
    case SEGMAMBA_E_NOMEM: return "E_NOMEM";
    case SEGMAMBA_E_BACKEND: return "E_BACKEND";
    case SEGMAMBA_E_CANCELLED: return "E_CANCELLED";
    }
    return "E_UNKNOWN";
}
