#include "dispatch.h"

#include <pthread.h>
#include <stdatomic.h>
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

/* One row per level built for this architecture: every family of
 * SM_KERNEL_FAMILIES at the level whose kernels end in _sfx. */
#define SM_KERNEL_ENTRY(name, sfx) .name = sm_##name##_##sfx,
#define SM_KERNEL_ROW(level, sfx)                                                                  \
    {                                                                                              \
        .isa = level, SM_KERNEL_FAMILIES(SM_KERNEL_ENTRY, sfx)                                     \
    }

static const sm_kernels levels[] = {
    SM_KERNEL_ROW(SM_ISA_SCALAR, scalar),
#if SM_HAVE_X86_SIMD
    SM_KERNEL_ROW(SM_ISA_AVX2, avx2),
    SM_KERNEL_ROW(SM_ISA_AVX512, avx512),
#endif
#if SM_HAVE_NEON
    SM_KERNEL_ROW(SM_ISA_NEON, neon),
#endif
};

/* The table in use: one of the rows above, which never change, so that
 * switching levels is one atomic store and a forward running on another
 * thread reads either table whole. Set first, once, from the CPU and
 * SEGMAMBA_ISA. */
static _Atomic(const sm_kernels *) active;
static pthread_once_t first_choice = PTHREAD_ONCE_INIT;

static const sm_kernels *row_for(sm_isa isa)
{
    const sm_isa best = sm_isa_detect();
    if (!supported(isa, best))
        isa = supported(SM_ISA_AVX2, best) && isa == SM_ISA_AVX512 ? SM_ISA_AVX2 : SM_ISA_SCALAR;
    const sm_kernels *k = &levels[0];
    for (unsigned i = 0; i < sizeof levels / sizeof *levels; i++)
        if (levels[i].isa == isa) k = &levels[i];
    return k;
}

static void choose_first(void)
{
    /* SEGMAMBA_ISA can only lower the level: a higher one is clamped. */
    const char *env = getenv("SEGMAMBA_ISA");
    const int forced = env ? sm_isa_parse(env) : -1;
    atomic_store(&active, row_for(forced >= 0 ? (sm_isa)forced : sm_isa_detect()));
}

sm_isa sm_kernels_select(sm_isa isa)
{
    pthread_once(&first_choice, choose_first);
    const sm_kernels *k = row_for(isa);
    atomic_store(&active, k);
    return k->isa;
}

const sm_kernels *sm_kernels_get(void)
{
    pthread_once(&first_choice, choose_first);
    return atomic_load(&active);
}
