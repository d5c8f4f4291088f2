/* Helpers shared by the binary readers (zip, .pt, safetensors, .npy): byte
 * order, sizes checked against overflow, and one conversion from any stored
 * element type and layout to C-order float32. Header-only so that the
 * readers share one copy without another translation unit. */
#ifndef SM_IO_BINARY_H
#define SM_IO_BINARY_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/weights.h" /* SM_MAX_DIMS */

static inline uint16_t sm_le16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }

static inline uint32_t sm_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t sm_le64(const unsigned char *p)
{
    return (uint64_t)sm_le32(p) | (uint64_t)sm_le32(p + 4) << 32;
}

static inline int sm_host_is_little_endian(void)
{
    const uint16_t one = 1;
    unsigned char first;
    memcpy(&first, &one, 1);
    return first == 1;
}

/* Whether [off, off + n) lies inside [0, total), written so that no sum can
 * wrap around whatever the file claims. */
static inline int sm_range_ok(uint64_t total, uint64_t off, uint64_t n)
{
    return off <= total && n <= total - off;
}

/* a * b, or 0 when the product does not fit in a uint64_t. */
static inline int sm_mul_ok(uint64_t a, uint64_t b, uint64_t *out)
{
    if (a != 0 && b > UINT64_MAX / a) return 0;
    *out = a * b;
    return 1;
}

/* Element count of a shape whose dimensions are all >= 0, or 0 when a
 * dimension is negative or the count overflows int64_t. */
static inline int sm_numel_ok(int ndim, const int64_t *shape, int64_t *numel)
{
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || !sm_mul_ok(n, (uint64_t)shape[i], &n) || n > INT64_MAX) return 0;
    }
    *numel = (int64_t)n;
    return 1;
}

/* Grows a heap array so that need elements of elem bytes fit, doubling its
 * capacity. Returns the (possibly moved) array, or NULL on overflow or
 * allocation failure, when the old array and *cap are left as they were. */
static inline void *sm_grow(void *array, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return array;
    size_t n = *cap ? *cap : 4;
    while (n < need) {
        if (n > SIZE_MAX / 2) return NULL;
        n *= 2;
    }
    if (n > SIZE_MAX / elem) return NULL;
    void *p = realloc(array, n * elem);
    if (p) *cap = n;
    return p;
}

/* Element types the readers convert from; every one becomes float32. */
typedef enum sm_dtype {
    SM_DT_F64,
    SM_DT_F32,
    SM_DT_F16,
    SM_DT_BF16,
    SM_DT_I64,
    SM_DT_I32,
    SM_DT_I16,
    SM_DT_I8,
    SM_DT_U64,
    SM_DT_U32,
    SM_DT_U16,
    SM_DT_U8,
    SM_DT_BOOL
} sm_dtype;

static inline size_t sm_dtype_size(sm_dtype t)
{
    switch (t) {
    case SM_DT_F64:
    case SM_DT_I64:
    case SM_DT_U64: return 8;
    case SM_DT_F32:
    case SM_DT_I32:
    case SM_DT_U32: return 4;
    case SM_DT_F16:
    case SM_DT_BF16:
    case SM_DT_I16:
    case SM_DT_U16: return 2;
    case SM_DT_I8:
    case SM_DT_U8:
    case SM_DT_BOOL: return 1;
    }
    return 1;
}

static inline float sm_f32_from_bits(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* IEEE binary16 to binary32 is exact: every half value, subnormals included,
 * is a float. */
static inline float sm_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0x1f) return sm_f32_from_bits(sign | 0x7f800000u | man << 13);
    if (exp == 0) {
        if (man == 0) return sm_f32_from_bits(sign);
        /* Subnormal: man * 2^-24, which a float holds exactly. */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return sm_f32_from_bits(sign | (exp + 112) << 23 | man << 13);
}

/* Reads the n-byte unsigned integer at p in the given byte order. */
static inline uint64_t sm_load_uint(const unsigned char *p, size_t n, int big_endian)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v |= (uint64_t)p[big_endian ? n - 1 - i : i] << (8 * i);
    return v;
}

/* The n-byte two's complement integer whose bits are u, without relying on
 * implementation-defined conversions of out-of-range values. */
static inline int64_t sm_sign_extend(uint64_t u, size_t n)
{
    if (n < 8 && (u >> (8 * n - 1) & 1)) u |= UINT64_MAX << (8 * n);
    return u <= INT64_MAX ? (int64_t)u : -(int64_t)~u - 1;
}

/* Reads the n-byte two's complement integer at p in the given byte order. */
static inline int64_t sm_load_int(const unsigned char *p, size_t n, int big_endian)
{
    return sm_sign_extend(sm_load_uint(p, n, big_endian), n);
}

static inline float sm_dtype_load(sm_dtype t, int big_endian, const unsigned char *p)
{
    uint64_t u = sm_load_uint(p, sm_dtype_size(t), big_endian);
    switch (t) {
    case SM_DT_F64: {
        double d;
        memcpy(&d, &u, sizeof d);
        return (float)d;
    }
    case SM_DT_F32: return sm_f32_from_bits((uint32_t)u);
    case SM_DT_F16: return sm_f16_to_f32((uint16_t)u);
    case SM_DT_BF16: return sm_f32_from_bits((uint32_t)u << 16);
    case SM_DT_I64:
    case SM_DT_I32:
    case SM_DT_I16:
    case SM_DT_I8: return (float)sm_load_int(p, sm_dtype_size(t), big_endian);
    case SM_DT_U64:
    case SM_DT_U32:
    case SM_DT_U16:
    case SM_DT_U8: return (float)u;
    case SM_DT_BOOL: return u ? 1.0f : 0.0f;
    }
    return 0.0f;
}

