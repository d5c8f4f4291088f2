/* Kernel dispatch: one table of function pointers, filled with the scalar
 * reference first and then overwritten by the fastest variant the CPU (and
 * the OS) supports, never above the level forced by SEGMAMBA_ISA or
 * sm_simd_force(). Tests walk the levels and compare against the scalar. */
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

typedef struct sm_kernels {
    sm_isa isa;
    sm_scan_fn scan;
    sm_exp_fn exp;
    sm_gelu_fn gelu;
    sm_silu_fn silu;
    sm_fma_probe_fn fma_probe;
    sm_norm_sums_fn norm_sums;
    sm_norm_apply_fn norm_apply;
    sm_conv1d_silu_fn conv1d_silu;
    sm_wino_input_fn wino_input;
    sm_wino_output_fn wino_output;
    sm_wino_gemm_fn wino_gemm;
} sm_kernels;

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
