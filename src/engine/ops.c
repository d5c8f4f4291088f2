#include "engine/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blas_backends/gemm.h"
#include "core/parallel.h"
#include "simd/dispatch.h"

double sm_now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The activation applied in place to one row of c values. The switch sits
 * outside the loops so that each loop is a branch-free vector blend (a
 * switch inside the element loop kept it scalar, with a data-dependent
 * branch per value: 4x slower on the network's norms). The blend for
 * LReLU also needs -fno-trapping-math (meson.build). */
static inline void act_row(const sm_kernels *kern, float *y, int c, sm_act act)
{
    switch (act) {
    case SM_ACT_RELU:
        for (int k = 0; k < c; k++) y[k] = y[k] > 0.0f ? y[k] : 0.0f;
        break;
    case SM_ACT_LRELU:
        for (int k = 0; k < c; k++) y[k] = y[k] > 0.0f ? y[k] : 0.01f * y[k];
        break;
    case SM_ACT_GELU: kern->gelu(y, y, c); break;
    default: break;
    }
}

/* Voxels summed in float before the partial sums go into double: short
 * enough to keep float rounding near 1e-5 relative, long enough to vectorise. */
#define NORM_BLOCK 256

/* Voxels per unit of work in the apply pass. */
#define NORM_APPLY_BLOCK 1024

/* Per channel: the mean as a float pair hi + lo and 1/sqrt(var + eps). */
typedef struct norm_stats {
    float *scale, *mean_hi, *mean_lo;
} norm_stats;

/* Statistics of the n voxels of src into st (3c floats); work holds
 * 2 nt c floats and acc 2 nt c doubles, nt being sm_num_threads(). The
 * block sums are the dispatch table's norm_sums (simd/norm.h). */
static void instance_stats(const sm_kernels *kern, const float *src, int src_ld, int64_t n, int c,
                           int nt, double *acc, float *work, norm_stats st)
{
    /* Sums are taken of x - shift, shift being the first voxel, so that a
     * channel whose mean is large against its spread does not lose its
     * variance to cancellation. The mean is then kept as a float pair
     * hi + lo: (x - hi) is exact for x near the mean, where x * scale + shift
     * would cancel catastrophically. */
    const float *shift = src;
    const sm_norm_sums_fn sums = kern->norm_sums;
    memset(acc, 0, (size_t)nt * (size_t)c * 2 * sizeof *acc);
#pragma omp parallel num_threads(nt)
    {
        double *s = acc + (size_t)sm_thread_id() * (size_t)c * 2, *s2 = s + c;
        float *bs = work + 2 * (size_t)sm_thread_id() * (size_t)c, *bs2 = bs + c;
        const int64_t blocks = (n + NORM_BLOCK - 1) / NORM_BLOCK;
#pragma omp for schedule(static)
        for (int64_t b = 0; b < blocks; b++) {
            const int64_t v0 = b * NORM_BLOCK, v1 = v0 + NORM_BLOCK < n ? v0 + NORM_BLOCK : n;
            for (int k = 0; k < c; k++) bs[k] = bs2[k] = 0.0f;
            sums(src + v0 * src_ld, src_ld, v1 - v0, c, shift, bs, bs2);
            for (int k = 0; k < c; k++) {
                s[k] += bs[k];
                s2[k] += bs2[k];
            }
        }
    }
    for (int k = 0; k < c; k++) {
        double sum = 0.0, sum2 = 0.0;
        for (int t = 0; t < nt; t++) {
            sum += acc[(size_t)t * c * 2 + k];
            sum2 += acc[(size_t)t * c * 2 + c + k];
        }
        const double dmean = sum / (double)n;
        double var = sum2 / (double)n - dmean * dmean;
        if (var < 0.0) var = 0.0;
        const double mean = (double)shift[k] + dmean;
        st.scale[k] = (float)(1.0 / sqrt(var + 1e-5));
        st.mean_hi[k] = (float)mean;
        st.mean_lo[k] = (float)(mean - (double)st.mean_hi[k]);
    }
}

static sm_norm_stats kernel_stats(norm_stats st)
{
    return (sm_norm_stats){st.scale, st.mean_hi, st.mean_lo};
}

/* The apply pass over voxels [v0, v1), in blocks shared among nt threads. */
static void apply_range(const sm_kernels *k, const sm_norm_args *args, int64_t v0, int64_t v1,
                        sm_act act, int nt)
{
    (void)nt; /* without OpenMP */
    const int64_t blocks = (v1 - v0 + NORM_APPLY_BLOCK - 1) / NORM_APPLY_BLOCK;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t blk = 0; blk < blocks; blk++) {
        const int64_t b0 = v0 + blk * NORM_APPLY_BLOCK;
        const int64_t b1 = b0 + NORM_APPLY_BLOCK < v1 ? b0 + NORM_APPLY_BLOCK : v1;
        k->norm_apply(args, b0, b1);
        if (act == SM_ACT_GELU)
            for (int64_t v = b0; v < b1; v++) act_row(k, args->y + v * args->ldy, args->c, act);
    }
}

