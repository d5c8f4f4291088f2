/* The FP32 FMA peak probe (segmamba bench's roofline). */
#ifndef SM_SIMD_FMA_PROBE_H
#define SM_SIMD_FMA_PROBE_H

#include <stdint.h>

/* Runs iters rounds of independent FMA chains; returns the flops done. */
typedef double (*sm_fma_probe_fn)(int64_t iters, float *sink);

double sm_fma_probe_scalar(int64_t iters, float *sink);
double sm_fma_probe_avx2(int64_t iters, float *sink);
double sm_fma_probe_avx512(int64_t iters, float *sink);
double sm_fma_probe_neon(int64_t iters, float *sink);

#endif
