/* The vectorised instance-norm kernels (simd/norm.h), written once over the
 * vector operations of an ISA header (vec_avx512.h, vec_avx2.h,
 * vec_neon.h), which the including file provides first, with
 * NORM_SUMS_FN and NORM_APPLY_FN naming the kernels. One lane per channel:
 * each lane does the scalar kernel's float operations in the scalar
 * kernel's order, so the results are the same bit for bit. Channels after
 * the last full vector go to the scalar kernel. No flush-to-zero here (the
 * scalar kernel keeps subnormals). */
#include <stdint.h>

#include "norm.h"

#if defined(__GNUC__)
#define SM_NORM_INLINE inline __attribute__((always_inline))
#else
#define SM_NORM_INLINE inline
#endif

/* Up to this many vectors of channels per pass over the voxels, their
 * running sums in registers. */
#define SM_NORM_GROUP 4

static SM_NORM_INLINE void sums_group(const float *x, int64_t ld, int64_t nv, const float *shift,
                                      float *s, float *s2, const int G)
{
    vf vs[SM_NORM_GROUP], vq[SM_NORM_GROUP], sh[SM_NORM_GROUP];
    for (int j = 0; j < G; j++) {
        vs[j] = V_LOAD(s + j * VW);
        vq[j] = V_LOAD(s2 + j * VW);
        sh[j] = V_LOAD(shift + j * VW);
    }
    for (int64_t v = 0; v < nv; v++) {
        const float *row = x + v * ld;
        for (int j = 0; j < G; j++) {
            const vf d = V_SUB(V_LOAD(row + j * VW), sh[j]);
            vs[j] = V_ADD(vs[j], d);
            vq[j] = V_ADD(vq[j], V_MUL(d, d));
        }
    }
    for (int j = 0; j < G; j++) {
        V_STORE(s + j * VW, vs[j]);
        V_STORE(s2 + j * VW, vq[j]);
    }
}

void NORM_SUMS_FN(const float *x, int64_t ld, int64_t nv, int c, const float *shift, float *s,
                  float *s2)
{
    int k = 0;
    for (; k + SM_NORM_GROUP * VW <= c; k += SM_NORM_GROUP * VW)
        sums_group(x + k, ld, nv, shift + k, s + k, s2 + k, SM_NORM_GROUP);
    switch ((c - k) / VW) {
    case 3: sums_group(x + k, ld, nv, shift + k, s + k, s2 + k, 3); break;
    case 2: sums_group(x + k, ld, nv, shift + k, s + k, s2 + k, 2); break;
    case 1: sums_group(x + k, ld, nv, shift + k, s + k, s2 + k, 1); break;
    default: break;
    }
    k += (c - k) / VW * VW;
    if (k < c) sm_norm_sums_scalar(x + k, ld, nv, c - k, shift + k, s + k, s2 + k);
}

static SM_NORM_INLINE vf normalize_v(const float *x, const sm_norm_stats *st, int k)
{
    return V_MUL(V_SUB(V_SUB(V_LOAD(x + k), V_LOAD(st->mean_hi + k)), V_LOAD(st->mean_lo + k)),
                 V_LOAD(st->scale + k));
}

/* mode: 0 no b, 1 b added as it is, 2 IN(b) added. */
static SM_NORM_INLINE void apply_rows(const sm_norm_args *a, int64_t v0, int64_t v1, int cv,
                                      const int mode, const sm_act act)
{
    const vf zero = V_SET1(0.0f), slope = V_SET1(0.01f);
    for (int64_t v = v0; v < v1; v++) {
        const float *ar = a->a + v * a->lda;
        const float *br = mode ? a->b + v * a->ldb : NULL;
        float *y = a->y + v * a->ldy;
        for (int k = 0; k < cv; k += VW) {
            vf t = normalize_v(ar, &a->sa, k);
            if (mode == 2)
                t = V_ADD(t, normalize_v(br, &a->sb, k));
            else if (mode == 1)
                t = V_ADD(t, V_LOAD(br + k));
            /* (0 < t) ? t : ..., as the scalar kernel's t > 0 (NaN included) */
            if (act == SM_ACT_RELU)
                t = V_LT_SELECT(zero, t, t, zero);
            else if (act == SM_ACT_LRELU)
                t = V_LT_SELECT(zero, t, t, V_MUL(slope, t));
            V_STORE(y + k, t);
        }
    }
}

#define SM_NORM_APPLY_ACTS(mode)                                                                   \
    switch (a->act) {                                                                              \
    case SM_ACT_RELU: apply_rows(a, v0, v1, cv, mode, SM_ACT_RELU); break;                         \
    case SM_ACT_LRELU: apply_rows(a, v0, v1, cv, mode, SM_ACT_LRELU); break;                       \
    default: apply_rows(a, v0, v1, cv, mode, SM_ACT_NONE); break;                                  \
    }

void NORM_APPLY_FN(const sm_norm_args *a, int64_t v0, int64_t v1)
{
    const int cv = a->c / VW * VW;
    if (!a->b) {
        SM_NORM_APPLY_ACTS(0)
    } else if (!a->norm_b) {
        SM_NORM_APPLY_ACTS(1)
    } else {
        SM_NORM_APPLY_ACTS(2)
    }
    if (cv < a->c) {
        /* the leftover channels, as a view shifted by cv */
        sm_norm_args rest = *a;
        rest.c = a->c - cv;
        rest.a += cv;
        rest.b = a->b ? a->b + cv : NULL;
        rest.y += cv;
        rest.sa = (sm_norm_stats){a->sa.scale + cv, a->sa.mean_hi + cv, a->sa.mean_lo + cv};
        if (a->b && a->norm_b)
            rest.sb = (sm_norm_stats){a->sb.scale + cv, a->sb.mean_hi + cv, a->sb.mean_lo + cv};
        sm_norm_apply_scalar(&rest, v0, v1);
    }
}
#undef SM_NORM_APPLY_ACTS
