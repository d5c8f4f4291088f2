/* 3D convolution: every built-in backend against the reference on random
 * data, the reference against a double-precision sum written here, argument
 * checks, and a backend's per-size cache across calls of changing size;
 * oneDNN in bf16 against the float reference where the CPU runs bf16. */
#include "check.h"
#include "engine/conv.h"
#include "simd/dispatch.h"
#include "wino_ref.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct conv_case {
    int cin, cout, k, stride, pad;
    sm_act act;
    int has_bias;
    int d, h, w;
    int src_extra, dst_extra; /* src_ld - cin, dst_ld - cout */
    int dil;                  /* dilation; 0 (left out): 1 */
} conv_case;

/* Every kernel configuration of the network (k7s2p3 stem, k2s2 downsampling,
 * k3s1p1, k1), with odd channel counts, non-cubic and odd sizes, strided
 * views, fused ReLU, and sizes that need several im2col chunks in the BLAS
 * backend (the 96->48 and 768->768 cases). */
static const conv_case cases[] = {
    {4, 48, 7, 2, 3, SM_ACT_NONE, 1, 12, 16, 10, 0, 0, 0},
    {1, 48, 7, 2, 3, SM_ACT_NONE, 1, 9, 10, 11, 0, 0, 0},
    {3, 5, 7, 2, 3, SM_ACT_RELU, 1, 2, 3, 4, 1, 3, 0}, /* volume smaller than the kernel */
    {48, 96, 2, 2, 0, SM_ACT_NONE, 1, 6, 8, 10, 0, 0, 0},
    {17, 5, 2, 2, 0, SM_ACT_NONE, 0, 7, 5, 9, 3, 2, 0},
    {48, 48, 3, 1, 1, SM_ACT_RELU, 1, 8, 8, 8, 0, 0, 0},
    {96, 48, 3, 1, 1, SM_ACT_NONE, 0, 10, 12, 9, 0, 0, 0},
    {5, 17, 3, 1, 1, SM_ACT_RELU, 1, 6, 8, 10, 3, 5, 0},
    {48, 48, 3, 1, 1, SM_ACT_NONE, 1, 4, 5, 6, 48, 48, 0}, /* halves of concatenations */
    {768, 768, 3, 1, 1, SM_ACT_NONE, 1, 4, 5, 6, 0, 0, 0},
    {5, 7, 3, 2, 1, SM_ACT_RELU, 1, 7, 6, 5, 2, 1, 0},
    {96, 48, 1, 1, 0, SM_ACT_NONE, 1, 6, 8, 10, 0, 0, 0},
    {3, 5, 1, 1, 0, SM_ACT_RELU, 1, 6, 8, 10, 4, 3, 0},
    {48, 96, 1, 1, 0, SM_ACT_RELU, 0, 5, 5, 5, 48, 96, 0},
    /* SegMamba-V2: k5 p2, k3 p2 dilation 2, k3 s2 p1 downsampling */
    {8, 8, 5, 1, 2, SM_ACT_NONE, 1, 7, 6, 9, 0, 0, 0},
    {48, 48, 5, 1, 2, SM_ACT_RELU, 1, 5, 6, 4, 48, 48, 0},
    {8, 8, 3, 1, 2, SM_ACT_NONE, 1, 7, 6, 9, 0, 0, 2},
    {17, 5, 3, 1, 2, SM_ACT_RELU, 1, 5, 8, 3, 3, 2, 2},
    {48, 96, 3, 2, 1, SM_ACT_NONE, 1, 8, 6, 10, 0, 0, 0},
};

/* Written into every destination element first: padding channels must keep
 * it, and a real output left unwritten shows up as a large error. */
static const float SENTINEL = -777.25f;

static uint64_t rng = 0x9e3779b97f4a7c15u;

static float uniform(void) /* in [-1, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 40) / (double)(1u << 23) - 1.0);
}

static float *random_floats(size_t n)
{
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = uniform();
    return x;
}

static float *sentinel_floats(size_t n)
{
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = SENTINEL;
    return x;
}

static sm_conv_params params_of(const conv_case *t, sm_precision precision)
{
    return (sm_conv_params){t->cin, t->cout,   t->k, t->stride, t->pad,
                            t->act, precision, 0,    NULL,      t->dil};
}

static size_t out_voxels(const conv_case *t)
{
    sm_conv_params p = params_of(t, SM_PREC_F32);
    return (size_t)sm_conv_out_size(&p, t->d) * sm_conv_out_size(&p, t->h) *
           sm_conv_out_size(&p, t->w);
}

/* Both sides sum K = k^3*cin products in float, in different orders. For
 * terms of random sign the rounding error of such a sum grows like
 * sqrt(K) * u * (size of the partial sums), u = FLT_EPSILON / 2, and the
 * partial sums are about as large as the outputs (the worst-case bound,
 * K * u * sum|terms|, is never approached by random data). 8 u sqrt(K)
 * max|ref| covers the two independent errors and the tail of the maximum
 * over all outputs; the largest error measured is about 0.15 of it. */
static double tolerance_f32(const conv_case *t, double max_ref)
{
    double k = (double)t->k * t->k * t->k * t->cin;
    return 4.0 * FLT_EPSILON * sqrt(k) * max_ref;
}

/* Random weights (PyTorch layout), bias when the case has one, and source
 * including its padding channels, which every backend must ignore. */
typedef struct case_data {
    float *weight, *bias, *src;
} case_data;

static double rms(const float *x, size_t n, size_t len, size_t ld)
{
    double sum = 0.0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < len; j++) sum += (double)x[i * ld + j] * x[i * ld + j];
    return sqrt(sum / (double)(n * len));
}

