/* The SIMD kernels (simd/): every level this CPU supports, each entry of
 * the dispatch table (one test per family of SM_KERNEL_FAMILIES) against a
 * double-precision evaluation of its definition. The selective scan's
 * reference works on explicitly permuted copies of the sequence (the engine
 * itself never copies it), in every order of simd/scan.h written out from
 * its definition. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "simd/dispatch.h"
#include "wino_ref.h"

static double uniform(double lo, double hi) { return check_uniform(lo, hi); }

/* Written into outputs first: what a kernel must not write keeps it. */
static const float SENTINEL_F = -777.25f;

/* A sequence of L tokens in order o: S slices; for the volume orders a
 * volume of S planes, each of h x w tokens with w the largest divisor of
 * L/S not above 12 (so some rows are shorter than a conv1d's window). */
static sm_seq seq_of(sm_order o, int64_t L, int64_t S)
{
    int64_t w = 1;
    for (int64_t v = 1; v <= 12; v++)
        if ((L / S) % v == 0) w = v;
    return (sm_seq){.order = o, .L = L, .S = S, .d = S, .h = L / S / w, .w = w};
}

/* The visiting order written out as a table, from the spec's definition. */
static void order_table(const sm_seq *sq, int64_t *tok)
{
    const int64_t L = sq->L, S = sq->S, d = sq->d, h = sq->h, w = sq->w;
    int64_t q = 0;
    if (sq->order == SM_ORDER_FORWARD) {
        for (q = 0; q < L; q++) tok[q] = q;
    } else if (sq->order == SM_ORDER_BACKWARD) {
        for (q = 0; q < L; q++) tok[q] = L - 1 - q;
    } else if (sq->order == SM_ORDER_SLICE) {
        const int64_t m = L / S;
        for (int64_t s = 0; s < S; s++)
            for (int64_t j = 0; j < m; j++) tok[j * S + s] = s * m + j;
    } else if (sq->order == SM_ORDER_HDW) { /* y outermost, then z, then x */
        for (int64_t y = 0; y < h; y++)
            for (int64_t z = 0; z < d; z++)
                for (int64_t x = 0; x < w; x++) tok[q++] = (z * h + y) * w + x;
    } else { /* SM_ORDER_WHD: x, then y, then z */
        for (int64_t x = 0; x < w; x++)
            for (int64_t y = 0; y < h; y++)
                for (int64_t z = 0; z < d; z++) tok[q++] = (z * h + y) * w + x;
    }
}

static void reference(const sm_scan_args *a, int nch, double *y)
{
    const int N = a->n_state;
    int64_t *tok = malloc((size_t)a->seq.L * sizeof *tok);
    order_table(&a->seq, tok);
    double *h = calloc((size_t)nch * N, sizeof *h);
    for (int64_t q = 0; q < a->seq.L; q++) {
        const int64_t t = tok[q];
        for (int c = 0; c < nch; c++) {
            double v = a->delta_bias[c];
            if (a->delta) {
                v += a->delta[t * a->ld_delta + c];
            } else {
                for (int r = 0; r < a->dt_rank; r++)
                    v += (double)a->dt_low[t * a->ld_dt_low + r] * a->dt_proj[c * a->dt_rank + r];
            }
            double dt = v > 20.0 ? v : log1p(exp(v));
            double u = a->u[t * a->ld_u + c], acc = 0.0;
            for (int n = 0; n < N; n++) {
                double *hn = &h[c * N + n];
                *hn = exp(dt * a->A[c * N + n]) * *hn + dt * a->B[t * a->ld_bc + n] * u;
                acc += a->C[t * a->ld_bc + n] * *hn;
            }
            const double z = a->z ? a->z[t * a->ld_z + c] : 0.0;
            y[t * nch + c] += (acc + a->D[c] * u) * (a->z ? z / (1.0 + exp(-z)) : 1.0);
        }
    }
    free(h);
    free(tok);
}

static void test_token_orders(void)
{
    const int64_t L = 120, S = 3; /* volumes of 3 x 4 x 10 */
    int64_t tok[120];
    for (int o = 0; o < SM_ORDER_COUNT; o++) {
        const sm_seq sq = seq_of((sm_order)o, L, S);
        CHECK(sm_seq_valid(&sq));
        order_table(&sq, tok);
        int seen[120] = {0};
        for (int64_t q = 0; q < L; q++) {
            int64_t t = sm_scan_token(&sq, q);
            CHECK_MSG(t == tok[q], "order %d position %lld: token %lld, expected %lld", o,
                      (long long)q, (long long)t, (long long)tok[q]);
            if (t >= 0 && t < L) {
                seen[t]++;
                CHECK_MSG(sm_scan_position(&sq, t) == q,
                          "order %d token %lld: position %lld, "
                          "expected %lld",
                          o, (long long)t, (long long)sm_scan_position(&sq, t), (long long)q);
            }
        }
        for (int64_t t = 0; t < L; t++)
            CHECK_MSG(seen[t] == 1, "order %d token %lld", o, (long long)t);
    }
    sm_seq bad = seq_of(SM_ORDER_HDW, L, S);
    bad.w++;
    CHECK(!sm_seq_valid(&bad));
    bad = seq_of(SM_ORDER_SLICE, L, 7);
    CHECK(!sm_seq_valid(&bad));
}

/* One random problem; [dt_lo, dt_hi] is the range of delta (extreme values
 * included). With rank > 0 the kernel computes delta itself from a
 * (L, rank) dt_low and a (nch, rank) dt_proj, scaled to the same range.
 * Without gated, z is NULL: no SiLU(z) factor. */
