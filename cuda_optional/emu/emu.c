/* The CPU stand-in for the CUDA runtime and cuBLAS (-Dcuda_emulation, tests
 * only): enough of both for the backend's code to run, unchanged, on a
 * machine without a GPU, and strict where a real GPU would fail or give
 * garbage:
 * - "device" allocations are registered, filled with NaN bit patterns
 *   (cudaMalloc returns uninitialised memory), and every copy, memset and
 *   GEMM operand is checked against the registry, in the direction the
 *   call names, over its whole extent;
 * - cuBLAS arguments are validated as cuBLAS does (dimensions, leading
 *   dimensions), and beta == 0 never reads C.
 * Everything runs synchronously; streams and events only keep order and
 * time. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cublas_v2.h"
#include "cuda_runtime_api.h"

typedef struct region {
    char *p;
    size_t n;
} region;

static region *regions;
static size_t n_regions, cap_regions;
static cudaError_t last_error = cudaSuccess;

static cudaError_t fail(cudaError_t e)
{
    last_error = e;
    return e;
}

int sm_emu_is_device(const void *p, size_t bytes)
{
    const char *c = p;
    for (size_t i = 0; i < n_regions; i++)
        if (c >= regions[i].p && c < regions[i].p + regions[i].n)
            return bytes <= (size_t)(regions[i].p + regions[i].n - c);
    return 0;
}

/* 1 when no byte of [p, p + bytes) is device memory. */
static int is_host(const void *p, size_t bytes)
{
    const char *c = p;
    for (size_t i = 0; i < n_regions; i++)
        if (c < regions[i].p + regions[i].n && regions[i].p < c + bytes) return 0;
    return 1;
}

cudaError_t cudaGetDeviceCount(int *count)
{
    *count = 1;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device)
{
    return device == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice);
}

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *prop, int device)
{
    if (device != 0) return fail(cudaErrorInvalidDevice);
    memset(prop, 0, sizeof *prop);
    strcpy(prop->name, "CPU emulation of a CUDA device (tests only)");
    prop->totalGlobalMem = (size_t)1 << 33;
    prop->major = 9;
    prop->multiProcessorCount = 1;
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **ptr, size_t bytes)
{
    *ptr = NULL;
    if (bytes == 0) return fail(cudaErrorInvalidValue);
    if (n_regions == cap_regions) {
        size_t cap = cap_regions ? 2 * cap_regions : 64;
        region *r = realloc(regions, cap * sizeof *r);
        if (!r) return fail(cudaErrorMemoryAllocation);
        regions = r;
        cap_regions = cap;
    }
    char *p = malloc(bytes);
    if (!p) return fail(cudaErrorMemoryAllocation);
    memset(p, 0xff, bytes); /* NaN in every float and double */
    regions[n_regions++] = (region){p, bytes};
    *ptr = p;
    return cudaSuccess;
}