/* bf16 keeps 8 significant bits, so rounding the source and the weights
 * gives x(1+a) and w(1+b) with |a|, |b| <= u = 2^-8, and each product is off
 * by xw(a+b) + O(u^2), at most 2u|xw|. The float sum adds only ~2^-24
 * relative on top. The K errors of an output have random signs and
 * independent a, b, so their sum has a standard deviation of at most
 * 2u sqrt(K) rms(x) rms(w). K is k^3*cin, less where the volume is
 * narrower than the kernel: a window then sees at most min(k, n) positions
 * along an axis of n voxels (zero padding elsewhere only removes terms;
 * counting K right keeps the bound tight enough for the lower check in
 * test_bf16_cases). The largest
 * of the up to ~10^5 outputs of a case lies within about 4.8 standard
 * deviations (sqrt(2 ln 10^5)); 6 leaves room for the non-Gaussian tail of
 * small K. The bound on |a+b| is itself about 3.5 times the rms of a+b
 * (uniform rounding errors), so errors near 0.2 of this are expected. The
 * bias is added in float and ReLU only clips, so neither adds error. */
static double tolerance_bf16(const conv_case *t, const case_data *x)
{
    const double u = 1.0 / 256.0, k = (double)t->cin * (t->k < t->d ? t->k : t->d) *
                                      (t->k < t->h ? t->k : t->h) * (t->k < t->w ? t->k : t->w);
    const double rms_src =
        rms(x->src, (size_t)t->d * t->h * t->w, (size_t)t->cin, (size_t)(t->cin + t->src_extra));
    const double rms_weight = rms(x->weight, 1, (size_t)t->cout * t->cin * t->k * t->k * t->k, 0);
    return 6.0 * 2.0 * u * sqrt(k) * rms_src * rms_weight;
}

typedef struct error_bound {
    double err, tol; /* largest error, tolerance */
} error_bound;

/* Checks got against want (nvox voxels, cout channels, stride ld) within
 * the tolerance of the precision got was computed in, and that got's
 * padding channels hold SENTINEL. */
static error_bound compare(const conv_case *t, const case_data *x, sm_precision precision,
                           const char *what, const float *want, const float *got, size_t nvox,
                           int ld)
{
    double max_ref = 0.0, max_err = 0.0;
    int padding_ok = 1;
    for (size_t v = 0; v < nvox; v++) {
        for (int c = 0; c < t->cout; c++) {
            double r = want[v * ld + c], e = fabs(got[v * ld + c] - r);
            if (fabs(r) > max_ref) max_ref = fabs(r);
            if (e > max_err || isnan(e)) max_err = e; /* a NaN stays */
        }
        for (int c = t->cout; c < ld; c++)
            padding_ok &= memcmp(&got[v * ld + c], &SENTINEL, sizeof SENTINEL) == 0;
    }
    double tol = precision == SM_PREC_BF16 ? tolerance_bf16(t, x) : tolerance_f32(t, max_ref);
    CHECK_MSG(max_err <= tol && max_ref > 0.0,
              "%s %s: %d->%d k%d s%d p%d %dx%dx%d: max error %g, tolerance %g (max |ref| %g)", what,
              sm_precision_name(precision), t->cin, t->cout, t->k, t->stride, t->pad, t->d, t->h,
              t->w, max_err, tol, max_ref);
    CHECK_MSG(padding_ok, "%s: %d->%d k%d: padding channels of dst were written", what, t->cin,
              t->cout, t->k);
    return (error_bound){max_err, tol};
}

static case_data case_data_new(const conv_case *t)
{
    return (case_data){
        random_floats((size_t)t->cout * t->cin * t->k * t->k * t->k),
        t->has_bias ? random_floats((size_t)t->cout) : NULL,
        random_floats((size_t)t->d * t->h * t->w * (t->cin + t->src_extra)),
    };
}

static void case_data_free(case_data *x)
{
    free(x->weight);
    free(x->bias);
    free(x->src);
}

static sm_status run_conv(sm_conv_kind kind, sm_precision precision, const conv_case *t,
                          const case_data *x, float *dst)
{
    sm_conv_params p = params_of(t, precision);
    sm_conv *c;
    sm_status s = sm_conv_create(kind, &p, x->weight, x->bias, &c);
    if (s != SEGMAMBA_OK) return s;
    s = sm_conv_forward(c, x->src, t->cin + t->src_extra, t->d, t->h, t->w, dst,
                        t->cout + t->dst_extra);
    sm_conv_free(c);
    return s;
}

/* Output channel co at output voxel (oz, oy, ox) straight from the
 * definition, in double, over the PyTorch weight layout: no code shared
 * with the library. */
static double conv_point_double(const conv_case *t, const case_data *x, int oz, int oy, int ox,
                                int co)
{
    const int k = t->k, src_ld = t->cin + t->src_extra, dil = t->dil > 1 ? t->dil : 1;
    double sum = x->bias ? x->bias[co] : 0.0;
    for (int ci = 0; ci < t->cin; ci++)
        for (int a = 0; a < k; a++)
            for (int b = 0; b < k; b++)
                for (int e = 0; e < k; e++) {
                    int iz = oz * t->stride - t->pad + a * dil,
                        iy = oy * t->stride - t->pad + b * dil,
                        ix = ox * t->stride - t->pad + e * dil;
                    if (iz < 0 || iy < 0 || ix < 0 || iz >= t->d || iy >= t->h || ix >= t->w)
                        continue;
                    size_t wi = (((size_t)(co * t->cin + ci) * k + a) * k + b) * k + e;
                    size_t si = (((size_t)iz * t->h + iy) * t->w + ix) * src_ld + ci;
                    sum += (double)x->weight[wi] * x->src[si];
                }
    return t->act == SM_ACT_RELU && sum < 0.0 ? 0.0 : sum;
}

