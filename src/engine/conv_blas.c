/* 3D convolution as GEMM through sm_sgemm (oneDNN's sgemm when built in,
 * else OpenBLAS).
 *
 * Output voxels are rows: out (nvox x cout) = cols (nvox x k^3*cin) * W, with
 * W the repacked weight (k^3*cin x cout, see sm_conv.weight). A 1x1x1
 * stride-1 convolution needs no cols matrix: the source volume already is
 * one, read in place with lda = src_ld. Otherwise cols is built (im2col) for
 * a bounded chunk of output voxels at a time: the whole matrix for a 3x3x3
 * 96-channel convolution at 128^3 would take 21 GB. The result is written
 * in place with ldc = dst_ld, then bias and ReLU are applied to the chunk
 * while it is still in cache. The GEMM threads itself; OpenMP threads the
 * copies where that does not fight OpenBLAS (see copies_in_parallel).
 *
 * On the network's k2 s2 downsampling (no overlap between windows, so
 * im2col only rearranges the input) this is about twice as fast as
 * oneDNN's direct kernel on AVX2 (48->96 at 64^3, 2 threads: 17.7 against
 * 34.8 ms) and as fast on AVX-512; sm_conv_pick puts those layers here. */
#include "blas_backends/gemm.h"
#include "engine/conv_internal.h"
#include "sm_config.h"

#include <cblas.h>
#include <stdlib.h>

/* Bytes of cols per chunk: enough rows for OpenBLAS to split among threads
 * at full speed (a 3x3x3 96-channel row is 10 KB, so 800 rows), and within
 * the last-level cache between im2col and GEMM. Time for a 3x3x3 48->48
 * convolution at 64^3 on 2 threads was flat from 2 to 32 MB. */
enum { CHUNK_BYTES = 8 << 20 };

/* OpenBLAS's pthreads build (openblas_get_parallel() == 1) keeps its
 * workers spinning for a while after each GEMM, so OpenMP threads started
 * between two GEMMs fight them for the cores: with 2 threads on 2 cores that
 * made a 3x3x3 convolution 2-5x slower than copying on the calling thread
 * alone. oneDNN's sgemm and OpenBLAS's OpenMP build run on our OpenMP
 * threads, and the sequential build has none, so the copies are threaded
 * then. */
static int copies_in_parallel(void) { return SM_HAVE_ONEDNN || openblas_get_parallel() != 1; }

static void zero_floats(float *o, size_t n)
{
    for (size_t i = 0; i < n; i++) o[i] = 0.0f;
}

/* Fills one cols row, in (kd, kh, kw, cin) order, for output voxel (z, y, x);
 * taps in the zero padding give zeros. The taps kw_lo..kw_hi-1 inside the
 * volume along x are the same for every (kd, kh) and read consecutive input
 * voxels, one run of floats when the source is dense. Plain loops, not
 * memcpy: the runs are short (4 floats per tap in the stem) and the loops
 * measured faster for every shape of the network. */
static void im2col_row(const sm_conv_params *p, const sm_conv_dims *g, const float *src,
                       size_t src_ld, int z, int y, int x, float *row)
{
    const size_t cin = (size_t)p->cin, line = (size_t)p->k * cin, plane = (size_t)p->k * line;
    const int x0 = x * p->stride - p->pad; /* input x of tap kw = 0 */
    const int kw_lo = x0 < 0 ? -x0 : 0;
    const int kw_hi = g->w - x0 < p->k ? g->w - x0 : p->k; /* > kw_lo as pad < k */
    const size_t run = (size_t)(kw_hi - kw_lo) * cin;
    for (int kd = 0; kd < p->k; kd++) {
        float *row_d = row + (size_t)kd * plane;
        const int iz = z * p->stride - p->pad + kd;
        if (iz < 0 || iz >= g->d) {
            zero_floats(row_d, plane);
            continue;
        }
        for (int kh = 0; kh < p->k; kh++) {
            float *o = row_d + (size_t)kh * line;
            const int iy = y * p->stride - p->pad + kh;
            if (iy < 0 || iy >= g->h) {
                zero_floats(o, line);
                continue;
            }
            const float *in =
                src + (((size_t)iz * g->h + iy) * g->w + (size_t)(x0 + kw_lo)) * src_ld;
            zero_floats(o, (size_t)kw_lo * cin);
            o += (size_t)kw_lo * cin;
            if (src_ld == cin) {
                for (size_t i = 0; i < run; i++) o[i] = in[i];
            } else {
                for (int kw = kw_lo; kw < kw_hi; kw++, in += src_ld)
                    for (size_t ci = 0; ci < cin; ci++) o[(size_t)(kw - kw_lo) * cin + ci] = in[ci];
            }
            zero_floats(o + run, (size_t)(p->k - kw_hi) * cin);
        }
    }
}

