/* Kernel dispatch: one row of function pointers per ISA level, chosen at
 * run time as the fastest the CPU (and the OS) supports, never above the
 * level named by SEGMAMBA_ISA or passed to sm_kernels_select(). Tests walk
 * the levels and compare against the scalar. */
#ifndef SM_SIMD_DISPATCH_H
#define SM_SIMD_DISPATCH_H

#include "activation.h"
#include "conv1d.h"
#include "fma_probe.h"
#include "norm.h"
#include "scan.h"
#include "winograd.h"

typedef enum sm_isa {
    SM_ISA_SCALAR = 0,
    SM_ISA_AVX2 = 1,
    SM_ISA_AVX512 = 2,
    SM_ISA_NEON = 3
} sm_isa;

/* The kernel families: the one list that makes the sm_kernels fields, each
 * level's row in dispatch.c and the per-family tests of tests/test_simd.c,
 * so a family cannot be dispatched untested. X(name, arg) per family, whose
 * kernel type is sm_<name>_fn and whose kernel at level <isa> is
 * sm_<name>_<isa> (declared in the family's header); arg is passed through. */
#define SM_KERNEL_FAMILIES(X, arg)                                                                 \
    X(scan, arg)                                                                                   \
    X(exp, arg)                                                                                    \
    X(gelu, arg)                                                                                   \
    X(silu, arg)                                                                                   \
    X(fma_probe, arg)                                                                              \
    X(norm_sums, arg)                                                                              \
    X(norm_apply, arg)                                                                             \
    X(conv1d_silu, arg)                                                                            \
    X(wino_input, arg)                                                                             \
    X(wino_output, arg)                                                                            \
    X(wino_gemm, arg)

#define SM_KERNEL_FIELD(name, unused) sm_##name##_fn name;
#define SM_KERNEL_ONE(name, unused) +1

enum { SM_KERNEL_FAMILY_COUNT = 0 SM_KERNEL_FAMILIES(SM_KERNEL_ONE, ) };

typedef struct sm_kernels {
    sm_isa isa;
    SM_KERNEL_FAMILIES(SM_KERNEL_FIELD, )
} sm_kernels;
#undef SM_KERNEL_FIELD
#undef SM_KERNEL_ONE

/* The active table (initialised on first use from the CPU and SEGMAMBA_ISA). */
const sm_kernels *sm_kernels_get(void);

#if defined(__x86_64__)
sm_isa sm_x86_best_isa(void); /* simd/x86/cpu.c */
#endif

/* Highest level this CPU and build support. */
sm_isa sm_isa_detect(void);

/* Selects the table for level isa (clamped to what is supported) and
 * returns the level actually used. */
sm_isa sm_kernels_select(sm_isa isa);

const char *sm_isa_name(sm_isa isa);

/* Parses "scalar", "avx2", "avx512", "neon"; returns -1 if unknown. */
int sm_isa_parse(const char *s);

#endif
