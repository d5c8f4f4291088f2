/* Activations: the elementwise kernels of the dispatch table (exp, GELU,
 * SiLU) and the scalar references of one value. */
#ifndef SM_SIMD_ACTIVATION_H
#define SM_SIMD_ACTIVATION_H

#include <math.h>
#include <stdint.h>

/* One value, for the scalar kernels. */

/* v * sigmoid(v) */
static inline float sm_silu1(float v) { return v / (1.0f + expf(-v)); }

/* softplus(v) = log1p(exp(v)), and v itself above 20 as in PyTorch, where
 * exp would gain nothing and log1p(exp(v)) == v in float32 anyway. */
static inline float sm_softplus1(float v) { return v > 20.0f ? v : log1pf(expf(v)); }

/* y[i] = exp(x[i]); the vector versions are the scan's exp (see
 * activation_vec.h for their error bound). */
typedef void (*sm_exp_fn)(const float *x, float *y, int64_t n);

void sm_exp_scalar(const float *x, float *y, int64_t n);
void sm_exp_avx2(const float *x, float *y, int64_t n);
void sm_exp_avx512(const float *x, float *y, int64_t n);
void sm_exp_neon(const float *x, float *y, int64_t n);

/* y[i] = GELU(x[i]), the exact (erf) form; x and y may be the same. */
typedef void (*sm_gelu_fn)(const float *x, float *y, int64_t n);

void sm_gelu_scalar(const float *x, float *y, int64_t n);
void sm_gelu_avx2(const float *x, float *y, int64_t n);
void sm_gelu_avx512(const float *x, float *y, int64_t n);
void sm_gelu_neon(const float *x, float *y, int64_t n);

/* y[i] = x[i] * sigmoid(x[i]); x and y may be the same. */
typedef void (*sm_silu_fn)(const float *x, float *y, int64_t n);

void sm_silu_scalar(const float *x, float *y, int64_t n);
void sm_silu_avx2(const float *x, float *y, int64_t n);
void sm_silu_avx512(const float *x, float *y, int64_t n);
void sm_silu_neon(const float *x, float *y, int64_t n);

#endif
