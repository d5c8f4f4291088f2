/* neon vector operations for the kernel templates in simd/. */
#ifndef SM_SIMD_VEC_NEON_H
#define SM_SIMD_VEC_NEON_H

#include <arm_neon.h>

#define VW 4
typedef float32x4_t vf;
#define V_LOAD(p) vld1q_f32(p)
#define V_STORE(p, v) vst1q_f32(p, v)
/* The first n lanes (0 < n < VW); the others load as zero and are not
 * stored. NEON has no masked loads: through a small array. */
static inline float32x4_t sm_neon_loadn(const float *p, int n)
{
    float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int i = 0; i < n; i++) t[i] = p[i];
    return vld1q_f32(t);
}
static inline void sm_neon_storen(float *p, float32x4_t v, int n)
{
    float t[4];
    vst1q_f32(t, v);
    for (int i = 0; i < n; i++) p[i] = t[i];
}
#define V_LOADN(p, n) sm_neon_loadn(p, n)
#define V_STOREN(p, v, n) sm_neon_storen(p, v, n)
#define V_SET1(x) vdupq_n_f32(x)
#define V_ADD(a, b) vaddq_f32(a, b)
#define V_SUB(a, b) vsubq_f32(a, b)
#define V_MUL(a, b) vmulq_f32(a, b)
#define V_DIV(a, b) vdivq_f32(a, b)
#define V_MAX(a, b) vmaxq_f32(a, b)
#define V_MIN(a, b) vminq_f32(a, b)
#define V_FMA(a, b, c) vfmaq_f32(c, a, b)
#define V_FNMA(a, b, c) vfmsq_f32(c, a, b)
#define V_ABS(v) vabsq_f32(v)
#define V_ROUND(v) vrndnq_f32(v)
/* n is integral and in [-126, 127] after the clamp in v_exp. */
#define V_POW2I(p, n)                                                                              \
    vmulq_f32(                                                                                     \
        p, vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23)))
/* AArch64 handles subnormals at full speed: nothing to switch. */
#define V_ENTER()
#define V_EXIT()
#define V_LT_SELECT(a, b, x, y) vbslq_f32(vcltq_f32(a, b), x, y)

#endif
