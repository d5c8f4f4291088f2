/* Orthanc's REST API as parsed JSON, and the small helpers the plugin's
 * files share. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "plugin.h"

int sm_orthanc_get_json(const char *uri, sm_json *out)
{
    OrthancPluginMemoryBuffer buf = {0};
    memset(out, 0, sizeof *out);
    if (OrthancPluginRestApiGet(sm_orthanc, &buf, uri) != OrthancPluginErrorCode_Success) return -1;
    int rc = sm_json_parse(buf.data, buf.size, uri, out) == SEGMAMBA_OK ? 0 : -1;
    OrthancPluginFreeMemoryBuffer(sm_orthanc, &buf);
    return rc;
}

/* Orthanc's IDs are SHA-1 digests written as five groups of 8 hex digits
 * joined by '-'. Only such a string is put into a URI, so a request cannot
 * reach another route. */
int sm_orthanc_is_id(const char *s)
{
    size_t n = strlen(s);
    if (n != 44) return 0;
    for (size_t i = 0; i < n; i++) {
        if (i % 9 == 8) {
            if (s[i] != '-') return 0;
        } else if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return 0;
        }
    }
    return 1;
}

char *sm_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

double sm_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const char *sm_json_string(const sm_json *object, const char *key)
{
    const sm_json *v = sm_json_get(object, key);
    return v && v->type == SM_JSON_STRING ? v->string : NULL;
}

int sm_why(char *why, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, n, fmt, ap);
    va_end(ap);
    return -1;
}
