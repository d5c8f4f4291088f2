/* Scalar instance-norm kernels: the reference every SIMD variant is tested
 * against (and the channels a vector kernel leaves over). */
#include "norm.h"

#include <stddef.h>

void sm_norm_sums_scalar(const float *x, int64_t ld, int64_t nv, int c, const float *shift,
                         float *s, float *s2)
{
    for (int64_t v = 0; v < nv; v++) {
        const float *row = x + v * ld;
        for (int k = 0; k < c; k++) {
            const float d = row[k] - shift[k];
            s[k] += d;
            s2[k] += d * d;
        }
    }
}

static inline float normalize(float x, const sm_norm_stats *st, int k)
{
    return ((x - st->mean_hi[k]) - st->mean_lo[k]) * st->scale[k];
}

void sm_norm_apply_scalar(const sm_norm_args *a, int64_t v0, int64_t v1)
{
    for (int64_t v = v0; v < v1; v++) {
        const float *ar = a->a + v * a->lda;
        const float *br = a->b ? a->b + v * a->ldb : NULL;
        float *y = a->y + v * a->ldy;
        for (int k = 0; k < a->c; k++) {
            /* every read of row v before its write: y may be a or b */
            float t = normalize(ar[k], &a->sa, k);
            if (br) t += a->norm_b ? normalize(br[k], &a->sb, k) : br[k];
            if (a->act == SM_ACT_RELU)
                t = t > 0.0f ? t : 0.0f;
            else if (a->act == SM_ACT_LRELU)
                t = t > 0.0f ? t : 0.01f * t;
            y[k] = t;
        }
    }
}
