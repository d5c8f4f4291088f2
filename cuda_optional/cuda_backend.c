/* The CUDA backend's host side: device and memory handling, the op set on
 * device arrays (cuBLAS GEMMs and the kernels of kernels.cu), and the
 * runner for a model's graph. See cuda_backend.h. */
#include "cuda_backend.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "engine/conv_internal.h"
#include "cuda_optional/kernels.h"

/* The kernels take these as plain ints. */
#define SAME(a, b) ((int)(a) == (int)(b))
_Static_assert(SAME(SM_CUK_NONE, SM_ACT_NONE) && SAME(SM_CUK_RELU, SM_ACT_RELU) &&
                   SAME(SM_CUK_LRELU, SM_ACT_LRELU) && SAME(SM_CUK_GELU, SM_ACT_GELU),
               "kernel activation codes follow sm_act");
_Static_assert(SAME(SM_CUK_FORWARD, SM_ORDER_FORWARD) && SAME(SM_CUK_BACKWARD, SM_ORDER_BACKWARD) &&
                   SAME(SM_CUK_SLICE, SM_ORDER_SLICE) && SAME(SM_CUK_HDW, SM_ORDER_HDW) &&
                   SAME(SM_CUK_WHD, SM_ORDER_WHD) && SM_ORDER_COUNT == 5,
               "kernel scan orders follow sm_order");
#undef SAME

static sm_status cuda_check(cudaError_t e, const char *what)
{
    if (e == cudaSuccess) return SEGMAMBA_OK;
    return sm_fail(e == cudaErrorMemoryAllocation ? SEGMAMBA_E_NOMEM : SEGMAMBA_E_BACKEND,
                   "CUDA: %s: %s", what, cudaGetErrorString(e));
}

static sm_status blas_check(cublasStatus_t s, const char *what)
{
    if (s == CUBLAS_STATUS_SUCCESS) return SEGMAMBA_OK;
    return sm_fail(s == CUBLAS_STATUS_ALLOC_FAILED ? SEGMAMBA_E_NOMEM : SEGMAMBA_E_BACKEND,
                   "cuBLAS: %s: %s", what, cublasGetStatusString(s));
}

#define CU_TRY(call, what) SM_TRY(cuda_check((call), (what)))

sm_status sm_cuda_probe(char *info, size_t cap)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess)
        return sm_fail(SEGMAMBA_E_BACKEND, "no usable CUDA device (the CUDA runtime says: %s)",
                       cudaGetErrorString(e));
    if (n < 1) return sm_fail(SEGMAMBA_E_BACKEND, "no CUDA device found");
    struct cudaDeviceProp p;
    CU_TRY(cudaGetDeviceProperties(&p, 0), "reading device 0's properties");
    if (info && cap)
        snprintf(info, cap, "%s, compute capability %d.%d, %.1f GiB", p.name, p.major, p.minor,
                 (double)p.totalGlobalMem / (double)(1u << 30));
    return SEGMAMBA_OK;
}

/* ---- context ------------------------------------------------------------ */

/* The start of a stretch of device work, timed by an event: the stretch runs
 * to the next mark and counts for kind and for node (-1: none). */
typedef struct mark {
    int kind, node;
} mark;

struct sm_cuda_ctx {
    cudaStream_t stream;
    cublasHandle_t blas;
    float *work; /* the ops' temporaries; one op at a time uses it */
    size_t work_floats;
    size_t chunk_floats;
    /* Timing of the ops enqueued while timing is set (sm_cuda_model_forward). */
    int timing, node;
    mark *marks;
    cudaEvent_t *events; /* events[i] belongs to marks[i] */
    int n_marks, cap_marks;
};

#define DEFAULT_CHUNK_FLOATS ((size_t)64 << 20)

sm_status sm_cuda_ctx_create(int tf32, sm_cuda_ctx **out)
{
    *out = NULL;
    SM_TRY(sm_cuda_probe(NULL, 0));
    CU_TRY(cudaSetDevice(0), "selecting device 0");
    sm_cuda_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return sm_fail(SEGMAMBA_E_NOMEM, "CUDA backend: out of memory");
    ctx->chunk_floats = DEFAULT_CHUNK_FLOATS;
    ctx->node = -1;
    sm_status st = cuda_check(cudaStreamCreate(&ctx->stream), "creating a stream");
    if (st == SEGMAMBA_OK) {
        st = blas_check(cublasCreate(&ctx->blas), "creating a handle");
        if (st != SEGMAMBA_OK) ctx->blas = NULL;
    }
    if (st == SEGMAMBA_OK) st = blas_check(cublasSetStream(ctx->blas, ctx->stream), "setting the stream");
    /* Without TF32 the GEMMs run in full fp32, as on the CPU. */
    if (st == SEGMAMBA_OK)
        st = blas_check(cublasSetMathMode(ctx->blas, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH
                                                           : CUBLAS_DEFAULT_MATH),
                        "setting the math mode");
    if (st != SEGMAMBA_OK) {
        sm_cuda_ctx_free(ctx);
        return st;
    }
    *out = ctx;
    return SEGMAMBA_OK;
}

void sm_cuda_ctx_free(sm_cuda_ctx *ctx)
{
    if (!ctx) return;
    for (int i = 0; i < ctx->cap_marks; i++)
        if (ctx->events[i]) cudaEventDestroy(ctx->events[i]);
    free(ctx->events);
    free(ctx->marks);
    cudaFree(ctx->work);
    if (ctx->blas) cublasDestroy(ctx->blas);
    if (ctx->stream) cudaStreamDestroy(ctx->stream);
    free(ctx);
}

void sm_cuda_ctx_set_chunk_floats(sm_cuda_ctx *ctx, size_t floats)
{
    ctx->chunk_floats = floats ? floats : DEFAULT_CHUNK_FLOATS;
}

/* The workspace, at least floats long. Growing it frees the old one, which
 * waits for the work already enqueued (cudaFree synchronises). */
static sm_status work(sm_cuda_ctx *ctx, size_t floats, float **out)
{
    if (floats > ctx->work_floats) {
        cudaFree(ctx->work);
        ctx->work = NULL;
        ctx->work_floats = 0;
        CU_TRY(cudaMalloc((void **)&ctx->work, floats * sizeof(float)),
               "allocating the workspace");
        ctx->work_floats = floats;
    }
    *out = ctx->work;
    return SEGMAMBA_OK;
}