static void run_case_gate(const sm_kernels *k, sm_order order, int64_t L, int64_t S, int nch, int N,
                          double dt_lo, double dt_hi, double a_hi, int rank, int gated)
{
    const sm_seq sq = seq_of(order, L, S);
    const int ldu = nch + 3, ldz = 2 * nch + 1, ldbc = 2 * N + 5;
    float *u = malloc((size_t)L * ldu * sizeof *u), *dl = malloc((size_t)L * ldu * sizeof *dl);
    float *z = malloc((size_t)L * ldz * sizeof *z), *bc = malloc((size_t)L * ldbc * sizeof *bc);
    float *y = malloc((size_t)L * nch * sizeof *y), *A = malloc((size_t)nch * N * sizeof *A);
    float bias[64], D[64];
    double *yr = malloc((size_t)L * nch * sizeof *yr);
    for (int64_t i = 0; i < L * ldu; i++) {
        u[i] = (float)uniform(-2, 2);
        dl[i] = (float)uniform(dt_lo, dt_hi);
    }
    for (int64_t i = 0; i < L * ldz; i++) z[i] = (float)uniform(-4, 4);
    for (int64_t i = 0; i < L * ldbc; i++) bc[i] = (float)uniform(-1.5, 1.5);
    for (int i = 0; i < nch * N; i++) A[i] = (float)-exp(uniform(log(0.01), log(a_hi)));
    for (int c = 0; c < nch; c++) {
        bias[c] = (float)uniform(-2, 1);
        D[c] = (float)uniform(-1, 1);
    }
    for (int64_t i = 0; i < L * nch; i++) {
        y[i] = (float)uniform(-1, 1); /* the kernel adds onto what is there */
        yr[i] = y[i];
    }
    sm_scan_args a = {.seq = sq,
                      .n_state = N,
                      .u = u,
                      .ld_u = ldu,
                      .delta = dl,
                      .ld_delta = ldu,
                      .delta_bias = bias,
                      .A = A,
                      .B = bc + 1,
                      .C = bc + 1 + N,
                      .ld_bc = ldbc,
                      .D = D,
                      .z = gated ? z + 1 : NULL,
                      .ld_z = ldz,
                      .y = y,
                      .ld_y = nch};
    float *lo = NULL, *wp = NULL;
    if (rank > 0) {
        /* dt_low in [0, 1) and weights whose row sums span [dt_lo, dt_hi] */
        lo = malloc((size_t)L * (rank + 2) * sizeof *lo);
        wp = malloc((size_t)nch * rank * sizeof *wp);
        for (int64_t i = 0; i < L * (rank + 2); i++) lo[i] = (float)uniform(0, 1);
        for (int i = 0; i < nch * rank; i++) wp[i] = (float)(uniform(dt_lo, dt_hi) / rank);
        a.delta = NULL;
        a.dt_low = lo + 1;
        a.ld_dt_low = rank + 2;
        a.dt_proj = wp;
        a.dt_rank = rank;
    }
    reference(&a, nch, yr);
    float *state = malloc((size_t)nch * N * sizeof *state);
    /* Two channel blocks, as threads would split them. */
    k->scan(&a, 0, nch / 2, state);
    k->scan(&a, nch / 2, nch, state + (nch / 2) * N);
    double max_err = 0, max_ref = 0;
    for (int64_t i = 0; i < L * nch; i++) {
        double e = fabs(y[i] - yr[i]);
        if (!(e <= max_err)) max_err = e; /* NaN propagates to a failure */
        if (fabs(yr[i]) > max_ref) max_ref = fabs(yr[i]);
    }
    /* float32 state over L steps: errors grow with the number of terms the
     * decays let through, far below 1e-5 of the output scale here. */
    CHECK_MSG(max_err <= 2e-5 * (max_ref > 1 ? max_ref : 1),
              "%s order %d L %lld gated %d: max err %.3g (max |y| %.3g)", sm_isa_name(k->isa),
              (int)order, (long long)L, gated, max_err, max_ref);
    free(u), free(dl), free(z), free(bc), free(y), free(A), free(yr), free(state), free(lo),
        free(wp);
}

static void run_case_rank(const sm_kernels *k, sm_order order, int64_t L, int64_t S, int nch, int N,
                          double dt_lo, double dt_hi, double a_hi, int rank)
{
    run_case_gate(k, order, L, S, nch, N, dt_lo, dt_hi, a_hi, rank, 1);
}

static void run_case(const sm_kernels *k, sm_order order, int64_t L, int64_t S, int nch, int N,
                     double dt_lo, double dt_hi, double a_hi)
{
    run_case_rank(k, order, L, S, nch, N, dt_lo, dt_hi, a_hi, 0);
}

static void test_scan(const sm_kernels *k)
{
    for (int o = 0; o < SM_ORDER_COUNT; o++) {
        run_case(k, (sm_order)o, 64, 8, 6, 16, -3, 1, 8);
        run_case(k, (sm_order)o, 480, 6, 20, 16, -3, 1, 8); /* a 6 x 8 x 10 volume */
        run_case(k, (sm_order)o, 4096, 64, 33, 16, -6, 2, 16);
        /* extreme deltas: softplus cut-over above 20, tiny and huge decays */
        run_case(k, (sm_order)o, 512, 16, 8, 16, -30, 30, 100);
        run_case(k, (sm_order)o, 300, 12, 5, 7, -1, 1, 2);
        /* delta computed in the kernel from dt_low and dt_proj */
        run_case_rank(k, (sm_order)o, 1024, 32, 40, 16, -6, 2, 16, 3);
        run_case_rank(k, (sm_order)o, 256, 16, 33, 16, -30, 30, 100, 24);
        run_case_rank(k, (sm_order)o, 128, 8, 16, 16, -3, 1, 8, SM_SCAN_MAX_RANK + 1);
        /* without the gate (the Mamba layer gates the directions' sum) */
        run_case_gate(k, (sm_order)o, 1024, 32, 40, 16, -6, 2, 16, 3, 0);
        run_case_gate(k, (sm_order)o, 300, 12, 5, 7, -1, 1, 2, 0, 0);
    }
}