/* Whether dst is denser than a (or b) and lies in its memory: a block
 * compacting its result into its input's memory. (Channel slices of one
 * buffer with the same stride share its memory without sharing elements:
 * they are not this.) */
static int compacts(const float *a, int lda, const float *b, int ldb, const float *dst, int dst_ld,
                    int64_t n, int c)
{
    const float *d_end = dst + (n - 1) * dst_ld + c;
    const int over_a = dst_ld < lda && dst < a + (n - 1) * lda + c && a < d_end;
    const int over_b = b && dst_ld < ldb && dst < b + (n - 1) * ldb + c && b < d_end;
    return over_a || over_b;
}

/* The apply pass when dst compacts its inputs (dst_ld below their strides,
 * dst starting no later): voxels in rounds [s, e) whose output lies below
 * the first input voxel still to be read, e = s * (narrowest input stride)
 * / dst_ld, each round shared among the threads; the first round through
 * a temporary. The same values as the plain pass. */
static sm_status apply_compacting(const sm_kernels *k, const sm_norm_args *args, int64_t n,
                                  sm_act act, int nt)
{
    const int64_t ld_in = args->b && args->ldb < args->lda ? args->ldb : args->lda;
    const int64_t ldy = args->ldy;
    if (ldy >= ld_in || args->y > args->a || (args->b && args->y > args->b))
        return sm_fail(SEGMAMBA_E_ARG, "instance norm: the output overlaps input it has still "
                                       "to read");
    int64_t s = n < NORM_APPLY_BLOCK * nt ? n : NORM_APPLY_BLOCK * nt;
    float *tmp = malloc((size_t)s * (size_t)args->c * sizeof *tmp);
    if (!tmp) return sm_fail(SEGMAMBA_E_NOMEM, "instance norm: out of memory");
    sm_norm_args first = *args;
    first.y = tmp; /* voxel v at tmp + v * c */
    first.ldy = args->c;
    apply_range(k, &first, 0, s, act, nt);
    for (int64_t v = 0; v < s; v++)
        memcpy(args->y + v * ldy, tmp + v * args->c, (size_t)args->c * sizeof *tmp);
    free(tmp);
    while (s < n) {
        int64_t e = s * ld_in / ldy;
        if (e > n) e = n;
        apply_range(k, args, s, e, act, nt);
        s = e;
    }
    return SEGMAMBA_OK;
}

/* dst = act(IN(a) + b'), b' = IN(b) when norm_b, b itself when b is given
 * without norm_b, nothing when b is NULL: one statistics pass per normed
 * input, then a single pass (the dispatch table's norm_apply) that reads
 * the inputs and writes dst. Each term is rounded to float before the sum,
 * as the unfused ops do. */