/* Starts a stretch of kind (an sm_op_kind) at this point of the stream. */
static sm_status mark_time(sm_cuda_ctx *ctx, int kind)
{
    if (!ctx->timing) return SEGMAMBA_OK;
    if (ctx->n_marks == ctx->cap_marks) {
        const int cap = ctx->cap_marks ? 2 * ctx->cap_marks : 256;
        mark *m = realloc(ctx->marks, (size_t)cap * sizeof *m);
        if (m) ctx->marks = m;
        cudaEvent_t *e = realloc(ctx->events, (size_t)cap * sizeof *e);
        if (e) ctx->events = e;
        if (!m || !e) return sm_fail(SEGMAMBA_E_NOMEM, "CUDA backend: out of memory for timing");
        for (int i = ctx->cap_marks; i < cap; i++) ctx->events[i] = NULL;
        ctx->cap_marks = cap;
    }
    cudaEvent_t *e = &ctx->events[ctx->n_marks];
    if (!*e) CU_TRY(cudaEventCreate(e), "creating an event");
    CU_TRY(cudaEventRecord(*e, ctx->stream), "recording an event");
    ctx->marks[ctx->n_marks++] = (mark){.kind = kind, .node = ctx->node};
    return SEGMAMBA_OK;
}

sm_status sm_cuda_alloc(size_t floats, float **out)
{
    *out = NULL;
    CU_TRY(cudaMalloc((void **)out, (floats ? floats : 1) * sizeof(float)),
           "allocating device memory");
    return SEGMAMBA_OK;
}

void sm_cuda_free(float *p) { cudaFree(p); }

sm_status sm_cuda_upload(sm_cuda_ctx *ctx, float *dst, const float *src, size_t floats)
{
    CU_TRY(cudaMemcpyAsync(dst, src, floats * sizeof(float), cudaMemcpyHostToDevice, ctx->stream),
           "copying to the device");
    return SEGMAMBA_OK;
}

sm_status sm_cuda_download(sm_cuda_ctx *ctx, float *dst, const float *src, size_t floats)
{
    CU_TRY(cudaMemcpyAsync(dst, src, floats * sizeof(float), cudaMemcpyDeviceToHost, ctx->stream),
           "copying from the device");
    CU_TRY(cudaStreamSynchronize(ctx->stream), "running the device work");
    return SEGMAMBA_OK;
}

/* Weights: several host arrays in one device allocation. */
typedef struct piece {
    const float *src;
    size_t n;
    float **dst;
} piece;

static sm_status upload_pieces(const piece *pieces, int count, float **block)
{
    size_t total = 0;
    for (int i = 0; i < count; i++) total += pieces[i].src ? pieces[i].n : 0;
    SM_TRY(sm_cuda_alloc(total, block));
    size_t at = 0;
    for (int i = 0; i < count; i++) {
        *pieces[i].dst = NULL;
        if (!pieces[i].src) continue;
        *pieces[i].dst = *block + at;
        sm_status st = cuda_check(cudaMemcpy(*block + at, pieces[i].src, pieces[i].n * sizeof(float),
                                             cudaMemcpyHostToDevice),
                                  "copying weights to the device");
        if (st != SEGMAMBA_OK) {
            cudaFree(*block);
            *block = NULL;
            return st;
        }
        at += pieces[i].n;
    }
    return SEGMAMBA_OK;
}

/* Row-major C (M x N) = A (M x K, lda) op(B) + beta C, where op(B) is B
 * (K x N, ldb) or, with trans_b, the transpose of B (N x K, ldb): the CPU's
 * sm_sgemm(0, trans_b, ...). Read column-major, the same memory holds the
 * transposes, so cuBLAS computes C^T = op(B)^T A^T. */
static sm_status gemm(sm_cuda_ctx *ctx, int trans_b, int64_t M, int N, int K, const float *A,
                      int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M > INT_MAX)
        return sm_fail(SEGMAMBA_E_UNSUPPORTED, "CUDA backend: a GEMM of %lld rows is too large",
                       (long long)M);
    if (M == 0 || N == 0) return SEGMAMBA_OK;
    const float one = 1.0f;
    return blas_check(cublasSgemm(ctx->blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, N,
                                  (int)M, K, &one, B, ldb, A, lda, &beta, C, ldc),
                      "SGEMM");
}

/* Rows per chunk of a temporary with cols floats per row. */
static int64_t chunk_rows(const sm_cuda_ctx *ctx, int64_t rows, int64_t cols)
{
    int64_t r = (int64_t)(ctx->chunk_floats / (size_t)cols);
    if (r < 1) r = 1;
    return r < rows ? r : rows;
}

/* ---- convolution --------------------------------------------------------- */

struct sm_cuda_conv {
    sm_conv_params p;
    float *block;
    float *weight; /* (k^3 cin, cout), rows in im2col column order */
    float *bias;   /* cout, or NULL */
};

sm_status sm_cuda_conv_upload(const sm_conv *c, sm_cuda_conv **out)
{
    *out = NULL;
    if (!c->weight)
        return sm_fail(SEGMAMBA_E_BACKEND, "CUDA backend: the convolution's packed weights were "
                       "released by its %s backend", sm_conv_kind_name(c->kind));
    if (c->p.precision != SM_PREC_F32)
        return sm_fail(SEGMAMBA_E_UNSUPPORTED, "CUDA backend: convolutions run in fp32 or TF32, "
                       "not %s", sm_precision_name(c->p.precision));
    sm_cuda_conv *dc = calloc(1, sizeof *dc);
    if (!dc) return sm_fail(SEGMAMBA_E_NOMEM, "CUDA backend: out of memory");
    dc->p = c->p;
    const piece pieces[] = {
        {c->weight, sm_conv_reduction_len(&c->p) * (size_t)c->p.cout, &dc->weight},
        {c->bias, (size_t)c->p.cout, &dc->bias},
    };
    sm_status st = upload_pieces(pieces, 2, &dc->block);
    if (st != SEGMAMBA_OK) {
        free(dc);
        return st;
    }
    *out = dc;
    return SEGMAMBA_OK;
}

void sm_cuda_conv_free(sm_cuda_conv *c)
{
    if (!c) return;
    cudaFree(c->block);
    free(c);
}