static void test_reference_against_double(void)
{
    static const conv_case tiny[] = {
        {3, 5, 3, 2, 1, SM_ACT_RELU, 1, 5, 6, 7, 2, 1, 0},
        {4, 3, 2, 1, 0, SM_ACT_NONE, 0, 3, 4, 5, 0, 2, 0},
        {3, 4, 3, 1, 2, SM_ACT_RELU, 1, 5, 4, 6, 1, 2, 2},
        {3, 4, 5, 1, 2, SM_ACT_NONE, 1, 6, 5, 4, 0, 1, 0},
    };
    for (size_t i = 0; i < sizeof tiny / sizeof *tiny; i++) {
        const conv_case *t = &tiny[i];
        const sm_conv_params p = params_of(t, SM_PREC_F32);
        const int od = sm_conv_out_size(&p, t->d), oh = sm_conv_out_size(&p, t->h),
                  ow = sm_conv_out_size(&p, t->w), dst_ld = t->cout + t->dst_extra;
        const size_t nvox = (size_t)od * oh * ow;
        case_data x = case_data_new(t);
        float *want = sentinel_floats(nvox * dst_ld), *got = sentinel_floats(nvox * dst_ld);
        for (int z = 0; z < od; z++)
            for (int y = 0; y < oh; y++)
                for (int xo = 0; xo < ow; xo++)
                    for (int co = 0; co < t->cout; co++)
                        want[(((size_t)z * oh + y) * ow + xo) * dst_ld + co] =
                            (float)conv_point_double(t, &x, z, y, xo, co);
        CHECK(run_conv(SM_CONV_REF, SM_PREC_F32, t, &x, got) == SEGMAMBA_OK);
        compare(t, &x, SM_PREC_F32, "ref vs double", want, got, nvox, dst_ld);
        case_data_free(&x);
        free(want);
        free(got);
    }
}

static void test_backend_cases(sm_conv_kind kind)
{
    double worst = 0.0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const conv_case *t = &cases[i];
        const size_t nvox = out_voxels(t);
        const int dst_ld = t->cout + t->dst_extra;
        case_data x = case_data_new(t);
        float *want = sentinel_floats(nvox * dst_ld), *got = sentinel_floats(nvox * dst_ld);
        CHECK(run_conv(SM_CONV_REF, SM_PREC_F32, t, &x, want) == SEGMAMBA_OK);
        sm_status s = run_conv(kind, SM_PREC_F32, t, &x, got);
        CHECK_MSG(s == SEGMAMBA_OK, "%s: %s", sm_conv_kind_name(kind), segmamba_get_last_error());
        error_bound e =
            compare(t, &x, SM_PREC_F32, sm_conv_kind_name(kind), want, got, nvox, dst_ld);
        if (e.err / e.tol > worst) worst = e.err / e.tol;
        case_data_free(&x);
        free(want);
        free(got);
    }
    fprintf(stderr, "%s: worst error %.3f of tolerance\n", sm_conv_kind_name(kind), worst);
}

/* One convolution object run at changing sizes and strides, each result
 * against a fresh reference: a backend's per-size cache must follow. Each
 * step changes one of d, h, w, src_ld, dst_ld, then all return. */
static void test_size_changes(sm_conv_kind kind, sm_precision precision, int tile)
{
    static const conv_case steps[] = {
        {5, 17, 3, 1, 1, SM_ACT_RELU, 1, 6, 8, 10, 0, 0, 0},
        {5, 17, 3, 1, 1, SM_ACT_RELU, 1, 7, 8, 10, 0, 0, 0},
        {5, 17, 3, 1, 1, SM_ACT_RELU, 1, 7, 9, 10, 0, 0, 0},
        {5, 17, 3, 1, 1, SM_ACT_RELU, 1, 7, 9, 9, 0, 0, 0},
        {5, 17, 3, 1, 1, SM_ACT_RELU, 1, 7, 9, 9, 3, 0, 0},
        {5, 17, 3, 1, 1, SM_ACT_RELU, 1, 7, 9, 9, 3, 2, 0},
        {5, 17, 3, 1, 1, SM_ACT_RELU, 1, 6, 8, 10, 0, 0, 0},
    };
    sm_conv_params p = params_of(&steps[0], precision);
    p.tile = tile;
    case_data x = case_data_new(&steps[0]);
    sm_conv *c;
    CHECK(sm_conv_create(kind, &p, x.weight, x.bias, &c) == SEGMAMBA_OK);
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
        const conv_case *t = &steps[i];
        const size_t nvox = out_voxels(t);
        const int src_ld = t->cin + t->src_extra, dst_ld = t->cout + t->dst_extra;
        free(x.src);
        x.src = random_floats((size_t)t->d * t->h * t->w * src_ld);
        float *want = sentinel_floats(nvox * dst_ld), *got = sentinel_floats(nvox * dst_ld);
        CHECK(run_conv(SM_CONV_REF, SM_PREC_F32, t, &x, want) == SEGMAMBA_OK);
        CHECK(sm_conv_forward(c, x.src, src_ld, t->d, t->h, t->w, got, dst_ld) == SEGMAMBA_OK);
        compare(t, &x, precision, "size change", want, got, nvox, dst_ld);
        free(want);
        free(got);
    }
    sm_conv_free(c);
    case_data_free(&x);
}

