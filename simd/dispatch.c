#include "dispatch.h"

#include <stdlib.h>
#include <string.h>

#include "sm_config.h"

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
#if SM_HAVE_X86_SIMD
    return sm_x86_best_isa();
#elif SM_HAVE_NEON
    return SM_ISA_NEON; /* part of every AArch64 CPU */
#else
    return SM_ISA_SCALAR;
#endif
}

/* Whether level isa can run here: on x86 every level up to the detected
 * one; on AArch64 NEON and scalar. */
static int supported(sm_isa isa, sm_isa best)
{
    if (isa == SM_ISA_SCALAR || isa == best) return 1;
    return best == SM_ISA_AVX512 && isa == SM_ISA_AVX2;
}

static sm_kernels active;
static int initialised;

sm_isa sm_kernels_select(sm_isa isa)
{
    const sm_isa best = sm_isa_detect();
    if (!supported(isa, best)) isa = supported(SM_ISA_AVX2, best) && isa == SM_ISA_AVX512
                                         ? SM_ISA_AVX2 : SM_ISA_SCALAR;
    /* Scalar first, then the chosen level's entries on top. */
    active.isa = SM_ISA_SCALAR;
    active.scan = sm_scan_scalar;
    active.exp = sm_exp_scalar;
    active.gelu = sm_gelu_scalar;
    active.fma_probe = sm_fma_probe_scalar;
#if SM_HAVE_X86_SIMD
    if (isa == SM_ISA_AVX2) {
        active.scan = sm_scan_avx2;
        active.exp = sm_exp_avx2;
        active.gelu = sm_gelu_avx2;
        active.fma_probe = sm_fma_probe_avx2;
    }
    if (isa == SM_ISA_AVX512) {
        active.scan = sm_scan_avx512;
        active.exp = sm_exp_avx512;
        active.gelu = sm_gelu_avx512;
        active.fma_probe = sm_fma_probe_avx512;
    }
#endif
#if SM_HAVE_NEON
    if (isa == SM_ISA_NEON) {
        active.scan = sm_scan_neon;
        active.exp = sm_exp_neon;
        active.gelu = sm_gelu_neon;
        active.fma_probe = sm_fma_probe_neon;
    }
#endif
    active.isa = isa;
    initialised = 1;
    return isa;
}

const sm_kernels *sm_kernels_get(void)
{
    if (!initialised) {
        /* SEGMAMBA_ISA can only lower the level: a higher one is clamped. */
        const char *env = getenv("SEGMAMBA_ISA");
        int forced = env ? sm_isa_parse(env) : -1;
        sm_kernels_select(forced >= 0 ? (sm_isa)forced : sm_isa_detect());
    }
    return &active;
}