sm_status sm_cuda_conv_forward(sm_cuda_ctx *ctx, const sm_cuda_conv *c, const float *src,
                               int src_ld, int d, int h, int w, float *dst, int dst_ld)
{
    const sm_conv_params *p = &c->p;
    if (src_ld < p->cin || dst_ld < p->cout || d < 1 || h < 1 || w < 1)
        return sm_fail(SEGMAMBA_E_ARG, "CUDA convolution: bad arguments (src_ld %d for cin %d, "
                       "dst_ld %d for cout %d, %dx%dx%d)", src_ld, p->cin, dst_ld, p->cout, d, h, w);
    const sm_cuk_conv_geom g = {.d = d, .h = h, .w = w,
                                .od = sm_conv_out_size(p, d), .oh = sm_conv_out_size(p, h),
                                .ow = sm_conv_out_size(p, w),
                                .cin = p->cin, .k = p->k, .stride = p->stride, .pad = p->pad,
                                .dilation = sm_conv_dilation(p)};
    if (g.od < 1 || g.oh < 1 || g.ow < 1)
        return sm_fail(SEGMAMBA_E_SHAPE, "CUDA convolution: %dx%dx%d volume is smaller than the "
                       "%d^3 kernel (dilation %d) with padding %d", d, h, w, p->k, g.dilation,
                       p->pad);
    const int64_t nvox = (int64_t)g.od * g.oh * g.ow;
    const int K = (int)sm_conv_reduction_len(p); /* <= INT_MAX: sm_conv_create checked */
    if (p->k == 1 && p->stride == 1 && p->pad == 0) {
        /* The activations are already the GEMM's left operand. */
        SM_TRY(gemm(ctx, 0, nvox, p->cout, K, src, src_ld, c->weight, p->cout, 0.0f, dst, dst_ld));
    } else {
        const int64_t rows = chunk_rows(ctx, nvox, K);
        float *col;
        SM_TRY(work(ctx, (size_t)(rows * K), &col));
        for (int64_t v0 = 0; v0 < nvox; v0 += rows) {
            const int64_t r = nvox - v0 < rows ? nvox - v0 : rows;
            CU_TRY(sm_cuk_im2col(ctx->stream, src, src_ld, g, v0, r, col), "im2col");
            SM_TRY(gemm(ctx, 0, r, p->cout, K, col, K, c->weight, p->cout, 0.0f,
                        dst + v0 * dst_ld, dst_ld));
        }
    }
    if (c->bias || p->act == SM_ACT_RELU)
        CU_TRY(sm_cuk_bias_act(ctx->stream, dst, dst_ld, nvox, p->cout, c->bias,
                               p->act == SM_ACT_RELU ? SM_CUK_RELU : SM_CUK_NONE),
               "convolution bias");
    return SEGMAMBA_OK;
}

/* ---- transposed convolution ------------------------------------------------ */

struct sm_cuda_convt2 {
    int cin, cout;
    float *block;
    float *weight; /* as sm_convt2_weights: (cin, 8 cout), column (a*4 + b*2 + c)*cout + co */
};

sm_status sm_cuda_convt2_upload(const sm_convt2 *t, sm_cuda_convt2 **out)
{
    *out = NULL;
    int cin, cout;
    /* The CPU op's GEMM operand is already this layout (src/engine/ops.h). */
    const float *weight = sm_convt2_weights(t, &cin, &cout);
    sm_cuda_convt2 *dt = calloc(1, sizeof *dt);
    if (!dt) return sm_fail(SEGMAMBA_E_NOMEM, "CUDA backend: out of memory");
    dt->cin = cin;
    dt->cout = cout;
    const piece pieces[] = {{weight, (size_t)cin * 8 * (size_t)cout, &dt->weight}};
    sm_status st = upload_pieces(pieces, 1, &dt->block);
    if (st != SEGMAMBA_OK) {
        free(dt);
        return st;
    }
    *out = dt;
    return SEGMAMBA_OK;
}

void sm_cuda_convt2_free(sm_cuda_convt2 *t)
{
    if (!t) return;
    cudaFree(t->block);
    free(t);
}

sm_status sm_cuda_convt2_forward(sm_cuda_ctx *ctx, const sm_cuda_convt2 *t, const float *src,
                                 int src_ld, int d, int h, int w, float *dst, int dst_ld)
{
    if (src_ld < t->cin || dst_ld < t->cout || d < 1 || h < 1 || w < 1)
        return sm_fail(SEGMAMBA_E_ARG, "CUDA transposed convolution: bad arguments");
    const int64_t n = (int64_t)d * h * w;
    const int cols = 8 * t->cout;
    const int64_t rows = chunk_rows(ctx, n, cols);
    float *tmp;
    SM_TRY(work(ctx, (size_t)(rows * cols), &tmp));
    for (int64_t v0 = 0; v0 < n; v0 += rows) {
        const int64_t r = n - v0 < rows ? n - v0 : rows;
        SM_TRY(gemm(ctx, 0, r, cols, t->cin, src + v0 * src_ld, src_ld, t->weight, cols, 0.0f,
                    tmp, cols));
        CU_TRY(sm_cuk_convt2_scatter(ctx->stream, tmp, v0, r, h, w, t->cout, dst, dst_ld),
               "transposed convolution scatter");
    }
    return SEGMAMBA_OK;
}

/* ---- norms and pointwise ops ------------------------------------------------ */

sm_status sm_cuda_instance_norm(sm_cuda_ctx *ctx, const float *src, int src_ld, float *dst,
                                int dst_ld, int64_t n, int c, sm_act act)
{
    if (n < 1 || c < 1) return sm_fail(SEGMAMBA_E_ARG, "CUDA instance norm: empty input");
    /* About a thousand voxels per partial sum, at most 1024 partial sums. */
    const int groups = (int)(n / 1024 < 1 ? 1 : n / 1024 > 1024 ? 1024 : n / 1024);
    float *wk;
    SM_TRY(work(ctx, 2 * ((size_t)groups * c + 2 * (size_t)c), &wk));
    double *partial = (double *)wk, *mean = partial + (size_t)groups * c, *scale = mean + c;
    cudaStream_t s = ctx->stream;
    CU_TRY(sm_cuk_channel_partials(s, src, src_ld, n, c, NULL, groups, partial), "instance norm");
    CU_TRY(sm_cuk_channel_mean(s, partial, groups, c, n, mean), "instance norm");
    CU_TRY(sm_cuk_channel_partials(s, src, src_ld, n, c, mean, groups, partial), "instance norm");
    CU_TRY(sm_cuk_channel_scale(s, partial, groups, c, n, 1e-5, scale), "instance norm");
    CU_TRY(sm_cuk_normalize(s, src, src_ld, dst, dst_ld, n, c, mean, scale, (int)act),
           "instance norm");
    return SEGMAMBA_OK;
}

