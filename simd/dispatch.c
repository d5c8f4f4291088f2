#include "dispatch.h"

#include <stdlib.h>
#include <string.h>

static const char *const isa_names[] = {"scalar", "avx2", "avx512", "neon"};

const char *sm_isa_name(sm_isa isa)
{
    return (unsigned)isa < sizeof isa_names / sizeof *isa_names ? isa_names[isa] : "unknown";
}

int sm_isa_parse(const char *s)
{
    for (unsigned i = 0; i < sizeof isa_names / sizeof *isa_names; i++)
        if (strcmp(s, isa_names[i]) == 0) return (int)i;
    return -1;
}

sm_isa sm_isa_detect(void)
{
    /* Only the scalar kernels exist so far; CPUID/XGETBV detection comes with
     * the first SIMD variant so that a level is never claimed untested. */
    return SM_ISA_SCALAR;
}

static sm_kernels active;
static int initialised;

sm_isa sm_kernels_select(sm_isa isa)
{
    sm_isa best = sm_isa_detect();
    if ((int)isa > (int)best) isa = best;
    active.isa = SM_ISA_SCALAR;
    active.scan = sm_scan_scalar;
    initialised = 1;
    return active.isa;
}

const sm_kernels *sm_kernels_get(void)
{
    if (!initialised) {
        const char *env = getenv("SEGMAMBA_ISA");
        int forced = env ? sm_isa_parse(env) : -1;
        sm_kernels_select(forced >= 0 ? (sm_isa)forced : sm_isa_detect());
    }
    return &active;
}