cudaError_t cudaFree(void *ptr)
{
    if (!ptr) return cudaSuccess;
    for (size_t i = 0; i < n_regions; i++)
        if (regions[i].p == ptr) {
            free(ptr);
            regions[i] = regions[--n_regions];
            return cudaSuccess;
        }
    return fail(cudaErrorInvalidValue);
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind)
{
    const int dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    const int src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (bytes == 0) return cudaSuccess;
    if (!(dst_dev ? sm_emu_is_device(dst, bytes) : is_host(dst, bytes)) ||
        !(src_dev ? sm_emu_is_device(src, bytes) : is_host(src, bytes)))
        return fail(cudaErrorInvalidValue);
    memmove(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind,
                            cudaStream_t stream)
{
    (void)stream;
    return cudaMemcpy(dst, src, bytes, kind);
}

cudaError_t cudaMemsetAsync(void *ptr, int value, size_t bytes, cudaStream_t stream)
{
    (void)stream;
    if (bytes == 0) return cudaSuccess;
    if (!sm_emu_is_device(ptr, bytes)) return fail(cudaErrorInvalidValue);
    memset(ptr, value, bytes);
    return cudaSuccess;
}

struct sm_emu_stream {
    int unused;
};

cudaError_t cudaStreamCreate(cudaStream_t *stream)
{
    *stream = calloc(1, sizeof **stream);
    return *stream ? cudaSuccess : fail(cudaErrorMemoryAllocation);
}

cudaError_t cudaStreamDestroy(cudaStream_t stream)
{
    free(stream);
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream)
{
    (void)stream;
    return cudaSuccess;
}

struct sm_emu_event {
    double seconds;
};

cudaError_t cudaEventCreate(cudaEvent_t *event)
{
    *event = calloc(1, sizeof **event);
    return *event ? cudaSuccess : fail(cudaErrorMemoryAllocation);
}

cudaError_t cudaEventDestroy(cudaEvent_t event)
{
    free(event);
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream)
{
    (void)stream;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    event->seconds = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    return cudaSuccess;
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end)
{
    *ms = (float)((end->seconds - start->seconds) * 1e3);
    return cudaSuccess;
}

cudaError_t cudaGetLastError(void)
{
    cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}

const char *cudaGetErrorString(cudaError_t error)
{
    switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    }
    return "unknown error";
}

/* ---- cuBLAS ---------------------------------------------------------------- */

struct sm_emu_blas {
    cudaStream_t stream;
};

cublasStatus_t cublasCreate(cublasHandle_t *handle)
{
    *handle = calloc(1, sizeof **handle);
    return *handle ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle)
{
    free(handle);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream)
{
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->stream = stream;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode)
{
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    return mode == CUBLAS_DEFAULT_MATH || mode == CUBLAS_TF32_TENSOR_OP_MATH
               ? CUBLAS_STATUS_SUCCESS
               : CUBLAS_STATUS_INVALID_VALUE;
}

/* 1 when a column-major rows x cols matrix with leading dimension ld lies in
 * one device allocation. */
static int device_matrix(const float *p, int rows, int cols, int ld)
{
    if (rows == 0 || cols == 0) return 1;
    const size_t last = (size_t)(rows - 1) + (size_t)(cols - 1) * (size_t)ld;
    return sm_emu_is_device(p, (last + 1) * sizeof *p);
}

cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa,
                           cublasOperation_t transb, int m, int n, int k, const float *alpha,
                           const float *A, int lda, const float *B, int ldb, const float *beta,
                           float *C, int ldc)
{
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    const int ta = transa == CUBLAS_OP_T, tb = transb == CUBLAS_OP_T;
    /* A is stored m x k (k x m transposed), B k x n (n x k). */
    const int a_rows = ta ? k : m, b_rows = tb ? n : k;
    if ((transa != CUBLAS_OP_N && !ta) || (transb != CUBLAS_OP_N && !tb) || m < 0 || n < 0 ||
        k < 0 || lda < (a_rows > 1 ? a_rows : 1) || ldb < (b_rows > 1 ? b_rows : 1) ||
        ldc < (m > 1 ? m : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (!device_matrix(A, a_rows, ta ? m : k, lda) || !device_matrix(B, b_rows, tb ? k : n, ldb) ||
        !device_matrix(C, m, n, ldc))
        return CUBLAS_STATUS_INVALID_VALUE;
    const float al = *alpha, be = *beta;
#pragma omp parallel for schedule(static)
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float acc = 0.0f;
            for (int l = 0; l < k; l++) {
                const float a = ta ? A[l + (size_t)i * lda] : A[i + (size_t)l * lda];
                const float b = tb ? B[j + (size_t)l * ldb] : B[l + (size_t)j * ldb];
                acc += a * b;
            }
            float *c = &C[i + (size_t)j * ldc];
            *c = be == 0.0f ? al * acc : al * acc + be * *c;
        }
    return CUBLAS_STATUS_SUCCESS;
}

const char *cublasGetStatusString(cublasStatus_t status)
{
    switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    }
    return "unknown cuBLAS status";
}