sm_status sm_cuda_layer_norm(sm_cuda_ctx *ctx, const float *src, int src_ld, float *dst,
                             int dst_ld, int64_t n, int c, const float *weight,
                             const float *bias)
{
    CU_TRY(sm_cuk_layer_norm(ctx->stream, src, src_ld, dst, dst_ld, n, c, weight, bias),
           "layer norm");
    return SEGMAMBA_OK;
}

sm_status sm_cuda_add(sm_cuda_ctx *ctx, const float *a, int lda, const float *b, int ldb,
                      float *dst, int dst_ld, int64_t n, int c, sm_act act)
{
    CU_TRY(sm_cuk_add(ctx->stream, a, lda, b, ldb, dst, dst_ld, n, c, (int)act), "add");
    return SEGMAMBA_OK;
}

sm_status sm_cuda_activate(sm_cuda_ctx *ctx, const float *src, int src_ld, float *dst,
                           int dst_ld, int64_t n, int c, sm_act act)
{
    CU_TRY(sm_cuk_act(ctx->stream, src, src_ld, dst, dst_ld, n, c, (int)act), "activation");
    return SEGMAMBA_OK;
}

sm_status sm_cuda_fue(sm_cuda_ctx *ctx, const float *src, int src_ld, float *dst, int dst_ld,
                      int64_t n, int c)
{
    CU_TRY(sm_cuk_fue(ctx->stream, src, src_ld, dst, dst_ld, n, c), "FUE");
    return SEGMAMBA_OK;
}

/* ---- squeeze-excitation --------------------------------------------------------- */

struct sm_cuda_se {
    int c, hidden;
    float *block;
    float *fc1_w, *fc1_b, *fc2_w, *fc2_b; /* as sm_se_get_weights */
};

sm_status sm_cuda_se_upload(const sm_se *se, sm_cuda_se **out)
{
    *out = NULL;
    const sm_se_weights w = sm_se_get_weights(se);
    sm_cuda_se *ds = calloc(1, sizeof *ds);
    if (!ds) return sm_fail(SEGMAMBA_E_NOMEM, "CUDA backend: out of memory");
    ds->c = w.c;
    ds->hidden = w.hidden;
    const size_t nw = (size_t)w.c * (size_t)w.hidden;
    const piece pieces[] = {
        {w.fc1_w, nw, &ds->fc1_w},
        {w.fc1_b, (size_t)w.hidden, &ds->fc1_b},
        {w.fc2_w, nw, &ds->fc2_w},
        {w.fc2_b, (size_t)w.c, &ds->fc2_b},
    };
    sm_status st = upload_pieces(pieces, 4, &ds->block);
    if (st != SEGMAMBA_OK) {
        free(ds);
        return st;
    }
    *out = ds;
    return SEGMAMBA_OK;
}

void sm_cuda_se_free(sm_cuda_se *se)
{
    if (!se) return;
    cudaFree(se->block);
    free(se);
}

sm_status sm_cuda_se_forward(sm_cuda_ctx *ctx, const sm_cuda_se *se, const float *x, int x_ld,
                             float *out, int out_ld, int64_t n)
{
    const int c = se->c, hid = se->hidden;
    if (n < 1) return sm_fail(SEGMAMBA_E_ARG, "CUDA squeeze-excitation: empty volume");
    if (x_ld < c || out_ld < c)
        return sm_fail(SEGMAMBA_E_ARG, "CUDA squeeze-excitation: strides %d and %d for %d "
                       "channels", x_ld, out_ld, c);
    /* The mean as the instance norm's (partial sums in double), then the
     * two Linear layers, then the gate on every voxel. */
    const int groups = (int)(n / 1024 < 1 ? 1 : n / 1024 > 1024 ? 1024 : n / 1024);
    float *wk;
    SM_TRY(work(ctx, 2 * ((size_t)groups * c + (size_t)c) + (size_t)hid + (size_t)c, &wk));
    double *partial = (double *)wk, *mean = partial + (size_t)groups * c;
    float *hidden = (float *)(mean + c), *gate = hidden + hid;
    cudaStream_t s = ctx->stream;
    CU_TRY(sm_cuk_channel_partials(s, x, x_ld, n, c, NULL, groups, partial), "squeeze-excitation");
    CU_TRY(sm_cuk_channel_mean(s, partial, groups, c, n, mean), "squeeze-excitation");
    CU_TRY(sm_cuk_se_hidden(s, mean, c, hid, se->fc1_w, se->fc1_b, hidden), "squeeze-excitation");
    CU_TRY(sm_cuk_se_gate(s, hidden, c, hid, se->fc2_w, se->fc2_b, gate), "squeeze-excitation");
    CU_TRY(sm_cuk_scale_channels(s, x, x_ld, out, out_ld, n, c, gate), "squeeze-excitation");
    return SEGMAMBA_OK;
}

/* ---- the Mamba layer ------------------------------------------------------------ */

static sm_cuk_seq device_seq(const sm_seq *s)
{
    return (sm_cuk_seq){.order = (int)s->order, .L = s->L, .S = s->S, .d = s->d, .h = s->h,
                        .w = s->w};
}

static sm_status check_seq(const sm_seq *s, const char *what)
{
    if (sm_seq_valid(s)) return SEGMAMBA_OK;
    return sm_fail(SEGMAMBA_E_ARG, "CUDA %s: order %d over %lld tokens (%lld slices, volume "
                   "%lldx%lldx%lld)", what, (int)s->order, (long long)s->L, (long long)s->S,
                   (long long)s->d, (long long)s->h, (long long)s->w);
}

sm_status sm_cuda_conv1d_silu(sm_cuda_ctx *ctx, const float *x, int64_t ldx, const float *w,
                              const float *b, int K, int di, const sm_seq *seq, float *u)
{
    SM_TRY(check_seq(seq, "causal conv1d"));
    const sm_cuk_seq ds = device_seq(seq);
    CU_TRY(sm_cuk_conv1d_silu(ctx->stream, x, ldx, w, b, K, di, &ds, u), "causal conv1d");
    return SEGMAMBA_OK;
}