static void test_arguments(void)
{
    sm_conv_params p = {4, 8, 7, 2, 3, SM_ACT_NONE, SM_PREC_F32, 0, NULL, 0};
    CHECK(sm_conv_out_size(&p, 128) == 64);
    CHECK(sm_conv_out_size(&p, 1) == 1);
    p = (sm_conv_params){4, 8, 2, 2, 0, SM_ACT_NONE, SM_PREC_F32, 0, NULL, 0};
    CHECK(sm_conv_out_size(&p, 127) == 63);
    p = (sm_conv_params){4, 8, 7, 1, 0, SM_ACT_NONE, SM_PREC_F32, 0, NULL, 0};
    CHECK(sm_conv_out_size(&p, 6) == 0);

    float weight[8 * 4 * 27] = {0}, src[3 * 3 * 3 * 4] = {0}, dst[8] = {0};
    sm_conv *c = NULL;
    p = (sm_conv_params){4, 8, 0, 1, 0, SM_ACT_NONE, SM_PREC_F32, 0, NULL, 0};
    CHECK(sm_conv_create(SM_CONV_REF, &p, weight, NULL, &c) == SEGMAMBA_E_ARG && !c);
    p = (sm_conv_params){4, 8, 3, 1, 3, SM_ACT_NONE, SM_PREC_F32, 0, NULL, 0};
    CHECK(sm_conv_create(SM_CONV_REF, &p, weight, NULL, &c) == SEGMAMBA_E_UNSUPPORTED && !c);
    p = (sm_conv_params){4, 8, 3, 1, 0, (sm_act)7, SM_PREC_F32, 0, NULL, 0};
    CHECK(sm_conv_create(SM_CONV_REF, &p, weight, NULL, &c) == SEGMAMBA_E_ARG && !c);
    p = (sm_conv_params){4, 8, 3, 1, 0, SM_ACT_NONE, SM_PREC_F32, 0, NULL, 0};
    if (!sm_conv_available(SM_CONV_ONEDNN))
        CHECK(sm_conv_create(SM_CONV_ONEDNN, &p, weight, NULL, &c) == SEGMAMBA_E_UNSUPPORTED);
    CHECK(sm_conv_create(SM_CONV_REF, &p, weight, NULL, &c) == SEGMAMBA_OK);
    CHECK(sm_conv_forward(c, src, 3, 3, 3, 3, dst, 8) == SEGMAMBA_E_ARG);
    CHECK(sm_conv_forward(c, src, 4, 3, 3, 3, dst, 7) == SEGMAMBA_E_ARG);
    CHECK(sm_conv_forward(c, src, 4, 2, 3, 3, dst, 8) == SEGMAMBA_E_SHAPE);
    CHECK(sm_conv_forward(c, src, 4, 3, 3, 3, dst, 8) == SEGMAMBA_OK);
    sm_conv_free(c);
    c = NULL;

    p.precision = (sm_precision)2;
    CHECK(sm_conv_create(SM_CONV_ONEDNN, &p, weight, NULL, &c) == SEGMAMBA_E_ARG && !c);
    /* bf16 is refused, never run as float, by the float-only backends and
     * wherever the CPU lacks it. */
    p.precision = SM_PREC_BF16;
    CHECK(sm_conv_create(SM_CONV_REF, &p, weight, NULL, &c) == SEGMAMBA_E_UNSUPPORTED && !c);
    CHECK(sm_conv_create(SM_CONV_BLAS, &p, weight, NULL, &c) == SEGMAMBA_E_UNSUPPORTED && !c);
    CHECK(!sm_conv_bf16_supported() || sm_conv_available(SM_CONV_ONEDNN));
    sm_status s = sm_conv_create(SM_CONV_ONEDNN, &p, weight, NULL, &c);
    CHECK(sm_conv_bf16_supported() ? s == SEGMAMBA_OK && c : s == SEGMAMBA_E_UNSUPPORTED && !c);
    sm_conv_free(c);
}

/* oneDNN in bf16 and in float against the float reference on the whole case
 * table. Besides staying within its tolerance, the bf16 error must be far
 * above float's: an error as small as float's would mean that bf16 did not
 * run. Float's largest error is ~2^-24 sqrt(K) relative, bf16's expected one
 * ~0.2 of its tolerance, ~2^-8 sqrt(K); the bound tol/64 sits between. */
static void test_bf16_cases(void)
{
    double worst = 0.0, least = INFINITY;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const conv_case *t = &cases[i];
        const size_t nvox = out_voxels(t);
        const int dst_ld = t->cout + t->dst_extra;
        case_data x = case_data_new(t);
        float *want = sentinel_floats(nvox * dst_ld), *f32 = sentinel_floats(nvox * dst_ld),
              *bf16 = sentinel_floats(nvox * dst_ld);
        CHECK(run_conv(SM_CONV_REF, SM_PREC_F32, t, &x, want) == SEGMAMBA_OK);
        CHECK(run_conv(SM_CONV_ONEDNN, SM_PREC_F32, t, &x, f32) == SEGMAMBA_OK);
        sm_status s = run_conv(SM_CONV_ONEDNN, SM_PREC_BF16, t, &x, bf16);
        CHECK_MSG(s == SEGMAMBA_OK, "onednn bf16: %s", segmamba_get_last_error());
        error_bound e32 = compare(t, &x, SM_PREC_F32, "onednn", want, f32, nvox, dst_ld);
        error_bound e16 = compare(t, &x, SM_PREC_BF16, "onednn", want, bf16, nvox, dst_ld);
        CHECK_MSG(e16.err > 16.0 * e32.err && e16.err > e16.tol / 64.0,
                  "onednn bf16: %d->%d k%d: error %g is too small for bf16 (float's %g, "
                  "tolerance %g)",
                  t->cin, t->cout, t->k, e16.err, e32.err, e16.tol);
        if (e16.err / e16.tol > worst) worst = e16.err / e16.tol;
        if (e16.err / e16.tol < least) least = e16.err / e16.tol;
        case_data_free(&x);
        free(want);
        free(f32);
        free(bf16);
    }
    fprintf(stderr, "onednn bf16: error %.3f to %.3f of tolerance\n", least, worst);
}

