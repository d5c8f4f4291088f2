/* The activations as inline functions of one vector, written once over the
 * vector operations of an ISA header (x86/vec_avx512.h, x86/vec_avx2.h,
 * arm/vec_neon.h), which the including template provides first. Used by
 * activation_template.h (the elementwise kernels), scan_template.h
 * (softplus, the decays' exp, the SiLU gate) and conv1d_template.h (SiLU).
 *
 * Required before inclusion:
 *   VW                         lanes per vector
 *   vf                         the vector type
 *   V_LOAD(p), V_STORE(p, v), V_SET1(x), V_ADD, V_SUB, V_MUL, V_DIV, V_MAX, V_MIN,
 *   V_FMA(a, b, c) = a*b + c, V_FNMA(a, b, c) = c - a*b,
 *   V_LT_SELECT(a, b, x, y) = (a < b) ? x : y   (per lane),
 *   V_ROUND(v) (to nearest), V_POW2I(p, n) = p * 2^n for integral-valued n,
 *   V_ABS(v)
 */
#ifndef SM_SIMD_ACTIVATION_VEC_H
#define SM_SIMD_ACTIVATION_VEC_H

#include "exp_constants.h"

#if defined(__GNUC__)
#define SM_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define SM_ALWAYS_INLINE inline
#endif

/* exp(x): x = n ln2 + r with |r| <= ln2/2, exp(r) by its degree-6 Taylor
 * polynomial, scaled by 2^n. Error bound: truncation |r|^7/7! <= 1.2e-7
 * relative, plus about one ulp of rounding in the Horner steps and the
 * final product: <= 2.5e-7 relative (~2 ulp) for x in [-87, 88];
 * tests/test_simd.c measures 2.2e-7. Below SM_EXP_MIN the result is exactly
 * 0; above SM_EXP_MAX it saturates at exp(SM_EXP_MAX). */
static inline vf v_exp(vf x)
{
    vf xc = V_MIN(V_MAX(x, V_SET1(SM_EXP_MIN)), V_SET1(SM_EXP_MAX));
    vf n = V_ROUND(V_MUL(xc, V_SET1(SM_LOG2E)));
    vf r = V_FNMA(n, V_SET1(SM_LN2_HI), xc);
    r = V_FNMA(n, V_SET1(SM_LN2_LO), r);
    vf p = V_SET1(SM_EXP_C6);
    p = V_FMA(p, r, V_SET1(SM_EXP_C5));
    p = V_FMA(p, r, V_SET1(SM_EXP_C4));
    p = V_FMA(p, r, V_SET1(SM_EXP_C3));
    p = V_FMA(p, r, V_SET1(SM_EXP_C2));
    p = V_FMA(p, r, V_SET1(1.0f));
    p = V_FMA(p, r, V_SET1(1.0f));
    return V_LT_SELECT(x, V_SET1(SM_EXP_MIN), V_SET1(0.0f), V_POW2I(p, n));
}

/* softplus(v) = max(v, 0) + log1p(exp(-|v|)); log1p(w) for w in (0, 1] as
 * 2 atanh(s), s = w / (2 + w) <= 1/3, by its odd series to s^13 (truncation
 * below 2e-8 relative). Above 20 this returns v to float precision, as
 * PyTorch's threshold does. */
static inline vf v_softplus(vf v)
{
    vf w = v_exp(V_SUB(V_SET1(0.0f), V_ABS(v)));
    vf s = V_DIV(w, V_ADD(V_SET1(2.0f), w));
    vf s2 = V_MUL(s, s);
    vf q = V_SET1(1.0f / 13.0f);
    q = V_FMA(q, s2, V_SET1(1.0f / 11.0f));
    q = V_FMA(q, s2, V_SET1(1.0f / 9.0f));
    q = V_FMA(q, s2, V_SET1(1.0f / 7.0f));
    q = V_FMA(q, s2, V_SET1(1.0f / 5.0f));
    q = V_FMA(q, s2, V_SET1(1.0f / 3.0f));
    q = V_FMA(q, s2, V_SET1(1.0f));
    return V_ADD(V_MAX(v, V_SET1(0.0f)), V_MUL(V_ADD(s, s), q));
}

/* z * sigmoid(z) */
static inline vf v_silu(vf z)
{
    return V_DIV(z, V_ADD(V_SET1(1.0f), v_exp(V_SUB(V_SET1(0.0f), z))));
}

/* GELU(x) = x/2 (1 + erf(x / sqrt 2)) with erf from Abramowitz & Stegun
 * 7.1.26: erf(a) = 1 - t (a1 + t (a2 + ... a5 t)) exp(-a^2), t = 1/(1 + p a),
 * for a >= 0 (odd symmetry otherwise). GELU = x (1 - tail/2) with
 * tail = 1 - erf(|x|/sqrt 2) <= 1; an error d in tail/2 is an error |x| d:
 * d <= 0.75e-7 (the formula's 1.5e-7 on erf) + about 4 ulp of float
 * evaluation of tail (exp, division, Horner) / 2 <= 2.4e-7 in all, so
 * |error| <= 3e-7 |x| plus the final rounding (tests/test_simd.c). */
static inline vf v_gelu(vf x)
{
    const vf a = V_MUL(V_ABS(x), V_SET1(0.70710678118654752f));
    const vf t = V_DIV(V_SET1(1.0f), V_FMA(a, V_SET1(0.3275911f), V_SET1(1.0f)));
    vf q = V_SET1(1.061405429f);
    q = V_FMA(q, t, V_SET1(-1.453152027f));
    q = V_FMA(q, t, V_SET1(1.421413741f));
    q = V_FMA(q, t, V_SET1(-0.284496736f));
    q = V_FMA(q, t, V_SET1(0.254829592f));
    const vf tail = V_MUL(V_MUL(q, t), v_exp(V_SUB(V_SET1(0.0f), V_MUL(a, a)))); /* 1 - erf(a) */
    /* x >= 0: x (1 - tail/2); x < 0: x tail/2 */
    const vf half_tail = V_MUL(tail, V_SET1(0.5f));
    return V_MUL(x, V_LT_SELECT(x, V_SET1(0.0f), half_tail, V_SUB(V_SET1(1.0f), half_tail)));
}

#endif
