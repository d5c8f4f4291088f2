/* SegMamba-V2's squeeze-excitation gate (spec 7.2): per channel
 * g = sigmoid(fc2(ReLU(fc1(mean over voxels of x)))), out = x * g. */
#ifndef SM_SE_H
#define SM_SE_H

#include <stdint.h>

#include "core/error.h"

typedef struct sm_se sm_se;

/* c channels squeezed to hidden; fc1_w (hidden, c), fc1_b (hidden), fc2_w
 * (c, hidden), fc2_b (c) in PyTorch's Linear layout, copied. */
sm_status sm_se_create(int c, int hidden, const float *fc1_w, const float *fc1_b,
                       const float *fc2_w, const float *fc2_b, sm_se **out);

/* x: n voxels of c channels, ld apart; out may equal x. */
sm_status sm_se_forward(const sm_se *se, const float *x, int x_ld, float *out, int out_ld,
                        int64_t n);

/* The gate's sizes and its copies of the weights, in sm_se_create's layout
 * (for a device backend, cuda_optional/, to copy). */
typedef struct sm_se_weights {
    int c, hidden;
    const float *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} sm_se_weights;
sm_se_weights sm_se_get_weights(const sm_se *se);

/* Bytes of its weights (its own copy). */
size_t sm_se_weight_bytes(const sm_se *se);
void sm_se_free(sm_se *se);

#endif