/* ---- Winograd ------------------------------------------------------------
 * The Winograd backend against the convolution's definition in double, per
 * output, within a bound derived for each tile size m (n = m + 2). The
 * float computation
 *   V = B^T d B (3 axes of rows of at most n terms: at most 3n roundings
 *       on any path from an input to a point),
 *   U = G g G^T (computed in double: one rounding to float),
 *   M = sum over cin of U V (one FMA each: cin roundings),
 *   Y = A^T M A + bias (3n roundings, and one for the bias)
 * rounds k = 6n + cin + 2 times along any path. Each rounding multiplies
 * the value it rounds by (1 + delta), |delta| <= u = 2^-24, and the later
 * stages carry it to the output with their coefficients; the value is a
 * partial sum of the terms e d (coefficients times inputs) that reach the
 * output. With the deltas independent and of random sign (the same model
 * as tolerance_f32's for the direct sum), an output's error has a standard
 * deviation of at most u sqrt(k) times the root-sum-square of those terms,
 *   rss = sqrt(A^T2 (x)3 (sum_ci U_ci^2 . B^T2 (x)3 d_ci^2) + bias^2)
 * ((x)3: along the three axes; squares entry by entry). It grows with m
 * through k and through the size of the transforms' entries (F(4,3)'s
 * A^T reaches 8), which rss carries. The largest of ~10^5 outputs lies
 * within about 4.5 standard deviations; the bound is 6 u sqrt(k) rss,
 * computed for every output. (The first-order worst case, k u times the
 * sum of |terms|, is 100-1000 times larger and never approached by random
 * data.) test_winograd_cases prints the largest error against its bound
 * and against max |output| per tile size. */

/* rss of each of the case's outputs, (od, oh, ow, cout) dense. */
static double *winograd_rss(const conv_case *t, const case_data *x, int m)
{
    const sm_wino_matrices *mt = sm_wino_matrices_get(m);
    const int n = mt->n, P = n * n * n, src_ld = t->cin + t->src_extra;
    double *mag = calloc((size_t)t->d * t->h * t->w * t->cout, sizeof *mag);
    double *u = malloc((size_t)t->cout * t->cin * P * sizeof *u);
    double *v = malloc((size_t)t->cin * P * sizeof *v);
    enum { CUBE = SM_WINO_MAX_N * SM_WINO_MAX_N * SM_WINO_MAX_N };
    double d[CUBE], acc[CUBE], y[CUBE];
    /* U^2, U = G g G^T per (co, ci), in double */
    for (int co = 0; co < t->cout; co++)
        for (int ci = 0; ci < t->cin; ci++) {
            const float *g = x->weight + ((size_t)co * t->cin + ci) * 27;
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++)
                    for (int k = 0; k < n; k++) {
                        double sum = 0;
                        for (int a = 0; a < 3; a++)
                            for (int b = 0; b < 3; b++)
                                for (int e = 0; e < 3; e++)
                                    sum += mt->g[i][a] * mt->g[j][b] * mt->g[k][e] *
                                           g[(a * 3 + b) * 3 + e];
                        u[(((size_t)co * t->cin + ci) * n + i) * n * n + j * n + k] = sum * sum;
                    }
        }
    for (int tz = 0; tz < t->d; tz += m)
        for (int ty = 0; ty < t->h; ty += m)
            for (int tx = 0; tx < t->w; tx += m) {
                for (int ci = 0; ci < t->cin; ci++) {
                    for (int i = 0; i < n; i++)
                        for (int j = 0; j < n; j++)
                            for (int k = 0; k < n; k++) {
                                const int z = tz - 1 + i, yy = ty - 1 + j, xx = tx - 1 + k;
                                const int in = z >= 0 && z < t->d && yy >= 0 && yy < t->h &&
                                               xx >= 0 && xx < t->w;
                                const double val =
                                    in ? x->src[(((size_t)z * t->h + yy) * t->w + xx) * src_ld + ci]
                                       : 0.0;
                                d[(i * n + j) * n + k] = val * val;
                            }
                    wino_apply3(mt->bt, n, n, d, v + (size_t)ci * P, WINO_SQUARES);
                }
                for (int co = 0; co < t->cout; co++) {
                    for (int p = 0; p < P; p++) acc[p] = 0;
                    for (int ci = 0; ci < t->cin; ci++)
                        for (int p = 0; p < P; p++)
                            acc[p] += u[((size_t)co * t->cin + ci) * P + p] * v[(size_t)ci * P + p];
                    wino_apply3(mt->at, m, n, acc, y, WINO_SQUARES);
                    for (int i = 0; i < m && tz + i < t->d; i++)
                        for (int j = 0; j < m && ty + j < t->h; j++)
                            for (int k = 0; k < m && tx + k < t->w; k++)
                                mag[((((size_t)(tz + i) * t->h + ty + j) * t->w + tx + k)) *
                                        t->cout +
                                    co] = sqrt(y[(i * n + j) * n + k] +
                                               (x->bias ? (double)x->bias[co] * x->bias[co] : 0.0));
                }
            }
    free(u);
    free(v);
    return mag;
}

typedef struct wino_figures {
    double err_ratio; /* largest error / its bound */
    double err_rel;   /* largest error / max |output| */
    double bound_rel; /* largest bound / max |output| */
} wino_figures;

/* One case on the Winograd backend with tile m at the current kernel level,
 * every output against the double-precision definition within its bound.
 * With in_place, source and destination are the two halves of one buffer
 * of cin + cout channels (as a ResBlock inside its concatenation). */
