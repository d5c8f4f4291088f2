#include "io/memory_cap.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/binary.h"

/* 0: not set through the API. Atomic: an application may set it while
 * another thread loads. */
static _Atomic uint64_t api_cap;

void segmamba_set_max_memory(uint64_t bytes) { atomic_store(&api_cap, bytes); }

int sm_memory_parse(const char *text, uint64_t *bytes)
{
    const char *p = text;
    if (*p < '0' || *p > '9') return 0;
    uint64_t v = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (!sm_mul_ok(v, 10, &v) || v > UINT64_MAX - (uint64_t)(*p - '0')) return 0;
        v += (uint64_t)(*p - '0');
    }
    static const char units[] = "KMGT";
    const char *u = *p ? strchr(units, *p) : NULL;
    if (u) {
        for (int i = 0; i <= u - units; i++)
            if (!sm_mul_ok(v, 1024, &v)) return 0;
        p++;
        if (strcmp(p, "iB") == 0) p += 2;
    }
    if (strcmp(p, "B") == 0) p++;
    if (*p != '\0') return 0;
    *bytes = v;
    return 1;
}

uint64_t sm_memory_cap(void)
{
    const uint64_t cap = atomic_load(&api_cap);
    if (cap) return cap;
    const char *env = getenv("SEGMAMBA_MAX_MEMORY");
    if (env && *env) {
        uint64_t v;
        if (!sm_memory_parse(env, &v) || v == 0) {
            sm_fail(SEGMAMBA_E_ARG,
                    "SEGMAMBA_MAX_MEMORY='%.40s' is not a size in bytes (such as "
                    "8G, 512M or 1000000)",
                    env);
            return 0;
        }
        return v;
    }
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    uint64_t total;
    if (pages <= 0 || page <= 0 || !sm_mul_ok((uint64_t)pages, (uint64_t)page, &total))
        return UINT64_MAX;
    return total;
}

sm_status sm_memory_check(uint64_t bytes, const char *origin, const char *what)
{
    const uint64_t cap = sm_memory_cap();
    if (cap == 0) return SEGMAMBA_E_ARG;
    if (bytes <= cap) return SEGMAMBA_OK;
    return sm_fail(SEGMAMBA_E_NOMEM,
                   "%s: %s would need %llu bytes, more than the memory limit "
                   "of %llu bytes (SEGMAMBA_MAX_MEMORY; default: the machine's physical memory)",
                   origin, what, (unsigned long long)bytes, (unsigned long long)cap);
}