/* The vector exp against double-precision exp: relative error within the
 * bound activation_vec.h documents on [-87, 88]; and, for the vector
 * versions (libm's expf overflows and goes subnormal instead), exactly 0
 * below ln(FLT_MIN) and no NaN or Inf anywhere on a wide range. */
static void test_exp(const sm_kernels *k)
{
    enum { n = 200003 };
    static float x[n], y[n];
    for (int i = 0; i < n; i++) x[i] = fminf(-87.0f + 175.0f * (float)i / (n - 1), 88.0f);
    k->exp(x, y, n);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double r = exp((double)x[i]), e = fabs(y[i] - r) / r;
        if (!(e <= worst)) worst = e;
    }
    CHECK_MSG(worst <= 2.5e-7, "%s exp: max relative error %.3g", sm_isa_name(k->isa), worst);
    fprintf(stderr, "%s exp: max relative error %.3g on [-87, 88]\n", sm_isa_name(k->isa), worst);
    if (k->isa == SM_ISA_SCALAR) return;
    for (int i = 0; i < n; i++) x[i] = -1e4f + 2e4f * (float)i / (n - 1);
    k->exp(x, y, n);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if (isnan(y[i]) || isinf(y[i])) bad++;
        if (x[i] < -87.4f && y[i] != 0.0f) bad++;
    }
    CHECK_MSG(bad == 0, "%s exp: %d bad values outside the range", sm_isa_name(k->isa), bad);
}

/* GELU against the exact erf form in double: within the bound derived in
 * activation_vec.h, 3e-7 |x|, plus float rounding of the result. */
static void test_gelu(const sm_kernels *k)
{
    enum { n = 100003 };
    static float x[n], y[n];
    for (int i = 0; i < n; i++) x[i] = -12.0f + 24.0f * (float)i / (n - 1);
    k->gelu(x, y, n);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double r = 0.5 * x[i] * (1.0 + erf(x[i] / sqrt(2.0)));
        double e = fabs(y[i] - r) / (3e-7 * fabs(x[i]) + 6e-8 * fabs(r) + 1e-30);
        if (!(e <= worst)) worst = e;
    }
    CHECK_MSG(worst <= 1.0, "%s gelu: error %.3g times the bound", sm_isa_name(k->isa), worst);
}

/* SiLU against x sigmoid(x) in double: its exp (2.5e-7) and one division. */
static void test_silu(const sm_kernels *k)
{
    enum { n = 100003 };
    static float x[n], y[n];
    for (int i = 0; i < n; i++) x[i] = -90.0f + 180.0f * (float)i / (n - 1);
    k->silu(x, y, n);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double r = x[i] / (1.0 + exp(-(double)x[i]));
        double e = fabs(y[i] - r) / (fabs(r) + 1e-30);
        if (!(e <= worst) && fabs(r) > 1e-30) worst = e;
    }
    CHECK_MSG(worst <= 5e-7, "%s silu: max relative error %.3g", sm_isa_name(k->isa), worst);
}

/* The FMA peak probe (segmamba bench's roofline, whose speed the bench
 * reports): 2 flops per lane and round, in proportion to the rounds, and a
 * sink that depends on every FMA. Each lane runs v <- fma(v, m, a) from a
 * start in [0, 0.02), so after n rounds its value lies between the chains
 * from 0 and from 0.02 (their closed form in double), up to one float
 * rounding of a value below 1 per round (the chain contracts, m < 1). */
static void test_fma_probe(const sm_kernels *k)
{
    const int64_t n = 200000;
    float sink0 = NAN, sink1 = NAN, sink = NAN;
    const double flops0 = k->fma_probe(0, &sink0), flops1 = k->fma_probe(1, &sink1);
    const double flops = k->fma_probe(n, &sink), lanes = flops1 / 2;
    CHECK_MSG(flops0 == 0 && lanes >= 1 && lanes == floor(lanes) && flops == 2 * lanes * (double)n,
              "%s fma_probe: %g, %g and %g flops for 0, 1 and %lld rounds", sm_isa_name(k->isa),
              flops0, flops1, flops, (long long)n);
    const double m = 0.999999f, a = 1e-6f, fixed = a / (1 - m), decay = pow(m, (double)n);
    const double lo = fixed * (1 - decay), hi = fixed + (0.02 - fixed) * decay;
    const double margin = (double)n * FLT_EPSILON / 2, mean0 = sink0 / lanes, mean = sink / lanes;
    CHECK_MSG(mean0 >= 0 && mean0 < 0.02, "%s fma_probe: lane mean %g before any round",
              sm_isa_name(k->isa), mean0);
    CHECK_MSG(mean >= lo - margin && mean <= hi + margin,
              "%s fma_probe: lane mean %g after %lld rounds, expected [%g, %g]",
              sm_isa_name(k->isa), mean, (long long)n, lo, hi);
}