static void winograd_case(const conv_case *t, int m, int in_place, wino_figures *f)
{
    case_data x = case_data_new(t);
    const size_t nvox = (size_t)t->d * t->h * t->w;
    const int src_ld = t->cin + t->src_extra, dst_ld = t->cout + t->dst_extra;
    float *dst = sentinel_floats(nvox * dst_ld);
    sm_conv_params p = params_of(t, SM_PREC_F32);
    p.tile = m;
    sm_conv *c = NULL;
    CHECK(sm_conv_create(SM_CONV_WINOGRAD, &p, x.weight, x.bias, &c) == SEGMAMBA_OK);
    float *shared = NULL;
    sm_status st;
    if (in_place) {
        /* src_ld == dst_ld == cin + cout here: src in channels [0, cin),
         * dst in [cin, cin + cout) of each voxel */
        shared = malloc(nvox * src_ld * sizeof *shared);
        for (size_t v = 0; v < nvox; v++)
            for (int k = 0; k < src_ld; k++)
                shared[v * src_ld + k] = k < t->cin ? x.src[v * src_ld + k] : SENTINEL;
        st = sm_conv_forward(c, shared, src_ld, t->d, t->h, t->w, shared + t->cin, src_ld);
        for (size_t v = 0; v < nvox; v++)
            for (int k = 0; k < t->cout; k++) dst[v * dst_ld + k] = shared[v * src_ld + t->cin + k];
    } else {
        st = sm_conv_forward(c, x.src, src_ld, t->d, t->h, t->w, dst, dst_ld);
    }
    CHECK_MSG(st == SEGMAMBA_OK, "winograd%d: %s", m, segmamba_get_last_error());
    sm_conv_free(c);
    double *rss = winograd_rss(t, &x, m);
    const double cin = t->cin, n = m + 2, u = FLT_EPSILON / 2;
    double max_ref = 0, max_err = 0, max_bound = 0, worst = 0;
    int padding_ok = 1, source_ok = 1;
    for (int z = 0; z < t->d; z++)
        for (int y = 0; y < t->h; y++)
            for (int xo = 0; xo < t->w; xo++) {
                const size_t v = ((size_t)z * t->h + y) * t->w + xo;
                for (int co = 0; co < t->cout; co++) {
                    const double want = conv_point_double(t, &x, z, y, xo, co);
                    const double e = fabs(dst[v * dst_ld + co] - want);
                    const double bound =
                        6.0 * u * sqrt(6 * n + cin + 2) * rss[v * t->cout + co] + 1e-30;
                    max_ref = fmax(max_ref, fabs(want));
                    max_bound = fmax(max_bound, bound);
                    if (!(e <= max_err)) max_err = e;
                    if (!(e / bound <= worst)) worst = e / bound;
                }
                for (int co = t->cout; co < dst_ld && !in_place; co++)
                    padding_ok &= memcmp(&dst[v * dst_ld + co], &SENTINEL, sizeof SENTINEL) == 0;
                for (int k = 0; in_place && k < t->cin; k++)
                    source_ok &= shared[v * src_ld + k] == x.src[v * src_ld + k];
            }
    CHECK_MSG(worst <= 1.0 && max_ref > 0,
              "winograd%d %s: %d->%d %dx%dx%d ld %d/%d: error %.3g of its bound (max error %g, "
              "max |ref| %g)",
              m, sm_isa_name(sm_kernels_get()->isa), t->cin, t->cout, t->d, t->h, t->w, src_ld,
              dst_ld, worst, max_err, max_ref);
    CHECK_MSG(padding_ok, "winograd%d: padding channels of dst were written", m);
    CHECK_MSG(source_ok, "winograd%d: the source half of the shared buffer was written", m);
    f->err_ratio = fmax(f->err_ratio, worst);
    f->err_rel = fmax(f->err_rel, max_err / max_ref);
    f->bound_rel = fmax(f->bound_rel, max_bound / max_ref);
    free(rss);
    free(shared);
    free(dst);
    case_data_free(&x);
}

/* Random shapes: odd channel counts, sides from 1 to 64 (partial tiles on
 * every side), views into wider buffers, bias and ReLU; at every kernel
 * level this CPU has and every tile size. */
static void test_winograd_cases(void)
{
    static const conv_case wcases[] = {
        {13, 17, 3, 1, 1, SM_ACT_NONE, 1, 16, 20, 24, 3, 5, 0},
        {5, 3, 3, 1, 1, SM_ACT_RELU, 1, 17, 19, 23, 0, 0, 0},
        {1, 1, 3, 1, 1, SM_ACT_NONE, 0, 16, 16, 16, 0, 2, 0},
        {4, 48, 3, 1, 1, SM_ACT_NONE, 0, 20, 18, 16, 0, 48, 0},
        {96, 48, 3, 1, 1, SM_ACT_NONE, 0, 16, 12, 18, 0, 0, 0},
        {7, 9, 3, 1, 1, SM_ACT_RELU, 1, 64, 20, 16, 2, 7, 0},
        {33, 31, 3, 1, 1, SM_ACT_NONE, 1, 1, 2, 3, 0, 1, 0},
        /* transformed weights above the 4 MiB kept once (F(2,3): 5.5 MiB,
         * F(3,3): 10.7 MiB, F(4,3): 18.5 MiB): each forward transforms
         * them */
        {200, 100, 3, 1, 1, SM_ACT_RELU, 1, 5, 6, 7, 3, 0, 0},
    };
    for (int isa = SM_ISA_SCALAR; isa <= SM_ISA_NEON; isa++) {
        if (sm_kernels_select((sm_isa)isa) != (sm_isa)isa) continue;
        for (int m = 2; m <= 4; m++) {
            wino_figures f = {0};
            for (size_t i = 0; i < sizeof wcases / sizeof *wcases; i++)
                winograd_case(&wcases[i], m, 0, &f);
            /* a block inside its concatenation: 24 -> 24 from the first
             * half of a 48-channel buffer into the second */
            const conv_case half = {24, 24, 3, 1, 1, SM_ACT_NONE, 0, 16, 18, 20, 24, 24, 0};
            winograd_case(&half, m, 1, &f);
            fprintf(stderr,
                    "winograd%d %s: largest error %.3g of its bound; %.2e of max|output| "
                    "(bound up to %.2e)\n",
                    m, sm_isa_name(sm_kernels_get()->isa), f.err_ratio, f.err_rel, f.bound_rel);
        }
    }
    sm_kernels_select(sm_isa_detect());
}

/* sm_conv_forward_planes: a forward in slabs of output planes equals the
 * whole forward bit for bit when every slab starts at a multiple of the
 * tile (the last may be partial), for every tile, strided views included,
 * kept and per-forward transformed weights; only Winograd runs it, and
 * ranges outside the output are refused. */
