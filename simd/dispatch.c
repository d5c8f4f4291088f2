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

/* One row per level built for this architecture. */
static const sm_kernels levels[] = {
    {SM_ISA_SCALAR, sm_scan_scalar, sm_exp_scalar, sm_gelu_scalar, sm_silu_scalar, sm_fma_probe_scalar,
     sm_norm_sums_scalar, sm_norm_apply_scalar, sm_conv1d_silu_scalar, sm_wino_input_scalar,
     sm_wino_output_scalar, sm_wino_gemm_scalar},
#if SM_HAVE_X86_SIMD
    {SM_ISA_AVX2, sm_scan_avx2, sm_exp_avx2, sm_gelu_avx2, sm_silu_avx2, sm_fma_probe_avx2,
     sm_norm_sums_avx2, sm_norm_apply_avx2, sm_conv1d_silu_avx2, sm_wino_input_avx2,
     sm_wino_output_avx2, sm_wino_gemm_avx2},
    {SM_ISA_AVX512, sm_scan_avx512, sm_exp_avx512, sm_gelu_avx512, sm_silu_avx512, sm_fma_probe_avx512,
     sm_norm_sums_avx512, sm_norm_apply_avx512, sm_conv1d_silu_avx512, sm_wino_input_avx512,
     sm_wino_output_avx512, sm_wino_gemm_avx512},
#endif
#if SM_HAVE_NEON
    {SM_ISA_NEON, sm_scan_neon, sm_exp_neon, sm_gelu_neon, sm_silu_neon, sm_fma_probe_neon,
     sm_norm_sums_neon, sm_norm_apply_neon, sm_conv1d_silu_neon, sm_wino_input_neon,
     sm_wino_output_neon, sm_wino_gemm_neon},
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
    if (!supported(isa, best)) isa = supported(SM_ISA_AVX2, best) && isa == SM_ISA_AVX512
                                         ? SM_ISA_AVX2 : SM_ISA_SCALAR;
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