/* Equal as bit patterns, or both NaN (a NaN's payload may differ). */
static int same_float(float x, float y)
{
    uint32_t a, b;
    memcpy(&a, &x, sizeof a);
    memcpy(&b, &y, sizeof b);
    return a == b || (isnan(x) && isnan(y));
}

/* A voxel value: mostly uniform around an offset, with NaN, infinities,
 * signed zeros, subnormals and huge values sprinkled in when special. */
static float norm_value(int special, float offset)
{
    if (special) {
        switch ((int)uniform(0, 40)) {
        case 0: return NAN;
        case 1: return -INFINITY;
        case 2: return -0.0f;
        case 3: return 1e-39f; /* subnormal */
        case 4: return -3e38f;
        default: break;
        }
    }
    return offset + (float)uniform(-2, 2);
}

/* The norm kernels' sums: the scalar kernel against double sums of the same
 * float differences (the float rounding of NORM_BLOCK-long sums), every
 * other level against the scalar kernel bit for bit (simd/norm.h promises
 * the same float operations in the same order). Channel counts cover a
 * group of vectors, a partial group, and channels left to the scalar code;
 * rows are strided (ld > c). */
static void test_norm_sums(const sm_kernels *k)
{
    const int cs[] = {48, 5, 100, 16, 1};
    for (unsigned ci = 0; ci < sizeof cs / sizeof *cs; ci++) {
        const int c = cs[ci], ld = c + 3, nv = 256;
        for (int special = 0; special < 2; special++) {
            float *x = malloc(sizeof(float) * (size_t)nv * ld), *shift = malloc(sizeof(float) * c);
            float *s = calloc((size_t)c, sizeof *s), *s2 = calloc((size_t)c, sizeof *s2);
            float *r = calloc((size_t)c, sizeof *r), *r2 = calloc((size_t)c, sizeof *r2);
            for (int64_t i = 0; i < (int64_t)nv * ld; i++) x[i] = norm_value(special, 1000.0f);
            for (int j = 0; j < c; j++) shift[j] = x[j];
            for (int j = 0; j < c; j++)
                s[j] = r[j] = (float)uniform(-1, 1); /* adds to what is there */
            k->norm_sums(x, ld, nv, c, shift, s, s2);
            sm_norm_sums_scalar(x, ld, nv, c, shift, r, r2);
            int diff = 0;
            for (int j = 0; j < c; j++)
                diff += !same_float(s[j], r[j]) || !same_float(s2[j], r2[j]);
            CHECK_MSG(diff == 0, "%s norm_sums c=%d special=%d: %d channels differ from scalar",
                      sm_isa_name(k->isa), c, special, diff);
            if (k->isa == SM_ISA_SCALAR && !special) {
                /* r2 started at 0: it is the float sum of 256 squares */
                double worst = 0;
                for (int j = 0; j < c; j++) {
                    double ds2 = 0;
                    for (int v = 0; v < nv; v++) {
                        double d = (double)(x[(int64_t)v * ld + j] - shift[j]);
                        ds2 += d * d;
                    }
                    double e = fabs((double)r2[j] - ds2) / (ds2 + 1e-30);
                    if (!(e <= worst)) worst = e;
                }
                CHECK_MSG(worst <= 256 * 6e-8,
                          "scalar norm_sums: relative error %.3g of the squares", worst);
            }
            free(x);
            free(shift);
            free(s);
            free(s2);
            free(r);
            free(r2);
        }
    }
}

/* The apply kernel: the scalar one against its definition in double
 * (three float roundings per term and one for the sum), every other level
 * against the scalar one bit for bit, for each form (no b, b, IN(b)), each
 * activation, strided rows, outputs aliasing a or b, a voxel range that
 * does not start at 0, and special values. */