sm_status sm_cuda_scan(sm_cuda_ctx *ctx, const sm_scan_args *a, int d_inner, int64_t chunk)
{
    const sm_cuk_scan_args k = {
        .seq = device_seq(&a->seq), .d_inner = d_inner,
        .n_state = a->n_state, .u = a->u, .ld_u = a->ld_u, .delta = a->delta,
        .ld_delta = a->ld_delta, .delta_bias = a->delta_bias, .A = a->A, .B = a->B, .C = a->C,
        .ld_bc = a->ld_bc, .D = a->D, .z = a->z, .ld_z = a->ld_z, .y = a->y, .ld_y = a->ld_y};
    if (a->n_state < 1 || a->n_state > SM_CUK_MAX_STATE)
        return sm_fail(SEGMAMBA_E_UNSUPPORTED, "CUDA scan: state size %d is outside 1..%d",
                       a->n_state, SM_CUK_MAX_STATE);
    SM_TRY(check_seq(&a->seq, "scan"));
    if (!a->delta || !a->z)
        return sm_fail(SEGMAMBA_E_ARG, "CUDA scan: delta and z are made by the caller");
    if (chunk <= 0) chunk = sm_cuk_scan_default_chunk(a->seq.L);
    float *wk;
    SM_TRY(work(ctx, (size_t)sm_cuk_scan_work_floats(&k, chunk), &wk));
    CU_TRY(sm_cuk_scan(ctx->stream, &k, chunk, wk), "selective scan");
    return SEGMAMBA_OK;
}

typedef struct dev_dir {
    float *conv_wt, *conv_b, *x_proj, *dt_proj, *dt_bias, *A, *D;
} dev_dir;

struct sm_cuda_mamba {
    /* The CPU layer's sizes, directions and orderings, without its weights:
     * what sm_mamba_scans and sm_mamba_scratch_per_token read. */
    sm_mamba shape;
    float *block;
    float *norm_w, *norm_b, *in_proj, *out_proj;
    dev_dir dir[SM_DIRECTIONS];
};

sm_status sm_cuda_mamba_upload(const sm_mamba *m, sm_cuda_mamba **out)
{
    *out = NULL;
    if (m->d_state < 1 || m->d_state > SM_CUK_MAX_STATE)
        return sm_fail(SEGMAMBA_E_UNSUPPORTED, "CUDA backend: Mamba state size %d is outside "
                       "1..%d", m->d_state, SM_CUK_MAX_STATE);
    if (m->n_dir < 1 || m->n_dir > SM_DIRECTIONS ||
        (m->orderings != 1 && (m->orderings != SM_V2_ORDERINGS || m->n_dir != 1)))
        return sm_fail(SEGMAMBA_E_ARG, "CUDA backend: Mamba layer with %d directions and %d "
                       "orderings", m->n_dir, m->orderings);
    sm_cuda_mamba *dm = calloc(1, sizeof *dm);
    if (!dm) return sm_fail(SEGMAMBA_E_NOMEM, "CUDA backend: out of memory");
    dm->shape = (sm_mamba){.dim = m->dim, .d_inner = m->d_inner, .d_state = m->d_state,
                           .dt_rank = m->dt_rank, .d_conv = m->d_conv, .n_dir = m->n_dir,
                           .orderings = m->orderings};
    const size_t C = (size_t)m->dim, di = (size_t)m->d_inner, N = (size_t)m->d_state,
                 R = (size_t)m->dt_rank, K = (size_t)m->d_conv;
    piece pieces[4 + 7 * SM_DIRECTIONS] = {
        {m->norm_w, C, &dm->norm_w},
        {m->norm_b, C, &dm->norm_b},
        {m->in_proj, 2 * di * C, &dm->in_proj},
        {m->out_proj, C * di, &dm->out_proj},
    };
    int np = 4;
    for (int s = 0; s < m->n_dir; s++) {
        const sm_mamba_dir *h = &m->dir[s];
        dev_dir *d = &dm->dir[s];
        pieces[np++] = (piece){h->conv_wt, K * di, &d->conv_wt};
        pieces[np++] = (piece){h->conv_b, di, &d->conv_b};
        pieces[np++] = (piece){h->x_proj, (R + 2 * N) * di, &d->x_proj};
        pieces[np++] = (piece){h->dt_proj, di * R, &d->dt_proj};
        pieces[np++] = (piece){h->dt_bias, di, &d->dt_bias};
        pieces[np++] = (piece){h->A, di * N, &d->A};
        pieces[np++] = (piece){h->D, di, &d->D};
    }
    for (int i = 0; i < np; i++)
        if (!pieces[i].src) {
            free(dm);
            return sm_fail(SEGMAMBA_E_ARG, "CUDA backend: Mamba layer without weight %d", i);
        }
    sm_status st = upload_pieces(pieces, np, &dm->block);
    if (st != SEGMAMBA_OK) {
        free(dm);
        return st;
    }
    *out = dm;
    return SEGMAMBA_OK;
}

void sm_cuda_mamba_free(sm_cuda_mamba *m)
{
    if (!m) return;
    cudaFree(m->block);
    free(m);
}

int64_t sm_cuda_mamba_scratch_per_token(const sm_cuda_mamba *m)
{
    return sm_mamba_scratch_per_token(&m->shape, 1);
}

