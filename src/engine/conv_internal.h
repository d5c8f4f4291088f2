/* Private to the convolution backends: the dispatch and reference (conv.c),
 * the GEMM backend (conv_blas.c), oneDNN (conv_onednn.c) and
 * Winograd (conv_winograd.c).
 * conv.c validates every argument before calling a backend. */
#ifndef SM_CONV_INTERNAL_H
#define SM_CONV_INTERNAL_H

#include "engine/conv.h"

#include <stddef.h>

/* Extents of one forward call: input d, h, w and the output they give,
 * of which planes [z0, z1) are computed (dst points at plane z0; 0 and od
 * but for sm_conv_forward_planes, which only Winograd runs). */
typedef struct sm_conv_dims {
    int d, h, w;
    int od, oh, ow;
    int z0, z1;
} sm_conv_dims;

struct sm_conv_onednn;
struct sm_conv_winograd;

struct sm_conv {
    sm_conv_kind kind;
    sm_conv_params p;
    /* Weights repacked to (kd, kh, kw, cin, cout). The reference's inner loop
     * runs over cout contiguously, and read as a row-major (k^3*cin) x cout
     * matrix it is the GEMM's right operand, whose rows match the im2col
     * column order (kd, kh, kw, cin). oneDNN reorders from it. */
    float *weight;                 /* NULL once the oneDNN or Winograd backend holds its own copy */
    float *bias;                   /* cout floats, or NULL */
    struct sm_conv_onednn *onednn; /* oneDNN's primitive cache, else NULL */
    struct sm_conv_winograd *wino; /* Winograd's state, else NULL */
};

/* Length of the sum behind each output value: k^3 * cin. */
static inline size_t sm_conv_reduction_len(const sm_conv_params *p)
{
    return (size_t)p->k * (size_t)p->k * (size_t)p->k * (size_t)p->cin;
}

static inline size_t sm_conv_out_voxels(const sm_conv_dims *g)
{
    return (size_t)g->od * (size_t)g->oh * (size_t)g->ow;
}

sm_status sm_conv_blas_forward(const sm_conv *c, const sm_conv_dims *g, const float *src,
                               size_t src_ld, float *dst, size_t dst_ld);

/* Defined only in builds with oneDNN (SM_HAVE_ONEDNN). */
int sm_conv_onednn_bf16_supported(void);
sm_status sm_conv_onednn_init(sm_conv *c);
sm_status sm_conv_onednn_forward(sm_conv *c, const sm_conv_dims *g, const float *src, size_t src_ld,
                                 float *dst, size_t dst_ld);
void sm_conv_onednn_release(sm_conv *c);
/* Bytes of the weights oneDNN holds in its own layout (0 before the first
 * forward reorders them). */
size_t sm_conv_onednn_weight_bytes(const sm_conv *c);

/* The Winograd backend: init transforms c->weight and frees it when the
 * transformed weights are small enough to keep; otherwise each forward
 * transforms it into work (sm_conv_winograd_workspace floats; NULL: a
 * buffer of its own). */
sm_status sm_conv_winograd_init(sm_conv *c);
size_t sm_conv_winograd_workspace(const sm_conv *c);
sm_status sm_conv_winograd_forward(sm_conv *c, const sm_conv_dims *g, const float *src,
                                   size_t src_ld, float *dst, size_t dst_ld, float *work);
void sm_conv_winograd_release(sm_conv *c);
/* Bytes of the transformed weights kept (0 when each forward makes them)
 * and of the padded bias. */
size_t sm_conv_winograd_weight_bytes(const sm_conv *c);

#endif