static void test_norm_apply(const sm_kernels *k)
{
    const int cs[] = {48, 5, 100, 16, 1};
    for (unsigned ci = 0; ci < sizeof cs / sizeof *cs; ci++) {
        const int c = cs[ci], ld = c + 2, n = 37, v0 = 3, v1 = 35;
        const size_t len = (size_t)n * ld;
        float *a = malloc(len * sizeof *a), *b = malloc(len * sizeof *b);
        float *y = malloc(len * sizeof *y), *yr = malloc(len * sizeof *yr);
        float *ya = malloc(len * sizeof *ya), *yb = malloc(len * sizeof *yb);
        float *st = malloc(6 * (size_t)c * sizeof *st);
        for (int j = 0; j < c; j++) {
            st[j] = (float)uniform(0.1, 3);              /* scale */
            st[c + j] = (float)uniform(-5, 5);           /* mean_hi */
            st[2 * c + j] = (float)uniform(-1e-6, 1e-6); /* mean_lo */
            st[3 * c + j] = (float)uniform(0.1, 3);
            st[4 * c + j] = (float)uniform(-5, 5);
            st[5 * c + j] = (float)uniform(-1e-6, 1e-6);
        }
        for (int special = 0; special < 2; special++)
            for (int mode = 0; mode < 3; mode++)
                for (int act = SM_ACT_NONE; act <= SM_ACT_LRELU; act++) {
                    for (size_t i = 0; i < len; i++) {
                        a[i] = norm_value(special, 0.0f);
                        b[i] = norm_value(special, 0.0f);
                        y[i] = yr[i] = (float)uniform(-1, 1); /* rows outside [v0, v1) kept */
                    }
                    memcpy(ya, a, len * sizeof *a);
                    memcpy(yb, b, len * sizeof *b);
                    sm_norm_args args = {.c = c,
                                         .a = a,
                                         .lda = ld,
                                         .sa = {st, st + c, st + 2 * c},
                                         .b = mode ? b : NULL,
                                         .ldb = ld,
                                         .norm_b = mode == 2,
                                         .sb = {st + 3 * c, st + 4 * c, st + 5 * c},
                                         .y = y,
                                         .ldy = ld,
                                         .act = (sm_act)act};
                    k->norm_apply(&args, v0, v1);
                    sm_norm_args ref = args;
                    ref.y = yr;
                    sm_norm_apply_scalar(&ref, v0, v1);
                    /* in place on a, then on b */
                    sm_norm_args on_a = args, on_b = args;
                    on_a.a = on_a.y = ya;
                    k->norm_apply(&on_a, v0, v1);
                    if (mode) {
                        on_b.b = on_b.y = yb;
                        k->norm_apply(&on_b, v0, v1);
                    }
                    int diff = 0;
                    for (int v = 0; v < n; v++)
                        for (int j = 0; j < c; j++) {
                            const size_t i = (size_t)v * ld + j;
                            const int inside = v >= v0 && v < v1;
                            diff += !same_float(y[i], yr[i]);
                            diff += !same_float(ya[i], inside ? yr[i] : a[i]);
                            if (mode) diff += !same_float(yb[i], inside ? yr[i] : b[i]);
                        }
                    CHECK_MSG(diff == 0,
                              "%s norm_apply c=%d mode=%d act=%d special=%d: %d values differ "
                              "from scalar",
                              sm_isa_name(k->isa), c, mode, act, special, diff);
                    if (k->isa != SM_ISA_SCALAR || special) continue;
                    double worst = 0;
                    for (int v = v0; v < v1; v++)
                        for (int j = 0; j < c; j++) {
                            const size_t i = (size_t)v * ld + j;
                            double t = ((double)a[i] - st[c + j] - st[2 * c + j]) * st[j];
                            double mag = fabs(t);
                            if (mode == 1) t += b[i], mag += fabs(b[i]);
                            if (mode == 2) {
                                double u =
                                    ((double)b[i] - st[4 * c + j] - st[5 * c + j]) * st[3 * c + j];
                                t += u;
                                mag += fabs(u);
                            }
                            if (act == SM_ACT_RELU) t = t > 0 ? t : 0;
                            if (act == SM_ACT_LRELU) t = t > 0 ? t : 0.01 * t;
                            double e = fabs(yr[i] - t) / (mag + 1e-30);
                            if (!(e <= worst)) worst = e;
                        }
                    CHECK_MSG(worst <= 5 * 6e-8, "scalar norm_apply mode=%d act=%d: error %.3g",
                              mode, act, worst);
                }
        free(a);
        free(b);
        free(y);
        free(yr);
        free(ya);
        free(yb);
        free(st);
    }
}

/* The conv1d + SiLU that makes u: the scalar kernel against the definition
 * in double on the explicitly permuted sequence, every other level against
 * the scalar kernel (its sums are the scalar ones bit for bit, its SiLU
 * within test_silu's 5e-7). Token ranges start inside a slice; channel
 * counts leave channels to the scalar code; x rows are strided. */
static void conv1d_case(const sm_kernels *k, sm_order order, int64_t L, int64_t S, int c, int K)
{
    const int ldx = 2 * c + 1;
    float *x = malloc(sizeof(float) * (size_t)L * ldx), *w = malloc(sizeof(float) * (size_t)K * c);
    float *b = malloc(sizeof(float) * c);
    float *u = malloc(sizeof(float) * (size_t)L * c), *us = malloc(sizeof(float) * (size_t)L * c);
    int64_t *tok = malloc(sizeof(int64_t) * (size_t)L), *pos = malloc(sizeof(int64_t) * (size_t)L);
    for (int64_t i = 0; i < L * ldx; i++) x[i] = (float)uniform(-3, 3);
    for (int i = 0; i < K * c; i++) w[i] = (float)uniform(-1, 1);
    for (int i = 0; i < c; i++) b[i] = (float)uniform(-1, 1);
    const sm_seq sq = seq_of(order, L, S);
    order_table(&sq, tok);
    for (int64_t q = 0; q < L; q++) pos[tok[q]] = q;
    const sm_conv1d_args a = {
        .seq = sq, .c = c, .K = K, .x = x, .ld_x = ldx, .w = w, .b = b, .u = u, .ld_u = c};
    sm_conv1d_args as = a;
    as.u = us;
    const int64_t cut = L / 3 + 1; /* inside a slice */
    k->conv1d_silu(&a, 0, cut);
    k->conv1d_silu(&a, cut, L);
    sm_conv1d_silu_scalar(&as, 0, L);
    double worst_ref = 0, worst_lvl = 0;
    for (int64_t t = 0; t < L; t++)
        for (int j = 0; j < c; j++) {
            const int64_t q = pos[t];
            double v = b[j], mag = fabs(b[j]);
            for (int kk = 0; kk < K; kk++) {
                const int64_t p = q - (K - 1) + kk;
                if (p < 0) continue;
                const double term = (double)w[kk * c + j] * x[tok[p] * ldx + j];
                v += term;
                mag += fabs(term);
            }
            const double ref = v / (1.0 + exp(-v));
            const double es = fabs(us[t * c + j] - ref) / (fabs(ref) + mag + 1e-30);
            const double el = fabs(u[t * c + j] - us[t * c + j]) / (fabs(us[t * c + j]) + 1e-30);
            if (!(es <= worst_ref)) worst_ref = es;
            if (!(el <= worst_lvl) && fabs(us[t * c + j]) > 1e-30) worst_lvl = el;
        }
    CHECK_MSG(worst_ref <= 1e-6, "scalar conv1d order %d L=%lld c=%d K=%d: error %.3g", (int)order,
              (long long)L, c, K, worst_ref);
    CHECK_MSG(worst_lvl <= 5e-7, "%s conv1d order %d L=%lld c=%d K=%d: %.3g from scalar",
              sm_isa_name(k->isa), (int)order, (long long)L, c, K, worst_lvl);
    free(x), free(w), free(b), free(u), free(us), free(tok), free(pos);
}

