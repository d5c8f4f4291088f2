/* The CUDA backend's device, context and memory (cuda_backend.h), and the
 * helpers its op families share (cuda_internal.h). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda_optional/cuda_internal.h"

sm_status sm_cuda_check(cudaError_t e, const char *what)
{
    if (e == cudaSuccess) return SEGMAMBA_OK;
    return sm_fail(e == cudaErrorMemoryAllocation ? SEGMAMBA_E_NOMEM : SEGMAMBA_E_BACKEND,
                   "CUDA: %s: %s", what, cudaGetErrorString(e));
}

sm_status sm_cublas_check(cublasStatus_t s, const char *what)
{
    if (s == CUBLAS_STATUS_SUCCESS) return SEGMAMBA_OK;
    return sm_fail(s == CUBLAS_STATUS_ALLOC_FAILED ? SEGMAMBA_E_NOMEM : SEGMAMBA_E_BACKEND,
                   "cuBLAS: %s: %s", what, cublasGetStatusString(s));
}

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
    sm_status st = sm_cuda_check(cudaStreamCreate(&ctx->stream), "creating a stream");
    if (st == SEGMAMBA_OK) {
        st = sm_cublas_check(cublasCreate(&ctx->blas), "creating a handle");
        if (st != SEGMAMBA_OK) ctx->blas = NULL;
    }
    if (st == SEGMAMBA_OK)
        st = sm_cublas_check(cublasSetStream(ctx->blas, ctx->stream), "setting the stream");
    /* Without TF32 the GEMMs run in full fp32, as on the CPU. */
    if (st == SEGMAMBA_OK)
        st = sm_cublas_check(
            cublasSetMathMode(ctx->blas, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH),
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

sm_status sm_cuda_work(sm_cuda_ctx *ctx, size_t floats, float **out)
{
    if (floats > ctx->work_floats) {
        cudaFree(ctx->work);
        ctx->work = NULL;
        ctx->work_floats = 0;
        CU_TRY(cudaMalloc((void **)&ctx->work, floats * sizeof(float)), "allocating the workspace");
        ctx->work_floats = floats;
    }
    *out = ctx->work;
    return SEGMAMBA_OK;
}

sm_status sm_cuda_mark_time(sm_cuda_ctx *ctx, int kind)
{
    if (!ctx->timing) return SEGMAMBA_OK;
    if (ctx->n_marks == ctx->cap_marks) {
        const int cap = ctx->cap_marks ? 2 * ctx->cap_marks : 256;
        sm_cuda_mark *m = realloc(ctx->marks, (size_t)cap * sizeof *m);
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
    ctx->marks[ctx->n_marks++] = (sm_cuda_mark){.kind = kind, .node = ctx->node};
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

sm_status sm_cuda_upload_pieces(const sm_cuda_piece *pieces, int count, float **block)
{
    size_t total = 0;
    for (int i = 0; i < count; i++) total += pieces[i].src ? pieces[i].n : 0;
    SM_TRY(sm_cuda_alloc(total, block));
    size_t at = 0;
    for (int i = 0; i < count; i++) {
        *pieces[i].dst = NULL;
        if (!pieces[i].src) continue;
        *pieces[i].dst = *block + at;
        sm_status st =
            sm_cuda_check(cudaMemcpy(*block + at, pieces[i].src, pieces[i].n * sizeof(float),
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

/* Read column-major, the same memory holds the transposes, so cuBLAS
 * computes C^T = op(B)^T A^T. */
sm_status sm_cuda_gemm(sm_cuda_ctx *ctx, int trans_b, int64_t M, int N, int K, const float *A,
                       int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M > INT_MAX)
        return sm_fail(SEGMAMBA_E_UNSUPPORTED, "CUDA backend: a GEMM of %lld rows is too large",
                       (long long)M);
    if (M == 0 || N == 0) return SEGMAMBA_OK;
    const float one = 1.0f;
    return sm_cublas_check(cublasSgemm(ctx->blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N,
                                       N, (int)M, K, &one, B, ldb, A, lda, &beta, C, ldc),
                           "SGEMM");
}

int64_t sm_cuda_chunk_rows(const sm_cuda_ctx *ctx, int64_t rows, int64_t cols)
{
    int64_t r = (int64_t)(ctx->chunk_floats / (size_t)cols);
    if (r < 1) r = 1;
    return r < rows ? r : rows;
}