sm_status sm_cuda_mamba_forward(sm_cuda_ctx *ctx, const sm_cuda_mamba *m, const float *x,
                                int x_ld, float *out, int out_ld, int d, int h, int w,
                                int64_t nslices, float *scratch, int64_t chunk)
{
    const int C = m->shape.dim, di = m->shape.d_inner, N = m->shape.d_state,
              R = m->shape.dt_rank;
    const int np = R + 2 * N;
    const int64_t L = (int64_t)d * h * w;
    /* The CPU layer's scans, in its order (their sum is added in that order). */
    sm_seq seqs[SM_DIRECTIONS];
    int dirs[SM_DIRECTIONS];
    const int n_scans = sm_mamba_scans(&m->shape, d, h, w, nslices, seqs, dirs);
    for (int s = 0; s < n_scans; s++)
        if (!sm_seq_valid(&seqs[s]))
            return sm_fail(SEGMAMBA_E_ARG, "CUDA Mamba layer: %dx%dx%d tokens in %lld slices", d,
                           h, w, (long long)nslices);
    /* The device layout (src/engine/mamba.h): xz whole, delta made by a GEMM. */
    const sm_mamba_scratch sc = sm_mamba_scratch_split(C, di, N, R, 1, L, scratch);
    float *xz = sc.x, *u = sc.u, *y = sc.y, *p = sc.p, *delta = sc.delta;
    float *xn = u; /* the normed input, dead once in_proj has read it */

    SM_TRY(mark_time(ctx, SM_KIND_NORM));
    SM_TRY(sm_cuda_layer_norm(ctx, x, x_ld, xn, C, L, C, m->norm_w, m->norm_b));
    SM_TRY(mark_time(ctx, SM_KIND_OTHER));
    SM_TRY(gemm(ctx, 1, L, 2 * di, C, xn, C, m->in_proj, C, 0.0f, xz, 2 * di));
    CU_TRY(cudaMemsetAsync(y, 0, (size_t)L * di * sizeof *y, ctx->stream), "clearing y");
    for (int s = 0; s < n_scans; s++) {
        const dev_dir *dir = &m->dir[dirs[s]];
        SM_TRY(sm_cuda_conv1d_silu(ctx, xz, 2 * di, dir->conv_wt, dir->conv_b, m->shape.d_conv,
                                   di, &seqs[s], u));
        SM_TRY(gemm(ctx, 1, L, np, di, u, di, dir->x_proj, di, 0.0f, p, np));
        SM_TRY(gemm(ctx, 1, L, di, R, p, np, dir->dt_proj, R, 0.0f, delta, di));
        const sm_scan_args args = {
            .seq = seqs[s], .n_state = N,
            .u = u, .ld_u = di, .delta = delta, .ld_delta = di, .delta_bias = dir->dt_bias,
            .A = dir->A, .B = p + R, .C = p + R + N, .ld_bc = np, .D = dir->D,
            .z = xz + di, .ld_z = 2 * di, .y = y, .ld_y = di,
        };
        SM_TRY(mark_time(ctx, SM_KIND_SCAN));
        SM_TRY(sm_cuda_scan(ctx, &args, di, chunk));
        SM_TRY(mark_time(ctx, SM_KIND_OTHER));
    }
    /* out = x + out_proj(y), the projection into u (dead here, at least L x C). */
    SM_TRY(gemm(ctx, 1, L, C, di, y, di, m->out_proj, di, 0.0f, u, C));
    return sm_cuda_add(ctx, u, C, x, x_ld, out, out_ld, L, C, SM_ACT_NONE);
}

/* ---- the graph runner ----------------------------------------------------------- */

/* A value on the device: pointer, voxel stride, channels and level. */
typedef struct dev_view {
    float *p;
    int ld, c, level;
} dev_view;

/* One node's run: its device object, its in0 and out views, in0's sides
 * and voxel count. */
typedef struct dev_call {
    sm_cuda_ctx *ctx;
    const sm_node *nd;
    const void *obj;
    dev_view a, o;
    dev_view b; /* in1's view, for the ops that read one */
    int d, h, w;
    int64_t n;
} dev_call;

/* The device side of each op of the graph (src/engine/graph.h): its name
 * and profile kind are the CPU table's (sm_opcode_name, sm_graph_op_kind). */
typedef struct dev_op_desc {
    /* Makes the node's device object from its CPU one; NULL for ops without. */
    sm_status (*upload)(const sm_graph *g, const sm_node *nd, void **obj);
    sm_status (*run)(const dev_call *c);
    void (*free)(void *obj); /* NULL for ops without an object */
} dev_op_desc;

static sm_status upload_conv(const sm_graph *g, const sm_node *nd, void **obj)
{
    (void)g;
    sm_cuda_conv *c = NULL;
    SM_TRY(sm_cuda_conv_upload(nd->obj, &c));
    *obj = c;
    return SEGMAMBA_OK;
}

static sm_status upload_convt2(const sm_graph *g, const sm_node *nd, void **obj)
{
    (void)g;
    sm_cuda_convt2 *t = NULL;
    SM_TRY(sm_cuda_convt2_upload(nd->obj, &t));
    *obj = t;
    return SEGMAMBA_OK;
}

static sm_status upload_mamba(const sm_graph *g, const sm_node *nd, void **obj)
{
    sm_cuda_mamba *m = NULL;
    SM_TRY(sm_cuda_mamba_upload(nd->obj, &m));
    *obj = m;
    /* The scratch buffer is the graph's, sized by the CPU layer's needs. */
    if (sm_graph_channels(g, nd->in1) < sm_cuda_mamba_scratch_per_token(m))
        return sm_fail(SEGMAMBA_E_BACKEND,
                       "CUDA backend: the graph gives the Mamba layer %d scratch floats per "
                       "token and the CUDA layer needs %lld (the graph builder asks "
                       "sm_mamba_scratch_per_token for the device's)",
                       sm_graph_channels(g, nd->in1),
                       (long long)sm_cuda_mamba_scratch_per_token(m));
    return SEGMAMBA_OK;
}

static sm_status upload_se(const sm_graph *g, const sm_node *nd, void **obj)
{
    (void)g;
    sm_cuda_se *se = NULL;
    SM_TRY(sm_cuda_se_upload(nd->obj, &se));
    *obj = se;
    return SEGMAMBA_OK;
}

static void free_conv(void *obj) { sm_cuda_conv_free(obj); }
static void free_convt2(void *obj) { sm_cuda_convt2_free(obj); }
static void free_mamba(void *obj) { sm_cuda_mamba_free(obj); }
static void free_se(void *obj) { sm_cuda_se_free(obj); }

static sm_status run_conv(const dev_call *c)
{
    return sm_cuda_conv_forward(c->ctx, c->obj, c->a.p, c->a.ld, c->d, c->h, c->w, c->o.p,
                                c->o.ld);
}

static sm_status run_convt2(const dev_call *c)
{
    return sm_cuda_convt2_forward(c->ctx, c->obj, c->a.p, c->a.ld, c->d, c->h, c->w, c->o.p,
                                  c->o.ld);
}

static sm_status run_inorm(const dev_call *c)
{
    return sm_cuda_instance_norm(c->ctx, c->a.p, c->a.ld, c->o.p, c->o.ld, c->n, c->a.c,
                                 c->nd->act);
}

static sm_status run_add(const dev_call *c)
{
    return sm_cuda_add(c->ctx, c->a.p, c->a.ld, c->b.p, c->b.ld, c->o.p, c->o.ld, c->n, c->a.c,
                       c->nd->act);
}

/* Composed from the unfused kernels, in the CPU's order of operations. The
 * residual block's second input (conv3's output) is used by this node
 * only, so it is normed in place. */
static sm_status inorm_add(const dev_call *c, int norm_b)
{
    const dev_view a = c->a, b = c->b, o = c->o;
    if (o.p == b.p)
        return sm_fail(SEGMAMBA_E_ARG, "CUDA backend: norm + add into its second input");
    if (norm_b) SM_TRY(sm_cuda_instance_norm(c->ctx, b.p, b.ld, b.p, b.ld, c->n, a.c, SM_ACT_NONE));
    SM_TRY(sm_cuda_instance_norm(c->ctx, a.p, a.ld, o.p, o.ld, c->n, a.c, SM_ACT_NONE));
    return sm_cuda_add(c->ctx, o.p, o.ld, b.p, b.ld, o.p, o.ld, c->n, a.c, c->nd->act);
}

