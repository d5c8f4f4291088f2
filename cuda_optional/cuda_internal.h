/* What the CUDA backend's files (cuda_optional/cuda_*.c) share: the
 * context's insides and the helpers of cuda_context.c. Only they include it. */
#ifndef SM_CUDA_INTERNAL_H
#define SM_CUDA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "cuda_optional/cuda_backend.h"
#include "cuda_optional/kernels.h"

/* The start of a stretch of device work, timed by an event: the stretch runs
 * to the next mark and counts for kind and for node (-1: none). */
typedef struct sm_cuda_mark {
    int kind, node;
} sm_cuda_mark;

struct sm_cuda_ctx {
    cudaStream_t stream;
    cublasHandle_t blas;
    float *work; /* the ops' temporaries; one op at a time uses it */
    size_t work_floats;
    size_t chunk_floats;
    /* Timing of the ops enqueued while timing is set (the runner's forward). */
    int timing, node;
    sm_cuda_mark *marks;
    cudaEvent_t *events; /* events[i] belongs to marks[i] */
    int n_marks, cap_marks;
};

/* SEGMAMBA_OK, or the failure of what as an error (E_NOMEM when memory ran out). */
sm_status sm_cuda_check(cudaError_t e, const char *what);
sm_status sm_cublas_check(cublasStatus_t s, const char *what);

#define CU_TRY(call, what) SM_TRY(sm_cuda_check((call), (what)))

/* The workspace, at least floats long. Growing it frees the old one, which
 * waits for the work already enqueued (cudaFree synchronises). */
sm_status sm_cuda_work(sm_cuda_ctx *ctx, size_t floats, float **out);

/* Starts a stretch of kind (an sm_op_kind) at this point of the stream. */
sm_status sm_cuda_mark_time(sm_cuda_ctx *ctx, int kind);

/* Weights: several host arrays in one device allocation. */
typedef struct sm_cuda_piece {
    const float *src;
    size_t n;
    float **dst;
} sm_cuda_piece;

sm_status sm_cuda_upload_pieces(const sm_cuda_piece *pieces, int count, float **block);

/* Row-major C (M x N) = A (M x K, lda) op(B) + beta C, where op(B) is B
 * (K x N, ldb) or, with trans_b, the transpose of B (N x K, ldb): the CPU's
 * sm_sgemm(0, trans_b, ...). */
sm_status sm_cuda_gemm(sm_cuda_ctx *ctx, int trans_b, int64_t M, int N, int K, const float *A,
                       int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* Rows per chunk of a temporary with cols floats per row. */
int64_t sm_cuda_chunk_rows(const sm_cuda_ctx *ctx, int64_t rows, int64_t cols);

#endif
