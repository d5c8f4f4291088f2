/* avx512 vector operations for the kernel templates in simd/. */
#ifndef SM_SIMD_VEC_AVX512_H
#define SM_SIMD_VEC_AVX512_H

#include <immintrin.h>

#define VW 16
typedef __m512 vf;
#define V_LOAD(p) _mm512_loadu_ps(p)
#define V_STORE(p, v) _mm512_storeu_ps(p, v)
/* The first n lanes (0 < n < VW); the others load as zero and are not stored. */
#define V_LOADN(p, n) _mm512_maskz_loadu_ps((__mmask16)((1u << (n)) - 1u), p)
#define V_STOREN(p, v, n) _mm512_mask_storeu_ps(p, (__mmask16)((1u << (n)) - 1u), v)
#define V_SET1(x) _mm512_set1_ps(x)
#define V_ADD(a, b) _mm512_add_ps(a, b)
#define V_SUB(a, b) _mm512_sub_ps(a, b)
#define V_MUL(a, b) _mm512_mul_ps(a, b)
#define V_DIV(a, b) _mm512_div_ps(a, b)
#define V_MAX(a, b) _mm512_max_ps(a, b)
#define V_MIN(a, b) _mm512_min_ps(a, b)
#define V_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define V_FNMA(a, b, c) _mm512_fnmadd_ps(a, b, c)
#define V_ABS(v) _mm512_abs_ps(v)
#define V_ROUND(v) _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define V_POW2I(p, n) _mm512_scalef_ps(p, n)
/* VREDUCEPS (AVX512DQ) rounding down: x - floor(x), +0 for infinite x;
 * VSCALEFPS scales by 2^floor of its second operand. */
#define V_FRAC_FLOOR(v) _mm512_reduce_ps(v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC)
#define V_POW2_FLOOR(p, x) _mm512_scalef_ps(p, x)
/* Decayed states can fall below FLT_MIN, where x86 arithmetic on
 * subnormals is ~100x slower; they are flushed to zero inside the kernels
 * (a change below 1.2e-38 in a state). */
#define V_ENTER()                                                                                  \
    const unsigned int sm_saved_csr_ = _mm_getcsr();                                               \
    _mm_setcsr(sm_saved_csr_ | 0x8040)
#define V_EXIT() _mm_setcsr(sm_saved_csr_)
#define V_LT_SELECT(a, b, x, y) _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_LT_OQ), y, x)

#endif