static sm_status run_inorm_add(const dev_call *c) { return inorm_add(c, 0); }
static sm_status run_inorm_add_inorm(const dev_call *c) { return inorm_add(c, 1); }

static sm_status run_act(const dev_call *c)
{
    return sm_cuda_activate(c->ctx, c->a.p, c->a.ld, c->o.p, c->o.ld, c->n, c->a.c, c->nd->act);
}

static sm_status run_fue(const dev_call *c)
{
    return sm_cuda_fue(c->ctx, c->a.p, c->a.ld, c->o.p, c->o.ld, c->n, c->a.c);
}

static sm_status run_mamba(const dev_call *c)
{
    return sm_cuda_mamba_forward(c->ctx, c->obj, c->a.p, c->a.ld, c->o.p, c->o.ld, c->d, c->h,
                                 c->w, c->nd->nslices, c->b.p, 0);
}

static sm_status run_se(const dev_call *c)
{
    return sm_cuda_se_forward(c->ctx, c->obj, c->a.p, c->a.ld, c->o.p, c->o.ld, c->n);
}

/* SM_OP_POINTWISE: as on the CPU, a plane at a time through a temporary,
 * which the stream's order makes safe when out overwrites a. */
static sm_status run_pointwise(const dev_call *c)
{
    const dev_view a = c->a, o = c->o;
    const int64_t plane = (int64_t)c->h * c->w;
    float *tmp;
    SM_TRY(work(c->ctx, (size_t)plane * (size_t)o.c, &tmp));
    for (int z = 0; z < c->d; z++) {
        SM_TRY(sm_cuda_conv_forward(c->ctx, c->obj, a.p + z * plane * a.ld, a.ld, 1, c->h, c->w,
                                    tmp, o.c));
        SM_TRY(sm_cuda_activate(c->ctx, tmp, o.c, o.p + z * plane * o.ld, o.ld, plane, o.c,
                                SM_ACT_NONE));
    }
    return SEGMAMBA_OK;
}

static const dev_op_desc dev_ops[] = {
    [SM_OP_CONV] = {upload_conv, run_conv, free_conv},
    [SM_OP_CONVT2] = {upload_convt2, run_convt2, free_convt2},
    [SM_OP_INORM] = {NULL, run_inorm, NULL},
    [SM_OP_ADD] = {NULL, run_add, NULL},
    [SM_OP_ACT] = {NULL, run_act, NULL},
    [SM_OP_FUE] = {NULL, run_fue, NULL},
    [SM_OP_MAMBA] = {upload_mamba, run_mamba, free_mamba},
    [SM_OP_INORM_ADD] = {NULL, run_inorm_add, NULL},
    [SM_OP_INORM_ADD_INORM] = {NULL, run_inorm_add_inorm, NULL},
    [SM_OP_POINTWISE] = {upload_conv, run_pointwise, free_conv},
    [SM_OP_SE] = {upload_se, run_se, free_se},
};
/* Every opcode has an entry: a missing last one shortens the table, a
 * missing one before it has no run function, which sm_cuda_model_create
 * refuses. */
_Static_assert(sizeof dev_ops / sizeof *dev_ops == SM_OP_COUNT,
               "the device op table covers every opcode");

typedef struct dev_op {
    sm_opcode op;
    void *obj; /* sm_cuda_conv, sm_cuda_convt2, sm_cuda_mamba, sm_cuda_se, or NULL */
} dev_op;

struct sm_cuda_model {
    sm_cuda_ctx *ctx;
    int n_nodes;
    dev_op *ops;  /* one per graph node */
    float *arena; /* every buffer of the graph, placed by sm_graph_place */
    size_t arena_floats;
    float *io; /* the inputs, then the outputs, NCDHW */
    size_t io_floats;
};

void sm_cuda_model_free(sm_cuda_model *cm)
{
    if (!cm) return;
    for (int i = 0; cm->ops && i < cm->n_nodes; i++)
        if (cm->ops[i].obj) dev_ops[cm->ops[i].op].free(cm->ops[i].obj);
    free(cm->ops);
    cudaFree(cm->arena);
    cudaFree(cm->io);
    sm_cuda_ctx_free(cm->ctx);
    free(cm);
}

static sm_status upload_node(const sm_graph *g, const sm_node *nd, dev_op *o)
{
    o->op = nd->op;
    if ((unsigned)nd->op >= SM_OP_COUNT || !dev_ops[nd->op].run)
        return sm_fail(SEGMAMBA_E_UNSUPPORTED, "CUDA backend: op %d is not in the device op table",
                       (int)nd->op);
    return dev_ops[nd->op].upload ? dev_ops[nd->op].upload(g, nd, &o->obj) : SEGMAMBA_OK;
}

sm_status sm_cuda_model_create(const sm_graph *g, int tf32, sm_cuda_model **out)
{
    *out = NULL;
    sm_cuda_model *cm = calloc(1, sizeof *cm);
    if (!cm) return sm_fail(SEGMAMBA_E_NOMEM, "CUDA backend: out of memory");
    cm->ops = calloc(g->n_nodes > 0 ? (size_t)g->n_nodes : 1, sizeof *cm->ops);
    if (!cm->ops) {
        free(cm);
        return sm_fail(SEGMAMBA_E_NOMEM, "CUDA backend: out of memory");
    }
    cm->n_nodes = g->n_nodes;
    sm_status st = sm_cuda_ctx_create(tf32, &cm->ctx);
    for (int i = 0; i < g->n_nodes && st == SEGMAMBA_OK; i++) {
        st = upload_node(g, &g->nodes[i], &cm->ops[i]);
        if (st != SEGMAMBA_OK)
            st = sm_fail_wrap(st, "CUDA backend: node %d (%s)", i, sm_opcode_name(g->nodes[i].op));
    }
    if (st != SEGMAMBA_OK) {
        sm_cuda_model_free(cm);
        return st;
    }
    *out = cm;
    return SEGMAMBA_OK;
}

static const sm_buffer *value_buffer(const sm_graph *g, int v)
{
    return &g->bufs[g->values[v].buf];
}

