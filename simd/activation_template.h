/* The vectorised activation kernels (simd/activation.h), written once over
 * the vector operations of an ISA header, which the including file
 * (x86/activation_avx512.c, x86/activation_avx2.c, arm/activation_neon.c)
 * provides first, with EXP_FN, GELU_FN and SILU_FN naming the kernels. */
#include <stdint.h>

#include "activation.h"
#include "activation_vec.h"

/* y[i] = f(x[i]), the tail through one padded vector. */
static SM_ALWAYS_INLINE void map(const float *x, float *y, int64_t n, vf (*f)(vf))
{
    int64_t i = 0;
    for (; i + VW <= n; i += VW) V_STORE(y + i, f(V_LOAD(x + i)));
    if (i < n) {
        float in[VW] = {0}, out[VW];
        for (int64_t k = i; k < n; k++) in[k - i] = x[k];
        V_STORE(out, f(V_LOAD(in)));
        for (int64_t k = i; k < n; k++) y[k] = out[k - i];
    }
}

void EXP_FN(const float *x, float *y, int64_t n) { map(x, y, n, v_exp); }
void SILU_FN(const float *x, float *y, int64_t n) { map(x, y, n, v_silu); }
void GELU_FN(const float *x, float *y, int64_t n) { map(x, y, n, v_gelu); }