/* im2col_row for a dilated kernel: each tap checked on its own. */
static void im2col_row_dilated(const sm_conv_params *p, const sm_conv_dims *g, const float *src,
                               size_t src_ld, int z, int y, int x, float *row)
{
    const size_t cin = (size_t)p->cin;
    const int dil = sm_conv_dilation(p);
    for (int kd = 0; kd < p->k; kd++) {
        const int iz = z * p->stride - p->pad + kd * dil;
        for (int kh = 0; kh < p->k; kh++) {
            const int iy = y * p->stride - p->pad + kh * dil;
            for (int kw = 0; kw < p->k; kw++, row += cin) {
                const int ix = x * p->stride - p->pad + kw * dil;
                if (iz < 0 || iz >= g->d || iy < 0 || iy >= g->h || ix < 0 || ix >= g->w) {
                    zero_floats(row, cin);
                    continue;
                }
                const float *in = src + (((size_t)iz * g->h + iy) * g->w + ix) * src_ld;
                for (size_t ci = 0; ci < cin; ci++) row[ci] = in[ci];
            }
        }
    }
}

static void im2col_rows(const sm_conv_params *p, const sm_conv_dims *g, const float *src,
                        size_t src_ld, size_t v0, size_t nrows, float *cols, int parallel)
{
    const size_t ncols = sm_conv_reduction_len(p);
#if SM_HAVE_OPENMP
#pragma omp parallel for schedule(static) if (parallel)
#else
    (void)parallel;
#endif
    for (long r = 0; r < (long)nrows; r++) {
        const size_t v = v0 + (size_t)r;
        const int x = (int)(v % (size_t)g->ow);
        const int y = (int)(v / (size_t)g->ow % (size_t)g->oh);
        const int z = (int)(v / (size_t)g->ow / (size_t)g->oh);
        if (sm_conv_dilation(p) > 1)
            im2col_row_dilated(p, g, src, src_ld, z, y, x, cols + (size_t)r * ncols);
        else
            im2col_row(p, g, src, src_ld, z, y, x, cols + (size_t)r * ncols);
    }
}

static void bias_act_rows(const sm_conv *c, float *dst, size_t dst_ld, size_t nrows, int parallel)
{
    const float *bias = c->bias;
    const int relu = c->p.act == SM_ACT_RELU;
    const size_t cout = (size_t)c->p.cout;
    if (!bias && !relu) return;
#if SM_HAVE_OPENMP
#pragma omp parallel for schedule(static) if (parallel)
#else
    (void)parallel;
#endif
    for (long r = 0; r < (long)nrows; r++) {
        float *out = dst + (size_t)r * dst_ld;
        for (size_t co = 0; co < cout; co++) {
            float v = out[co] + (bias ? bias[co] : 0.0f);
            out[co] = relu && v < 0.0f ? 0.0f : v;
        }
    }
}

sm_status sm_conv_blas_forward(const sm_conv *c, const sm_conv_dims *g, const float *src,
                               size_t src_ld, float *dst, size_t dst_ld)
{
    const sm_conv_params *p = &c->p;
    const size_t nvox = sm_conv_out_voxels(g), ncols = sm_conv_reduction_len(p);
    const int in_place = p->k == 1 && p->stride == 1 && p->pad == 0;
    const int parallel = copies_in_parallel();
    size_t chunk = CHUNK_BYTES / (ncols * sizeof(float));
    if (chunk < 1) chunk = 1;
    float *cols = NULL;
    if (!in_place) {
        if (chunk > nvox) chunk = nvox;
        cols = malloc(chunk * ncols * sizeof *cols);
        if (!cols)
            return sm_fail(SEGMAMBA_E_NOMEM,
                           "BLAS convolution: out of memory for %zu x %zu "
                           "im2col chunk",
                           chunk, ncols);
    }
    for (size_t v0 = 0; v0 < nvox; v0 += chunk) {
        const size_t n = nvox - v0 < chunk ? nvox - v0 : chunk;
        const float *a = src + v0 * src_ld;
        size_t lda = src_ld;
        if (!in_place) {
            im2col_rows(p, g, src, src_ld, v0, n, cols, parallel);
            a = cols;
            lda = ncols;
        }
        float *out = dst + v0 * dst_ld;
        sm_sgemm(0, 0, (int)n, p->cout, (int)ncols, 1.0f, a, (int)lda, c->weight, p->cout, 0.0f,
                 out, (int)dst_ld);
        bias_act_rows(c, out, dst_ld, n, parallel);
    }
    free(cols);
    return SEGMAMBA_OK;
}