static void test_conv1d_silu(const sm_kernels *k)
{
    for (int o = 0; o < SM_ORDER_COUNT; o++) {
        conv1d_case(k, (sm_order)o, 4096, 64, 96, 4);
        conv1d_case(k, (sm_order)o, 480, 6, 24, 4); /* a 6 x 8 x 10 volume */
        conv1d_case(k, (sm_order)o, 300, 12, 5, 4);
        conv1d_case(k, (sm_order)o, 64, 32, 16, 4); /* slices of 2 tokens: windows span slices */
        conv1d_case(k, (sm_order)o, 96, 8, 20, 2);
        conv1d_case(k, (sm_order)o, 48, 4, 16, 1);
        conv1d_case(k, (sm_order)o, 24, 3, 16, 20); /* more taps than the vector kernel keeps */
    }
}

/* ---- Winograd transforms ------------------------------------------------
 * Each level's input and output transforms and GEMM against the
 * definitions evaluated in double. The bound for a transform is first order
 * in the unit roundoff u: each of the 3 axes rounds at most n times along
 * any path (one rounding per add or FMA of an n-term row), and an error
 * made on one axis is carried by the later axes' coefficients, so the total
 * is at most 3n u times the magnitude |T| (x) |T| (x) |T| |x| (the
 * transform with every entry and value made positive). The vector kernels'
 * factored rows reach at most 1.4 times a row's magnitude on one axis
 * (F(4,3)'s B^T row 2), so 3 times that covers them. */

/* The tables themselves: A^T [(G g) . (B^T d)] is the correlation of d
 * with g, exactly up to double rounding, for random g and d. */
static void test_wino_matrices(void)
{
    CHECK(sm_wino_matrices_get(1) == NULL && sm_wino_matrices_get(5) == NULL);
    for (int m = 2; m <= SM_WINO_MAX_M; m++) {
        const sm_wino_matrices *t = sm_wino_matrices_get(m);
        CHECK(t && t->m == m && t->n == m + 2);
        double worst = 0.0;
        for (int trial = 0; trial < 100; trial++) {
            double g[3], d[SM_WINO_MAX_N], gg[SM_WINO_MAX_N], bd[SM_WINO_MAX_N];
            for (int i = 0; i < 3; i++) g[i] = uniform(-1, 1);
            for (int i = 0; i < t->n; i++) d[i] = uniform(-1, 1);
            for (int i = 0; i < t->n; i++) {
                gg[i] = bd[i] = 0;
                for (int j = 0; j < 3; j++) gg[i] += t->g[i][j] * g[j];
                for (int j = 0; j < t->n; j++) bd[i] += t->bt[i][j] * d[j];
            }
            for (int i = 0; i < m; i++) {
                double y = 0, want = 0;
                for (int j = 0; j < t->n; j++) y += t->at[i][j] * gg[j] * bd[j];
                for (int j = 0; j < 3; j++) want += g[j] * d[i + j];
                if (fabs(y - want) > worst) worst = fabs(y - want);
            }
        }
        CHECK_MSG(worst < 1e-12, "F(%d,3) matrices: the transform is off by %g", m, worst);
        /* Every entry of A^T and B^T is exact in float: the scalar kernels
         * multiply by them as floats. */
        for (int i = 0; i < t->n; i++)
            for (int j = 0; j < t->n; j++) {
                CHECK((double)(float)t->bt[i][j] == t->bt[i][j]);
                if (i < m) CHECK((double)(float)t->at[i][j] == t->at[i][j]);
            }
    }
}

/* One tile's input transform: a window at random offsets into a volume
 * whose voxels have ld >= c channels, with random edges (lo, hi). Voxels
 * the window must not read (outside [lo, hi), and the channels past c)
 * hold NaN, so a read of one shows up in the result. */