static sm_status norm_apply(const sm_kernels *k, const float *a, int lda, const float *b, int ldb,
                            int norm_b, float *dst, int dst_ld, int64_t n, int c, sm_act act)
{
    const int nt = sm_num_threads();
    double *acc = malloc((size_t)nt * (size_t)c * 2 * sizeof *acc);
    float *buf = malloc((size_t)c * (6 + 2 * (size_t)nt) * sizeof *buf);
    if (!acc || !buf) {
        free(acc);
        free(buf);
        return sm_fail(SEGMAMBA_E_NOMEM, "instance norm: out of memory for %d channels", c);
    }
    const norm_stats sa = {buf, buf + c, buf + 2 * c}, sb = {buf + 3 * c, buf + 4 * c, buf + 5 * c};
    float *work = buf + 6 * c;
    instance_stats(k, a, lda, n, c, nt, acc, work, sa);
    if (b && norm_b) instance_stats(k, b, ldb, n, c, nt, acc, work, sb);
    const sm_norm_args args = {.c = c,
                               .a = a,
                               .lda = lda,
                               .sa = kernel_stats(sa),
                               .b = b,
                               .ldb = ldb,
                               .norm_b = norm_b,
                               .sb = kernel_stats(sb),
                               .y = dst,
                               .ldy = dst_ld,
                               .act = act == SM_ACT_GELU ? SM_ACT_NONE
                                                         : act}; /* GELU: below, on the result */
    sm_status st = SEGMAMBA_OK;
    if (compacts(a, lda, b, ldb, dst, dst_ld, n, c))
        st = apply_compacting(k, &args, n, act, nt);
    else
        apply_range(k, &args, 0, n, act, nt);
    free(acc);
    free(buf);
    return st;
}

sm_status sm_instance_norm(const sm_kernels *k, const float *src, int src_ld, float *dst,
                           int dst_ld, int64_t n, int c, sm_act act)
{
    return norm_apply(k, src, src_ld, NULL, 0, 0, dst, dst_ld, n, c, act);
}

sm_status sm_instance_norm_add(const sm_kernels *k, const float *a, int lda, const float *b,
                               int ldb, int norm_b, float *dst, int dst_ld, int64_t n, int c,
                               sm_act act)
{
    return norm_apply(k, a, lda, b, ldb, norm_b, dst, dst_ld, n, c, act);
}

void sm_layer_norm(const float *src, int src_ld, float *dst, int dst_ld, int64_t n, int c,
                   const float *weight, const float *bias)
{
#pragma omp parallel for schedule(static)
    for (int64_t v = 0; v < n; v++) {
        const float *x = src + v * src_ld;
        float *y = dst + v * dst_ld;
        float mean = 0.0f, var = 0.0f;
        for (int k = 0; k < c; k++) mean += x[k];
        mean /= (float)c;
        for (int k = 0; k < c; k++) var += (x[k] - mean) * (x[k] - mean);
        float inv = 1.0f / sqrtf(var / (float)c + 1e-5f);
        for (int k = 0; k < c; k++) y[k] = (x[k] - mean) * inv * weight[k] + bias[k];
    }
}

void sm_add(const sm_kernels *k, const float *a, int lda, const float *b, int ldb, float *dst,
            int dst_ld, int64_t n, int c, sm_act act)
{
#pragma omp parallel for schedule(static)
    for (int64_t v = 0; v < n; v++) {
        const float *x = a + v * lda, *y = b + v * ldb;
        float *o = dst + v * dst_ld;
        for (int i = 0; i < c; i++) o[i] = x[i] + y[i];
        act_row(k, o, c, act);
    }
}

void sm_activate(const sm_kernels *k, const float *src, int src_ld, float *dst, int dst_ld,
                 int64_t n, int c, sm_act act)
{
#pragma omp parallel for schedule(static)
    for (int64_t v = 0; v < n; v++) {
        const float *x = src + v * src_ld;
        float *o = dst + v * dst_ld;
        if (o != x) memcpy(o, x, (size_t)c * sizeof *o);
        act_row(k, o, c, act);
    }
}

void sm_fue(const float *src, int src_ld, float *dst, int dst_ld, int64_t n, int c)
{
#pragma omp parallel for schedule(static)
    for (int64_t v = 0; v < n; v++) {
        const float *x = src + v * src_ld;
        float *o = dst + v * dst_ld;
        float mean = 0.0f;
        for (int k = 0; k < c; k++) mean += x[k];
        mean /= (float)c;
        float m = 1.0f / (1.0f + expf(-mean));
        float keep = 1.0f + m * logf(m); /* 1 - u, u = -m ln m */
        for (int k = 0; k < c; k++) o[k] = x[k] + x[k] * keep;
    }
}

