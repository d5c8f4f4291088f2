/* Activations: the one activation code every layer uses (fused into a
 * convolution, a norm's apply pass or a pointwise op), and the elementwise
 * kernels of the dispatch table (exp, GELU, SiLU). simd/ is the lowest
 * layer that needs the code, so it lives here and the engine includes it. */
#ifndef SM_SIMD_ACTIVATION_H
#define SM_SIMD_ACTIVATION_H

#include <math.h>
#include <stdint.h>

typedef enum sm_act {
    SM_ACT_NONE = 0,
    SM_ACT_RELU = 1,
    SM_ACT_LRELU = 2, /* negative slope 0.01 */
    SM_ACT_GELU = 3   /* exact erf form */
} sm_act;

/* The scalar references of one value, shared by the scalar kernels. */

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