static void wino_input_case(const sm_kernels *k, int m, int c, int ld)
{
    const int n = m + 2, P = n * n * n, cpad = (c + SM_WINO_CPAD - 1) / SM_WINO_CPAD * SM_WINO_CPAD;
    /* padded rows, and planes of n padded rows: the volume holds a whole window */
    const int64_t stride[3] = {(int64_t)n * (n * ld + 3) + 5, (int64_t)n * ld + 3, ld};
    float *vol = malloc((size_t)stride[0] * n * sizeof *vol);
    const size_t tstride = (size_t)cpad + 7;
    float *v = malloc((size_t)P * tstride * sizeof *v);
    double *d = malloc((size_t)P * sizeof *d), *want = malloc((size_t)P * sizeof *want),
           *mag = malloc((size_t)P * sizeof *mag);
    sm_wino_window w = {.src = vol};
    for (int a = 0; a < 3; a++) {
        w.stride[a] = stride[a];
        w.lo[a] = (int)uniform(0, 2); /* 0 or 1: a padded first row, or none */
        w.hi[a] = n - (int)uniform(0, n - 1);
        if (w.hi[a] <= w.lo[a]) w.hi[a] = w.lo[a] + 1;
    }
    for (int64_t i = 0; i < stride[0] * n; i++) vol[i] = NAN;
    for (int i = w.lo[0]; i < w.hi[0]; i++)
        for (int j = w.lo[1]; j < w.hi[1]; j++)
            for (int q = w.lo[2]; q < w.hi[2]; q++)
                for (int ch = 0; ch < c; ch++)
                    vol[(i - w.lo[0]) * stride[0] + (j - w.lo[1]) * stride[1] +
                        (q - w.lo[2]) * stride[2] + ch] = (float)uniform(-2, 2);
    for (size_t i = 0; i < (size_t)P * tstride; i++) v[i] = -1e30f;
    k->wino_input(m, &w, c, v, tstride);
    const sm_wino_matrices *t = sm_wino_matrices_get(m);
    double worst = 0.0;
    int pad_ok = 1;
    for (int ch = 0; ch < c; ch++) {
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                for (int q = 0; q < n; q++) {
                    const int in = i >= w.lo[0] && i < w.hi[0] && j >= w.lo[1] && j < w.hi[1] &&
                                   q >= w.lo[2] && q < w.hi[2];
                    d[(i * n + j) * n + q] =
                        in ? vol[(i - w.lo[0]) * stride[0] + (j - w.lo[1]) * stride[1] +
                                 (q - w.lo[2]) * stride[2] + ch]
                           : 0.0;
                }
        wino_apply3(t->bt, n, n, d, want, WINO_SIGNED);
        wino_apply3(t->bt, n, n, d, mag, WINO_ABS);
        for (int p = 0; p < P; p++) {
            const double e = fabs(v[(size_t)p * tstride + ch] - want[p]);
            const double bound = 3.0 * 3 * n * (FLT_EPSILON / 2) * mag[p] + 1e-30;
            if (!(e <= worst * bound)) worst = e / bound; /* NaN stays */
        }
    }
    for (int p = 0; p < P; p++)
        for (int ch = c; ch < (int)tstride; ch++) {
            const float x = v[(size_t)p * tstride + ch];
            pad_ok &= ch < cpad ? x == -1e30f || x == 0.0f : x == -1e30f;
        }
    CHECK_MSG(worst <= 1.0, "%s wino input F(%d,3) c %d: error %.3g of the bound",
              sm_isa_name(k->isa), m, c, worst);
    CHECK_MSG(pad_ok,
              "%s wino input F(%d,3) c %d: wrote past the padded channels or non-zero "
              "padding",
              sm_isa_name(k->isa), m, c);
    free(vol), free(v), free(d), free(want), free(mag);
}

/* One tile's output transform into a volume of ld >= c channels: each
 * written value against A^T M A + bias (ReLU'd) in double; everything the
 * tile must not write (voxels past cnt, channels past c) keeps its
 * sentinel. */
static void wino_output_case(const sm_kernels *k, int m, int c, int ld, int relu)
{
    const int n = m + 2, P = n * n * n, cpad = (c + SM_WINO_CPAD - 1) / SM_WINO_CPAD * SM_WINO_CPAD;
    const size_t tstride = (size_t)cpad + 5;
    const int64_t stride[3] = {(int64_t)m * m * ld + 7, (int64_t)m * ld + 1, ld};
    float *mt = malloc((size_t)P * tstride * sizeof *mt);
    float *bias = malloc((size_t)cpad * sizeof *bias);
    float *dst = malloc((size_t)stride[0] * m * sizeof *dst);
    double *x = malloc((size_t)P * sizeof *x), *want = malloc((size_t)P * sizeof *want),
           *mag = malloc((size_t)P * sizeof *mag);
    for (size_t i = 0; i < (size_t)P * tstride; i++) mt[i] = (float)uniform(-3, 3);
    for (int ch = 0; ch < cpad; ch++) bias[ch] = ch < c ? (float)uniform(-1, 1) : 0.0f;
    for (int64_t i = 0; i < stride[0] * m; i++) dst[i] = SENTINEL_F;
    sm_wino_tile_out o = {.dst = dst, .bias = bias, .relu = relu};
    for (int a = 0; a < 3; a++) {
        o.stride[a] = stride[a];
        o.cnt[a] = 1 + (int)uniform(0, m);
    }
    k->wino_output(m, mt, tstride, c, &o);
    const sm_wino_matrices *t = sm_wino_matrices_get(m);
    double worst = 0.0;
    int untouched = 1;
    for (int ch = 0; ch < c; ch++) {
        for (int p = 0; p < P; p++) x[p] = mt[(size_t)p * tstride + ch];
        wino_apply3(t->at, m, n, x, want, WINO_SIGNED);
        wino_apply3(t->at, m, n, x, mag, WINO_ABS);
        for (int i = 0; i < o.cnt[0]; i++)
            for (int j = 0; j < o.cnt[1]; j++)
                for (int q = 0; q < o.cnt[2]; q++) {
                    const int p = (i * n + j) * n + q;
                    double y = want[p] + bias[ch];
                    if (relu && y < 0) y = 0;
                    const float got = dst[i * stride[0] + j * stride[1] + q * stride[2] + ch];
                    const double bound =
                        3.0 * (3 * n + 1) * (FLT_EPSILON / 2) * (mag[p] + fabs(bias[ch])) + 1e-30;
                    const double e = fabs(got - y);
                    if (!(e <= worst * bound)) worst = e / bound;
                }
    }
    for (int i = 0; i < m; i++)
        for (int j = 0; j < m; j++)
            for (int q = 0; q < m; q++)
                for (int ch = 0; ch < ld; ch++) {
                    const int inside = i < o.cnt[0] && j < o.cnt[1] && q < o.cnt[2] && ch < c;
                    if (!inside)
                        untouched &=
                            dst[i * stride[0] + j * stride[1] + q * stride[2] + ch] == SENTINEL_F;
                }
    CHECK_MSG(worst <= 1.0, "%s wino output F(%d,3) c %d relu %d: error %.3g of the bound",
              sm_isa_name(k->isa), m, c, relu, worst);
    CHECK_MSG(untouched,
              "%s wino output F(%d,3) c %d: wrote outside the tile's voxels or "
              "channels",
              sm_isa_name(k->isa), m, c);
    free(mt), free(bias), free(dst), free(x), free(want), free(mag);
}