/* The element at p as a double, exact for every type but the 64-bit
 * integers beyond 2^53 (for readers that scale values before rounding them
 * to float, as NIfTI's scl_slope and scl_inter do). */
static inline double sm_dtype_load_f64(sm_dtype t, int big_endian, const unsigned char *p)
{
    switch (t) {
    case SM_DT_F64: {
        const uint64_t u = sm_load_uint(p, 8, big_endian);
        double d;
        memcpy(&d, &u, sizeof d);
        return d;
    }
    case SM_DT_I64:
    case SM_DT_I32:
    case SM_DT_I16:
    case SM_DT_I8: return (double)sm_load_int(p, sm_dtype_size(t), big_endian);
    case SM_DT_U64:
    case SM_DT_U32:
    case SM_DT_U16:
    case SM_DT_U8: return (double)sm_load_uint(p, sm_dtype_size(t), big_endian);
    default: return sm_dtype_load(t, big_endian, p); /* exact in float */
    }
}

/* Converts n elements spaced stride elements apart. */
static inline void sm_dtype_convert_row(sm_dtype t, int big_endian, const unsigned char *src,
                                        int64_t stride, int64_t n, float *dst)
{
    size_t es = sm_dtype_size(t);
    if (t == SM_DT_F32 && stride == 1 && big_endian == !sm_host_is_little_endian()) {
        memcpy(dst, src, (size_t)n * sizeof *dst);
        return;
    }
    for (int64_t i = 0; i < n; i++)
        dst[i] = sm_dtype_load(t, big_endian, src + (size_t)(i * stride) * es);
}

/* Copies the strided view of base (strides in elements, all >= 0) with the
 * given shape into dst in C order. The caller has checked that every element
 * the view reaches lies inside the buffer. ndim 0 is one element. */
static inline void sm_dtype_gather(sm_dtype t, int big_endian, const unsigned char *base, int ndim,
                                   const int64_t *shape, const int64_t *stride, float *dst)
{
    if (ndim == 0) {
        sm_dtype_convert_row(t, big_endian, base, 1, 1, dst);
        return;
    }
    int64_t numel;
    if (!sm_numel_ok(ndim, shape, &numel) || numel == 0) return;
    const int last = ndim - 1;
    const int64_t row = shape[last];
    int64_t index[SM_MAX_DIMS] = {0}; /* odometer over the outer dimensions */
    size_t es = sm_dtype_size(t);
    for (int64_t done = 0; done < numel; done += row) {
        int64_t off = 0;
        for (int d = 0; d < last; d++) off += index[d] * stride[d];
        sm_dtype_convert_row(t, big_endian, base + (size_t)off * es, stride[last], row, dst + done);
        for (int d = last - 1; d >= 0; d--) {
            if (++index[d] < shape[d]) break;
            index[d] = 0;
        }
    }
}

/* The largest element offset a view with at least one element reaches from
 * its start; 0 (refuse) when a stride is negative or the sum overflows. */
static inline int sm_view_extent_ok(int ndim, const int64_t *shape, const int64_t *stride,
                                    uint64_t *last_offset)
{
    uint64_t sum = 0;
    for (int i = 0; i < ndim; i++) {
        uint64_t step;
        if (shape[i] <= 0 || stride[i] < 0) return 0;
        if (!sm_mul_ok((uint64_t)(shape[i] - 1), (uint64_t)stride[i], &step)) return 0;
        if (step > UINT64_MAX - sum) return 0;
        sum += step;
    }
    *last_offset = sum;
    return 1;
}

/* How many of x[0, n) are NaN or infinite; *first is the index of the first
 * (n when none). */
static inline size_t sm_count_nonfinite(const float *x, size_t n, size_t *first)
{
    size_t count = 0;
    *first = n;
    for (size_t i = 0; i < n; i++) {
        if (isfinite(x[i])) continue;
        if (!count) *first = i;
        count++;
    }
    return count;
}

/* A weight tensor that holds NaN or infinity (a diverged training run, a
 * float64 value beyond float32's range) is refused at load: it would
 * propagate into every logit. */
static inline sm_status sm_check_finite_tensor(const char *path, const char *name, const float *x,
                                               int64_t numel)
{
    size_t first;
    size_t bad = sm_count_nonfinite(x, (size_t)numel, &first);
    if (!bad) return SEGMAMBA_OK;
    const float v = x[first];
    return sm_fail(SEGMAMBA_E_MODEL,
                   "%s: tensor '%s' holds %s at element %zu (%zu of its %lld "
                   "values are not finite); a checkpoint with non-finite weights cannot give a "
                   "valid segmentation",
                   path, name,
                   isnan(v) ? "NaN"
                   : v > 0  ? "+inf"
                            : "-inf",
                   first, bad, (long long)numel);
}

#endif