static void test_winograd_planes(void)
{
    static const conv_case pcases[] = {
        {13, 17, 3, 1, 1, SM_ACT_RELU, 1, 23, 9, 10, 3, 5, 0},
        {200, 100, 3, 1, 1, SM_ACT_NONE, 1, 13, 5, 6, 0, 0, 0},
        {6, 5, 3, 1, 1, SM_ACT_NONE, 0, 1, 4, 3, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof pcases / sizeof *pcases; i++) {
        const conv_case *t = &pcases[i];
        case_data x = case_data_new(t);
        const size_t plane = (size_t)t->h * t->w, nvox = plane * t->d;
        const int src_ld = t->cin + t->src_extra, dst_ld = t->cout + t->dst_extra;
        for (int m = 2; m <= 4; m++) {
            sm_conv_params p = params_of(t, SM_PREC_F32);
            p.tile = m;
            sm_conv *c = NULL;
            CHECK(sm_conv_create(SM_CONV_WINOGRAD, &p, x.weight, x.bias, &c) == SEGMAMBA_OK);
            CHECK(sm_conv_tile(c) == m);
            float *whole = sentinel_floats(nvox * dst_ld), *slabs = sentinel_floats(nvox * dst_ld);
            CHECK(sm_conv_forward(c, x.src, src_ld, t->d, t->h, t->w, whole, dst_ld) ==
                  SEGMAMBA_OK);
            for (int slab = m; slab <= 2 * m; slab += m) {
                for (int z0 = 0; z0 < t->d; z0 += slab) {
                    const int z1 = z0 + slab < t->d ? z0 + slab : t->d;
                    const sm_status st =
                        sm_conv_forward_planes(c, x.src, src_ld, t->d, t->h, t->w, z0, z1,
                                               slabs + (size_t)z0 * plane * dst_ld, dst_ld, NULL);
                    CHECK_MSG(st == SEGMAMBA_OK, "planes [%d, %d): %s", z0, z1,
                              segmamba_get_last_error());
                }
                CHECK_MSG(memcmp(whole, slabs, nvox * dst_ld * sizeof *whole) == 0,
                          "winograd%d %d->%d %dx%dx%d in slabs of %d planes differs from the "
                          "whole forward",
                          m, t->cin, t->cout, t->d, t->h, t->w, slab);
            }
            CHECK(sm_conv_forward_planes(c, x.src, src_ld, t->d, t->h, t->w, 0, t->d + 1, slabs,
                                         dst_ld, NULL) == SEGMAMBA_E_ARG);
            CHECK(sm_conv_forward_planes(c, x.src, src_ld, t->d, t->h, t->w, 1, 1, slabs, dst_ld,
                                         NULL) == SEGMAMBA_E_ARG);
            CHECK(sm_conv_forward_planes(c, x.src, src_ld, t->d, t->h, t->w, -1, 1, slabs, dst_ld,
                                         NULL) == SEGMAMBA_E_ARG);
            sm_conv_free(c);
            free(whole);
            free(slabs);
        }
        case_data_free(&x);
    }
    /* the direct backends compute whole volumes only */
    const conv_case *t = &pcases[2];
    case_data x = case_data_new(t);
    sm_conv_params p = params_of(t, SM_PREC_F32);
    sm_conv *c = NULL;
    CHECK(sm_conv_create(SM_CONV_REF, &p, x.weight, x.bias, &c) == SEGMAMBA_OK);
    float out[4 * 3 * 5];
    CHECK(sm_conv_forward_planes(c, x.src, t->cin, t->d, t->h, t->w, 0, 1, out, t->cout, NULL) ==
          SEGMAMBA_E_UNSUPPORTED);
    CHECK(sm_conv_tile(c) == 0);
    sm_conv_free(c);
    case_data_free(&x);
}

static void test_winograd_arguments(void)
{
    float weight[4 * 4 * 27] = {0};
    sm_conv *c = NULL;
    static const struct {
        int k, stride, pad;
    } refused[] = {{1, 1, 0}, {3, 2, 1}, {3, 1, 0}, {5, 1, 2}, {2, 2, 0}};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        sm_conv_params p = {
            4,    4, refused[i].k, refused[i].stride, refused[i].pad, SM_ACT_NONE, SM_PREC_F32, 0,
            NULL, 0};
        CHECK(sm_conv_create(SM_CONV_WINOGRAD, &p, weight, NULL, &c) == SEGMAMBA_E_UNSUPPORTED &&
              !c);
    }
    sm_conv_params p = {4, 4, 3, 1, 1, SM_ACT_NONE, SM_PREC_F32, 0, NULL, 2};
    CHECK(sm_conv_create(SM_CONV_WINOGRAD, &p, weight, NULL, &c) == SEGMAMBA_E_UNSUPPORTED && !c);
    /* auto and winograd leave dilated and k5 layers on the direct backend */
    CHECK(sm_conv_pick(&p, SM_WINO_ALL, SM_CONV_REF, 0).kind == SM_CONV_REF);
    p.dilation = 1;
    CHECK(sm_conv_pick(&p, SM_WINO_ALL, SM_CONV_REF, 0).kind == SM_CONV_WINOGRAD);
    p.k = 5;
    p.pad = 2;
    CHECK(sm_conv_pick(&p, SM_WINO_AUTO, SM_CONV_REF, 0).kind == SM_CONV_REF);
    p = (sm_conv_params){4, 4, 3, 1, 1, SM_ACT_NONE, SM_PREC_BF16, 0, NULL, 0};
    CHECK(sm_conv_create(SM_CONV_WINOGRAD, &p, weight, NULL, &c) == SEGMAMBA_E_UNSUPPORTED && !c);
    p.precision = SM_PREC_F32;
    p.tile = 5;
    CHECK(sm_conv_create(SM_CONV_WINOGRAD, &p, weight, NULL, &c) == SEGMAMBA_E_ARG && !c);
    p.tile = 1;
    CHECK(sm_conv_create(SM_CONV_WINOGRAD, &p, weight, NULL, &c) == SEGMAMBA_E_ARG && !c);
    /* The pick: Winograd never for other shapes or bf16, always under
     * SM_WINO_ALL (the forced tile when given), under auto within its
     * memory rule (a layer's transformed weights up to 64 MiB while it runs:
     * F(4,3) where they fit, else F(2,3), else direct); k2 s2 on the GEMM
     * backend under auto; the rest direct. */
    p.tile = 0;
    sm_conv_choice u = sm_conv_pick(&p, SM_WINO_OFF, SM_CONV_ONEDNN, 0);
    CHECK(u.kind == SM_CONV_ONEDNN && u.tile == 0);
    u = sm_conv_pick(&p, SM_WINO_ALL, SM_CONV_ONEDNN, 3);
    CHECK(u.kind == SM_CONV_WINOGRAD && u.tile == 3);
    CHECK(sm_conv_pick(&p, SM_WINO_AUTO, SM_CONV_ONEDNN, 0).kind == SM_CONV_WINOGRAD);
    static const struct {
        int cin, cout, tile;
    } rule[] = {{192, 96, 4}, {384, 192, 4}, {384, 384, 2}, {768, 384, 0}, {768, 768, 0}};
    for (size_t i = 0; i < sizeof rule / sizeof *rule; i++) {
        p = (sm_conv_params){rule[i].cin, rule[i].cout, 3, 1,    1,
                             SM_ACT_NONE, SM_PREC_F32,  0, NULL, 0};
        u = sm_conv_pick(&p, SM_WINO_AUTO, SM_CONV_ONEDNN, 0);
        CHECK_MSG(u.kind == (rule[i].tile ? SM_CONV_WINOGRAD : SM_CONV_ONEDNN) &&
                      u.tile == rule[i].tile,
                  "auto picks %s tile %d for %d -> %d", sm_conv_kind_name(u.kind), u.tile,
                  rule[i].cin, rule[i].cout);
    }
    p.precision = SM_PREC_BF16;
    CHECK(sm_conv_pick(&p, SM_WINO_ALL, SM_CONV_ONEDNN, 0).kind == SM_CONV_ONEDNN);
    p = (sm_conv_params){4, 4, 3, 2, 1, SM_ACT_NONE, SM_PREC_F32, 0, NULL, 0};
    CHECK(sm_conv_pick(&p, SM_WINO_ALL, SM_CONV_ONEDNN, 0).kind == SM_CONV_ONEDNN);
    p = (sm_conv_params){48, 96, 2, 2, 0, SM_ACT_NONE, SM_PREC_F32, 0, NULL, 0};
    CHECK(sm_conv_pick(&p, SM_WINO_AUTO, SM_CONV_ONEDNN, 0).kind == SM_CONV_BLAS);
    CHECK(sm_conv_pick(&p, SM_WINO_OFF, SM_CONV_ONEDNN, 0).kind == SM_CONV_ONEDNN);
}

