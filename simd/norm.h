/* Instance-norm kernels over channels-last views: n voxels of c channels,
 * voxel v's channels at p + v*ld. The engine's norm op (src/engine/ops.c) splits
 * the voxels over its threads and calls these on each part: one pass for
 * the statistics, one that applies them (with the residual sum and the
 * activation of a residual block's tail). */
#ifndef SM_SIMD_NORM_H
#define SM_SIMD_NORM_H

#include <stddef.h>
#include <stdint.h>

#include "activation.h"

/* Per voxel and channel k: s[k] += x[k] - shift[k], s2[k] += (x[k] - shift[k])^2,
 * in float, voxel after voxel (so every level gives the same sums as the
 * scalar one, bit for bit). */
typedef void (*sm_norm_sums_fn)(const float *x, int64_t ld, int64_t nv, int c, const float *shift,
                                float *s, float *s2);

/* A channel's statistics: x is normalised as ((x - mean_hi) - mean_lo) * scale. */
typedef struct sm_norm_stats {
    const float *scale, *mean_hi, *mean_lo;
} sm_norm_stats;

/* y = act(IN(a) + b'), b' = IN(b) when norm_b, b when b is given without
 * norm_b, nothing when b is NULL. Each term is rounded to float before the
 * sum. y may be a or b (the same rows, in place). */
typedef struct sm_norm_args {
    int c;
    const float *a;
    int64_t lda;
    sm_norm_stats sa;
    const float *b;
    int64_t ldb;
    int norm_b;
    sm_norm_stats sb;
    float *y;
    int64_t ldy;
    sm_act act; /* SM_ACT_NONE, SM_ACT_RELU or SM_ACT_LRELU */
} sm_norm_args;

/* Applies to voxels [v0, v1). */
typedef void (*sm_norm_apply_fn)(const sm_norm_args *a, int64_t v0, int64_t v1);

void sm_norm_sums_scalar(const float *x, int64_t ld, int64_t nv, int c, const float *shift,
                         float *s, float *s2);
void sm_norm_sums_avx2(const float *x, int64_t ld, int64_t nv, int c, const float *shift, float *s,
                       float *s2);
void sm_norm_sums_avx512(const float *x, int64_t ld, int64_t nv, int c, const float *shift,
                         float *s, float *s2);
void sm_norm_sums_neon(const float *x, int64_t ld, int64_t nv, int c, const float *shift, float *s,
                       float *s2);

void sm_norm_apply_scalar(const sm_norm_args *a, int64_t v0, int64_t v1);
void sm_norm_apply_avx2(const sm_norm_args *a, int64_t v0, int64_t v1);
void sm_norm_apply_avx512(const sm_norm_args *a, int64_t v0, int64_t v1);
void sm_norm_apply_neon(const sm_norm_args *a, int64_t v0, int64_t v1);

#endif
