/* avx2 vector operations for the kernel templates in simd/. */
#ifndef SM_SIMD_VEC_AVX2_H
#define SM_SIMD_VEC_AVX2_H

#include <immintrin.h>

#define VW 8
typedef __m256 vf;
#define V_LOAD(p) _mm256_loadu_ps(p)
#define V_STORE(p, v) _mm256_storeu_ps(p, v)
/* The first n lanes (0 < n < VW); the others load as zero and are not stored. */
#define V_LANES(n)                                                                                 \
    _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define V_LOADN(p, n) _mm256_maskload_ps(p, V_LANES(n))
#define V_STOREN(p, v, n) _mm256_maskstore_ps(p, V_LANES(n), v)
#define V_SET1(x) _mm256_set1_ps(x)
#define V_ADD(a, b) _mm256_add_ps(a, b)
#define V_SUB(a, b) _mm256_sub_ps(a, b)
#define V_MUL(a, b) _mm256_mul_ps(a, b)
#define V_DIV(a, b) _mm256_div_ps(a, b)
#define V_MAX(a, b) _mm256_max_ps(a, b)
#define V_MIN(a, b) _mm256_min_ps(a, b)
#define V_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define V_FNMA(a, b, c) _mm256_fnmadd_ps(a, b, c)
#define V_ABS(v) _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v)
#define V_ROUND(v) _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
/* n is integral and in [-126, 127] after the clamp in v_exp: build 2^n from
 * its exponent bits. */
#define V_POW2I(p, n)                                                                              \
    _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(                                        \
                         _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23)))
/* Decayed states can fall below FLT_MIN, where x86 arithmetic on
 * subnormals is ~100x slower; they are flushed to zero inside the kernels
 * (a change below 1.2e-38 in a state). */
#define V_ENTER()                                                                                  \
    const unsigned int sm_saved_csr_ = _mm_getcsr();                                               \
    _mm_setcsr(sm_saved_csr_ | 0x8040)
#define V_EXIT() _mm_setcsr(sm_saved_csr_)
#define V_LT_SELECT(a, b, x, y) _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, b, _CMP_LT_OQ))

#endif