struct sm_convt2 {
    int cin, cout;
    float *w; /* (cin, 8*cout): column (a*4 + b*2 + c)*cout + co */
};

sm_status sm_convt2_create(int cin, int cout, const float *weight, sm_convt2 **out)
{
    *out = NULL;
    sm_convt2 *t = calloc(1, sizeof *t);
    float *w = malloc((size_t)cin * 8 * (size_t)cout * sizeof *w);
    if (!t || !w) {
        free(t);
        free(w);
        return sm_fail(SEGMAMBA_E_NOMEM, "transposed convolution %d->%d: out of memory", cin, cout);
    }
    for (int ci = 0; ci < cin; ci++)
        for (int co = 0; co < cout; co++)
            for (int k = 0; k < 8; k++)
                w[((size_t)ci * 8 + k) * cout + co] = weight[((size_t)ci * cout + co) * 8 + k];
    t->cin = cin;
    t->cout = cout;
    t->w = w;
    *out = t;
    return SEGMAMBA_OK;
}

/* Input voxels per GEMM: bounds the temporary to about 16 MiB. */
static int64_t convt2_block(const sm_convt2 *t)
{
    int64_t rows = ((int64_t)4 << 20) / (8 * (int64_t)t->cout);
    return rows < 64 ? 64 : rows;
}

sm_status sm_convt2_forward(const sm_convt2 *t, const float *src, int src_ld, int d, int h, int w,
                            float *dst, int dst_ld)
{
    const int64_t n = (int64_t)d * h * w;
    const int64_t block = convt2_block(t);
    const int cols = 8 * t->cout;
    float *tmp = malloc((size_t)(block < n ? block : n) * (size_t)cols * sizeof *tmp);
    if (!tmp) return sm_fail(SEGMAMBA_E_NOMEM, "transposed convolution: out of memory");
    const int64_t oh = 2 * (int64_t)h, ow = 2 * (int64_t)w;
    for (int64_t v0 = 0; v0 < n; v0 += block) {
        const int64_t rows = n - v0 < block ? n - v0 : block;
        sm_sgemm(0, 0, (int)rows, cols, t->cin, 1.0f, src + v0 * src_ld, src_ld, t->w, cols, 0.0f,
                 tmp, cols);
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            const int64_t v = v0 + r;
            const int64_t z = v / ((int64_t)h * w), y = (v / w) % h, x = v % w;
            for (int k = 0; k < 8; k++) {
                const int64_t o =
                    ((2 * z + (k >> 2)) * oh + 2 * y + ((k >> 1) & 1)) * ow + 2 * x + (k & 1);
                memcpy(dst + o * dst_ld, tmp + r * cols + (int64_t)k * t->cout,
                       (size_t)t->cout * sizeof *dst);
            }
        }
    }
    free(tmp);
    return SEGMAMBA_OK;
}

const float *sm_convt2_weights(const sm_convt2 *t, int *cin, int *cout)
{
    *cin = t->cin;
    *cout = t->cout;
    return t->w;
}

size_t sm_convt2_weight_bytes(const sm_convt2 *t)
{
    return (size_t)t->cin * 8 * (size_t)t->cout * sizeof(float);
}

void sm_convt2_free(sm_convt2 *t)
{
    if (!t) return;
    free(t->w);
    free(t);
}

void sm_to_channels_last(const float *src, int c, int64_t n, float *dst, int dst_ld)
{
#pragma omp parallel for schedule(static)
    for (int64_t v = 0; v < n; v++)
        for (int k = 0; k < c; k++) dst[v * dst_ld + k] = src[(int64_t)k * n + v];
}

void sm_from_channels_last(const float *src, int src_ld, int c, int64_t n, float *dst)
{
#pragma omp parallel for schedule(static)
    for (int64_t v = 0; v < n; v++)
        for (int k = 0; k < c; k++) dst[(int64_t)k * n + v] = src[v * src_ld + k];
}