static int64_t level_voxels(const int dims[3], int level)
{
    return (int64_t)(dims[0] >> level) * (dims[1] >> level) * (dims[2] >> level);
}

/* As the CPU runner's (src/engine/graph.h, sm_value). */
static dev_view view_of(const sm_cuda_model *cm, const sm_graph *g, int v, const int dims[3])
{
    const sm_value *val = &g->values[v];
    const sm_buffer *b = value_buffer(g, v);
    return (dev_view){.p = cm->arena + b->offset +
                           (size_t)val->base * (size_t)level_voxels(dims, b->level) + val->c0,
                      .ld = val->ld, .c = val->c, .level = b->level};
}

static sm_status run_node(sm_cuda_model *cm, const sm_graph *g, int i, const int dims[3])
{
    const sm_node *nd = &g->nodes[i];
    const dev_view a = view_of(cm, g, nd->in0, dims);
    const dev_call c = {
        .ctx = cm->ctx, .nd = nd, .obj = cm->ops[i].obj, .a = a, .o = view_of(cm, g, nd->out, dims),
        .b = nd->in1 >= 0 ? view_of(cm, g, nd->in1, dims) : (dev_view){0},
        .d = dims[0] >> a.level, .h = dims[1] >> a.level, .w = dims[2] >> a.level,
        .n = level_voxels(dims, a.level)};
    return dev_ops[nd->op].run(&c);
}

/* Device memory of at least need floats in *p (contents not kept). */
static sm_status ensure(float **p, size_t *have, size_t need, const char *what)
{
    if (need <= *have) return SEGMAMBA_OK;
    cudaFree(*p);
    *p = NULL;
    *have = 0;
    if (cudaMalloc((void **)p, need * sizeof(float)) != cudaSuccess) {
        *p = NULL;
        cudaGetLastError(); /* clear it: the model stays usable for smaller inputs */
        return sm_fail(SEGMAMBA_E_NOMEM, "CUDA backend: cannot allocate %zu MiB of device memory "
                       "for %s", need * sizeof(float) >> 20, what);
    }
    *have = need;
    return SEGMAMBA_OK;
}

/* Adds the time between consecutive marks to their kinds and nodes. */
static sm_status tally(sm_cuda_ctx *ctx, sm_graph *g)
{
    for (int j = 0; j + 1 < ctx->n_marks; j++) {
        float ms = 0.0f;
        CU_TRY(cudaEventElapsedTime(&ms, ctx->events[j], ctx->events[j + 1]), "reading a timer");
        const double s = 1e-3 * ms;
        g->seconds[ctx->marks[j].kind] += s;
        if (ctx->marks[j].node >= 0) g->nodes[ctx->marks[j].node].seconds += s;
    }
    return SEGMAMBA_OK;
}

static sm_status run_all(sm_cuda_model *cm, sm_graph *g, int count, const float *input,
                         const int dims[3], float *output)
{
    sm_cuda_ctx *ctx = cm->ctx;
    const dev_view in = view_of(cm, g, g->input, dims), out = view_of(cm, g, g->output, dims);
    const int64_t n_in = level_voxels(dims, in.level), n_out = level_voxels(dims, out.level);
    const size_t in_floats = (size_t)in.c * (size_t)n_in, out_floats = (size_t)out.c * (size_t)n_out;
    float *dev_in = cm->io, *dev_out = cm->io + (size_t)count * in_floats;
    SM_TRY(mark_time(ctx, SM_KIND_OTHER));
    SM_TRY(sm_cuda_upload(ctx, dev_in, input, (size_t)count * in_floats));
    for (int k = 0; k < count; k++) {
        ctx->node = -1;
        SM_TRY(mark_time(ctx, SM_KIND_OTHER));
        CU_TRY(sm_cuk_to_channels_last(ctx->stream, dev_in + k * in_floats, in.c, n_in, in.p,
                                       in.ld),
               "input layout");
        for (int i = 0; i < g->n_nodes; i++) {
            ctx->node = i;
            SM_TRY(mark_time(ctx, sm_graph_op_kind(g->nodes[i].op)));
            sm_status st = run_node(cm, g, i, dims);
            if (st != SEGMAMBA_OK)
                return sm_fail_wrap(st, "CUDA backend: node %d (%s)", i,
                                    sm_opcode_name(g->nodes[i].op));
            g->flops += g->nodes[i].flops_per_voxel *
                        (double)level_voxels(dims, value_buffer(g, g->nodes[i].in0)->level);
        }
        ctx->node = -1;
        SM_TRY(mark_time(ctx, SM_KIND_OTHER));
        CU_TRY(sm_cuk_from_channels_last(ctx->stream, out.p, out.ld, out.c, n_out,
                                         dev_out + k * out_floats),
               "output layout");
    }
    CU_TRY(cudaMemcpyAsync(output, dev_out, (size_t)count * out_floats * sizeof(float),
                           cudaMemcpyDeviceToHost, ctx->stream),
           "copying the logits from the device");
    SM_TRY(mark_time(ctx, SM_KIND_OTHER));
    CU_TRY(cudaStreamSynchronize(ctx->stream), "running the forward");
    return tally(ctx, g);
}

sm_status sm_cuda_model_forward(sm_cuda_model *cm, sm_graph *g, int count, const float *input,
                                int d, int h, int w, float *output)
{
    if (count < 1 || !input || !output)
        return sm_fail(SEGMAMBA_E_ARG, "CUDA forward: no inputs");
    const int dims[3] = {d, h, w};
    size_t total = 0;
    SM_TRY(sm_graph_place(g, d, h, w, &total));
    SM_TRY(ensure(&cm->arena, &cm->arena_floats, total, "the activations"));
    const int64_t n_in = level_voxels(dims, value_buffer(g, g->input)->level),
                  n_out = level_voxels(dims, value_buffer(g, g->output)->level);
    const size_t io = (size_t)count * ((size_t)sm_graph_channels(g, g->input) * (size_t)n_in +
                                       (size_t)sm_graph_channels(g, g->output) * (size_t)n_out);
    SM_TRY(ensure(&cm->io, &cm->io_floats, io, "the inputs and outputs"));
    memset(g->seconds, 0, sizeof g->seconds);
    g->flops = 0.0;
    for (int i = 0; i < g->n_nodes; i++) g->nodes[i].seconds = 0.0;
    cm->ctx->timing = 1;
    cm->ctx->n_marks = 0;
    cm->ctx->node = -1;
    sm_status st = run_all(cm, g, count, input, dims, output);
    cm->ctx->timing = 0;
    return st;
}