/* The weights a convolution holds, against the layouts its backend keeps:
 * packed (k^3 cin cout floats) plus the bias for ref and BLAS; for
 * Winograd with tile m, the transformed weights, (m+2)^3 cin
 * round16(cout) floats, in place of the packed ones when they take at most
 * 4 MiB (docs/convolution-backends.md), plus its padded bias. */
static void test_weight_bytes(void)
{
    static const struct {
        int cin, cout, tile, keeps;
    } cases[] = {{5, 7, 4, 1},   {48, 48, 4, 1},  {96, 48, 4, 1},
                 {96, 96, 4, 0}, {192, 96, 2, 0}, {96, 96, 2, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const int cin = cases[i].cin, cout = cases[i].cout, m = cases[i].tile;
        const sm_conv_params p = {
            .cin = cin, .cout = cout, .k = 3, .stride = 1, .pad = 1, .tile = m};
        const size_t n = (size_t)27 * cin * cout, coutp = (size_t)(cout + 15) / 16 * 16;
        float *w = calloc(n, sizeof *w), *b = calloc((size_t)cout, sizeof *b);
        sm_conv *c = NULL;
        CHECK(w && b && sm_conv_create(SM_CONV_REF, &p, w, b, &c) == SEGMAMBA_OK);
        CHECK(sm_conv_weight_bytes(c) == (n + (size_t)cout) * sizeof(float));
        sm_conv_free(c);
        c = NULL;
        CHECK(sm_conv_create(SM_CONV_WINOGRAD, &p, w, b, &c) == SEGMAMBA_OK);
        const size_t u = (size_t)(m + 2) * (m + 2) * (m + 2) * cin * coutp;
        CHECK(sm_conv_winograd_keeps(&p, m) == cases[i].keeps);
        CHECK(sm_conv_weight_bytes(c) ==
              ((cases[i].keeps ? u : n) + coutp + (size_t)cout) * sizeof(float));
        CHECK(cases[i].keeps == (u * sizeof(float) <= (size_t)4 << 20));
        sm_conv_free(c);
        free(w);
        free(b);
    }
}

int main(void)
{
    test_arguments();
    test_weight_bytes();
    test_reference_against_double();
    test_winograd_arguments();
    test_winograd_cases();
    test_winograd_planes();
    for (int tile = 2; tile <= 4; tile++) test_size_changes(SM_CONV_WINOGRAD, SM_PREC_F32, tile);
    for (int kind = SM_CONV_BLAS; kind <= SM_CONV_ONEDNN; kind++) {
        if (!sm_conv_available((sm_conv_kind)kind)) {
            fprintf(stderr, "%s: not built in, skipped\n", sm_conv_kind_name((sm_conv_kind)kind));
            continue;
        }
        test_backend_cases((sm_conv_kind)kind);
        test_size_changes((sm_conv_kind)kind, SM_PREC_F32, 0);
    }
    if (sm_conv_bf16_supported()) {
        test_bf16_cases();
        test_size_changes(SM_CONV_ONEDNN, SM_PREC_BF16, 0);
    } else {
        fprintf(stderr, "onednn bf16: %s, skipped\n",
                sm_conv_available(SM_CONV_ONEDNN) ? "no native bf16 (CPU or DNNL_MAX_CPU_ISA)"
                                                  : "oneDNN not built in");
    }
    return check_report("test_conv");
}