/* The per-point GEMM against a double-precision sum: a k-term dot product
 * in float is within k u sum |a b| (plus the final rounding). */
static void wino_gemm_case(const sm_kernels *k, int rows, int kk, int cols)
{
    const size_t lda = (size_t)kk + 3;
    float *a = malloc((size_t)rows * lda * sizeof *a), *b = malloc((size_t)kk * cols * sizeof *b);
    float *c = malloc((size_t)rows * cols * sizeof *c);
    for (size_t i = 0; i < (size_t)rows * lda; i++) a[i] = (float)uniform(-2, 2);
    for (size_t i = 0; i < (size_t)kk * cols; i++) b[i] = (float)uniform(-2, 2);
    for (size_t i = 0; i < (size_t)rows * cols; i++) c[i] = NAN;
    k->wino_gemm(rows, kk, cols, a, lda, b, c);
    double worst = 0.0;
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++) {
            double want = 0, mag = 0;
            for (int q = 0; q < kk; q++) {
                want += (double)a[r * lda + q] * b[(size_t)q * cols + j];
                mag += fabs((double)a[r * lda + q] * b[(size_t)q * cols + j]);
            }
            const double e = fabs(c[(size_t)r * cols + j] - want),
                         bound = (kk + 1) * (FLT_EPSILON / 2) * mag + 1e-30;
            if (!(e <= worst * bound)) worst = e / bound;
        }
    CHECK_MSG(worst <= 1.0, "%s wino gemm %dx%dx%d: error %.3g of the bound", sm_isa_name(k->isa),
              rows, kk, cols, worst);
    free(a), free(b), free(c);
}

static const int wino_channels[] = {1, 3, 4, 5, 8, 15, 16, 17, 33, 48};

static void test_wino_input(const sm_kernels *k)
{
    for (int m = 2; m <= SM_WINO_MAX_M; m++)
        for (size_t i = 0; i < sizeof wino_channels / sizeof *wino_channels; i++)
            for (int rep = 0; rep < 3; rep++)
                wino_input_case(k, m, wino_channels[i], wino_channels[i] + rep * 5);
}

static void test_wino_output(const sm_kernels *k)
{
    for (int m = 2; m <= SM_WINO_MAX_M; m++)
        for (size_t i = 0; i < sizeof wino_channels / sizeof *wino_channels; i++)
            for (int rep = 0; rep < 3; rep++)
                wino_output_case(k, m, wino_channels[i], wino_channels[i] + rep * 3, rep == 1);
}

static void test_wino_gemm(const sm_kernels *k)
{
    static const int rows[] = {1, 2, 3, 5, 6, 7, 8, 9, 13, 16, 31};
    static const int cols[] = {16, 32, 48, 64, 80, 96};
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++)
        for (size_t j = 0; j < sizeof cols / sizeof *cols; j++) {
            wino_gemm_case(k, rows[i], 1, cols[j]);
            wino_gemm_case(k, rows[i], 37, cols[j]);
        }
    wino_gemm_case(k, 24, 192, 784);
}

/* The test of each family, test_<family>, read from simd/dispatch.h's list:
 * a family added to the list without its test does not compile (its name is
 * taken as a value, which needs a declaration). Each test gets a row holding
 * its own family's entry only (the others NULL), so a test cannot pass on
 * another family's kernel. */
typedef void (*family_test_fn)(const sm_kernels *k);
#define FAMILY_RUN(name, unused)                                                                   \
    static void run_##name(const sm_kernels *k)                                                    \
    {                                                                                              \
        const family_test_fn test = test_##name;                                                   \
        test(&(const sm_kernels){.isa = k->isa, .name = k->name});                                 \
    }
SM_KERNEL_FAMILIES(FAMILY_RUN, )
#define FAMILY_TEST(name, unused) {.family = #name, .run = run_##name},
static const struct family_test {
    const char *family;
    family_test_fn run;
} family_tests[] = {SM_KERNEL_FAMILIES(FAMILY_TEST, )};
_Static_assert(sizeof family_tests / sizeof *family_tests == SM_KERNEL_FAMILY_COUNT,
               "every kernel family has its test");

int main(void)
{
    test_token_orders();
    test_wino_matrices();
    for (int isa = SM_ISA_SCALAR; isa <= SM_ISA_NEON; isa++) {
        if (sm_kernels_select((sm_isa)isa) != (sm_isa)isa) continue;
        const sm_kernels *k = sm_kernels_get();
        for (size_t f = 0; f < sizeof family_tests / sizeof *family_tests; f++) {
            const int checks = check_count, failures = check_failures;
            family_tests[f].run(k);
            fprintf(stderr, "%s %s: %d checks, %d failed\n", sm_isa_name(k->isa),
                    family_tests[f].family, check_count - checks, check_failures - failures);
            CHECK_MSG(check_count > checks, "%s %s: the test checked nothing", sm_isa_name(k->isa),
                      family_tests[f].family);
        }
    }
    return check_report("test_simd");
}
