/* sm_mamba_forward (engine/mamba.h) against a double-precision evaluation
 * of the spec's MambaLayer (sections 2 and 7): LayerNorm, in_proj, then
 * per scan the causal depthwise conv1d + SiLU along the scan's token order,
 * x_proj -> (dt, B, C), dt_proj + softplus, the selective scan with
 * A = -exp(A_log) and the D skip, the gate SiLU(z); the sum over the scans,
 * out_proj and the residual. Every layer kind: bimamba "v3" (forward,
 * backward, inter-slice with several nslices), "v2", "none", and
 * SegMamba-V2's one direction over three orderings of the volume; small odd
 * volumes (a single slice and a single token among them), strided rows,
 * out of place and in place, at every kernel level the machine has (the
 * conv1d, the scan and the gate run on the table passed in). The token
 * orders are built here with nested loops over the spec's axis orders, not
 * with simd/scan.h's helpers. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "engine/mamba.h"
#include "engine/ops.h"
#include "segmamba.h"
#include "simd/dispatch.h"

#define SENTINEL 12345.0f

/* Relative to the largest |out_proj(...)| term (the layer's output minus
 * its residual), plus the rounding of the residual sum itself (2^-24 of
 * each output). The float path rounds in a LayerNorm over C channels, GEMMs
 * of at most d_inner terms, a 4-tap conv1d, an exp with about 2.5e-7
 * relative error (test_simd.c) and a recurrence of at most 105 steps whose
 * decay exp(delta A) < 1 keeps rounding errors from growing: each stage a
 * few 1e-7 of its own scale, about 1e-6 in all (measured: at most 7.2e-7
 * over the cases below, at each level; the single token's error is the
 * residual's rounding). 1e-5 leaves over ten times that; a wrong order,
 * a dropped term or a wrong weight moves the output by 1e-2 or more of the
 * scale. */
#define TOL 1e-5

/* The scans' token orders, as the spec names them. */
enum order { FORWARD, BACKWARD, SLICE, HDW, WHD };

typedef struct layer_case {
    const char *kind;     /* "v3", "v2", "none", "segmamba-v2" */
    int n_dir, orderings; /* as sm_mamba_weights */
    int C, di, N, R, K;   /* dim, d_inner, d_state, dt_rank, d_conv */
    int d, h, w;
    int64_t S; /* nslices (v3 only) */
} layer_case;

/* A layer's weights in PyTorch's layout, one allocation each. */
typedef struct layer_weights {
    float *norm_w, *norm_b, *in_proj, *out_proj;
    float *conv_w[SM_DIRECTIONS], *conv_b[SM_DIRECTIONS], *x_proj[SM_DIRECTIONS];
    float *dt_proj[SM_DIRECTIONS], *dt_bias[SM_DIRECTIONS], *A_log[SM_DIRECTIONS];
    float *D[SM_DIRECTIONS];
} layer_weights;

/* Ranges like a trained layer's: A_log near log(1..N) (Mamba's
 * initialisation), dt_bias giving deltas from about 0.003 to 0.4, so the
 * state both remembers and forgets over a few tokens. */
static layer_weights random_weights(const layer_case *c)
{
    const int C = c->C, di = c->di, N = c->N, R = c->R, K = c->K;
    layer_weights w = {0};
    w.norm_w = check_random_floats(C, 0.5, 1.5);
    w.norm_b = check_random_floats(C, -0.5, 0.5);
    w.in_proj = check_random_floats(2 * (int64_t)di * C, -1, 1);
    w.out_proj = check_random_floats((int64_t)C * di, -0.4, 0.4);
    for (int s = 0; s < c->n_dir; s++) {
        w.conv_w[s] = check_random_floats((int64_t)di * K, -0.6, 0.6);
        w.conv_b[s] = check_random_floats(di, -0.3, 0.3);
        w.x_proj[s] = check_random_floats((int64_t)(R + 2 * N) * di, -0.5, 0.5);
        w.dt_proj[s] = check_random_floats((int64_t)di * R, -0.5, 0.5);
        w.dt_bias[s] = check_random_floats(di, -5, -1);
        w.A_log[s] = malloc((size_t)di * N * sizeof(float));
        for (int e = 0; e < di; e++)
            for (int n = 0; n < N; n++)
                w.A_log[s][e * N + n] = (float)(log(1.0 + n) + check_uniform(-0.3, 0.3));
        w.D[s] = check_random_floats(di, -1, 1);
    }
    return w;
}

static void free_weights(layer_weights *w)
{
    free(w->norm_w), free(w->norm_b), free(w->in_proj), free(w->out_proj);
    for (int s = 0; s < SM_DIRECTIONS; s++) {
        free(w->conv_w[s]), free(w->conv_b[s]), free(w->x_proj[s]), free(w->dt_proj[s]);
        free(w->dt_bias[s]), free(w->A_log[s]), free(w->D[s]);
    }
}

/* tok[q]: the token (index in (D, H, W) C-order) visited at position q. */
static void build_order(enum order o, int d, int h, int w, int64_t S, int64_t *tok)
{
    const int64_t L = (int64_t)d * h * w;
    int64_t q = 0;
    switch (o) {
    case FORWARD:
        for (int64_t t = 0; t < L; t++) tok[q++] = t;
        break;
    case BACKWARD:
        for (int64_t t = L - 1; t >= 0; t--) tok[q++] = t;
        break;
    case SLICE: { /* position j*S + s visits token s*m + j */
        const int64_t m = L / S;
        for (int64_t j = 0; j < m; j++)
            for (int64_t s = 0; s < S; s++) tok[q++] = s * m + j;
        break;
    }
    case HDW: /* C-order over (H, D, W) */
        for (int y = 0; y < h; y++)
            for (int z = 0; z < d; z++)
                for (int x = 0; x < w; x++) tok[q++] = ((int64_t)z * h + y) * w + x;
        break;
    case WHD: /* C-order over (W, H, D) */
        for (int x = 0; x < w; x++)
            for (int y = 0; y < h; y++)
                for (int z = 0; z < d; z++) tok[q++] = ((int64_t)z * h + y) * w + x;
        break;
    }
}

static double silu(double v) { return v / (1.0 + exp(-v)); }

/* The spec's layer in double: out (L, C) = x + out_proj(sum over scans). */
static void reference(const layer_case *c, const layer_weights *wt, const float *x, int x_ld,
                      double *out)
{
    const int C = c->C, di = c->di, N = c->N, R = c->R, K = c->K, np = R + 2 * N;
    const int64_t L = (int64_t)c->d * c->h * c->w;
    double *t = malloc((size_t)L * C * sizeof *t);
    double *xi = malloc((size_t)L * di * sizeof *xi), *z = malloc((size_t)L * di * sizeof *z);
    double *ysum = calloc((size_t)L * di, sizeof *ysum);
    double *u = malloc((size_t)L * di * sizeof *u), *p = malloc((size_t)L * np * sizeof *p);
    double *hs = malloc((size_t)N * sizeof *hs);
    int64_t *tok = malloc((size_t)L * sizeof *tok);

    for (int64_t l = 0; l < L; l++) { /* LayerNorm, biased variance, eps 1e-5 */
        const float *r = x + l * x_ld;
        double mean = 0, var = 0;
        for (int k = 0; k < C; k++) mean += r[k];
        mean /= C;
        for (int k = 0; k < C; k++) var += (r[k] - mean) * (r[k] - mean);
        var /= C;
        for (int k = 0; k < C; k++)
            t[l * C + k] = (r[k] - mean) / sqrt(var + 1e-5) * wt->norm_w[k] + wt->norm_b[k];
    }
    for (int64_t l = 0; l < L; l++) /* in_proj: x then z */
        for (int e = 0; e < 2 * di; e++) {
            double s = 0;
            for (int k = 0; k < C; k++) s += (double)wt->in_proj[(int64_t)e * C + k] * t[l * C + k];
            if (e < di)
                xi[l * di + e] = s;
            else
                z[l * di + e - di] = s;
        }

    static const enum order v1[SM_DIRECTIONS] = {FORWARD, BACKWARD, SLICE};
    static const enum order v2[3] = {FORWARD, HDW, WHD};
    const int v2_layer = c->orderings == 3;
    const int n_scans = v2_layer ? 3 : c->n_dir;
    for (int sc = 0; sc < n_scans; sc++) {
        const int s = v2_layer ? 0 : sc; /* SegMamba-V2's orderings share the forward weights */
        build_order(v2_layer ? v2[sc] : v1[sc], c->d, c->h, c->w, c->S, tok);
        /* u by position q */
        for (int64_t q = 0; q < L; q++)
            for (int e = 0; e < di; e++) {
                double a = wt->conv_b[s][e];
                for (int k = 0; k < K; k++) {
                    const int64_t qq = q - (K - 1) + k;
                    if (qq >= 0) a += (double)wt->conv_w[s][e * K + k] * xi[tok[qq] * di + e];
                }
                u[q * di + e] = silu(a);
            }
        for (int64_t q = 0; q < L; q++)
            for (int r = 0; r < np; r++) {
                double a = 0;
                for (int e = 0; e < di; e++)
                    a += (double)wt->x_proj[s][(int64_t)r * di + e] * u[q * di + e];
                p[q * np + r] = a;
            }
        for (int e = 0; e < di; e++) {
            for (int n = 0; n < N; n++) hs[n] = 0;
            for (int64_t q = 0; q < L; q++) {
                const double *dt = p + q * np, *B = dt + R, *Cm = dt + R + N;
                double v = wt->dt_bias[s][e];
                for (int r = 0; r < R; r++) v += (double)wt->dt_proj[s][(int64_t)e * R + r] * dt[r];
                const double delta = v > 20 ? v : log1p(exp(v));
                const double ue = u[q * di + e];
                double y = 0;
                for (int n = 0; n < N; n++) {
                    const double A = -exp((double)wt->A_log[s][e * N + n]);
                    hs[n] = exp(delta * A) * hs[n] + delta * B[n] * ue;
                    y += Cm[n] * hs[n];
                }
                y += wt->D[s][e] * ue;
                const int64_t tk = tok[q];
                ysum[tk * di + e] += y * silu(z[tk * di + e]);
            }
        }
    }
    for (int64_t l = 0; l < L; l++)
        for (int k = 0; k < C; k++) {
            double a = 0;
            for (int e = 0; e < di; e++)
                a += (double)wt->out_proj[(int64_t)k * di + e] * ysum[l * di + e];
            out[l * C + k] = x[l * x_ld + k] + a;
        }
    free(t), free(xi), free(z), free(ysum), free(u), free(p), free(hs), free(tok);
}

static sm_mamba *create(const layer_case *c, const layer_weights *wt)
{
    sm_mamba_weights mw = {.n_dir = c->n_dir,
                           .orderings = c->orderings,
                           .norm_w = wt->norm_w,
                           .norm_b = wt->norm_b,
                           .in_proj = wt->in_proj,
                           .out_proj = wt->out_proj};
    for (int s = 0; s < c->n_dir; s++) {
        mw.dir[s].conv_w = wt->conv_w[s];
        mw.dir[s].conv_b = wt->conv_b[s];
        mw.dir[s].x_proj = wt->x_proj[s];
        mw.dir[s].dt_proj = wt->dt_proj[s];
        mw.dir[s].dt_bias = wt->dt_bias[s];
        mw.dir[s].A_log = wt->A_log[s];
        mw.dir[s].D = wt->D[s];
    }
    sm_mamba *m = NULL;
    CHECK(sm_mamba_create(c->C, c->di, c->N, c->R, c->K, &mw, &m) == SEGMAMBA_OK);
    return m;
}

/* The worst error over every case and level, as a fraction of its bound. */
static double worst_margin;

static void run_case(const sm_kernels *k, const layer_case *c, uint64_t seed)
{
    check_seed(seed);
    const int C = c->C, x_ld = C + 3, out_ld = C + 2;
    const int64_t L = (int64_t)c->d * c->h * c->w;
    layer_weights wt = random_weights(c);
    float *x = check_random_floats(L * x_ld, -2, 2);
    double *ref = malloc((size_t)L * C * sizeof *ref);
    reference(c, &wt, x, x_ld, ref);
    double scale = 0; /* the largest |out_proj(...)| term */
    for (int64_t l = 0; l < L; l++)
        for (int j = 0; j < C; j++) {
            const double b = fabs(ref[l * C + j] - x[l * x_ld + j]);
            scale = b > scale ? b : scale;
        }

    sm_mamba *m = create(c, &wt);
    if (!m) {
        free_weights(&wt), free(x), free(ref);
        return;
    }
    float *scratch = malloc((size_t)(L * sm_mamba_scratch_per_token(m, 0)) * sizeof *scratch);
    for (int in_place = 0; in_place < 2; in_place++) {
        const int ld = in_place ? x_ld : out_ld;
        float *out = in_place ? malloc((size_t)(L * x_ld) * sizeof *out)
                              : check_filled_floats(L * out_ld, SENTINEL);
        if (in_place)
            for (int64_t i = 0; i < L * x_ld; i++) out[i] = x[i];
        double seconds[SM_KIND_COUNT] = {0};
        const sm_status st = sm_mamba_forward(m, k, in_place ? out : x, x_ld, out, ld, c->d, c->h,
                                              c->w, c->S, scratch, seconds);
        CHECK_MSG(st == SEGMAMBA_OK, "%s %s %dx%dx%d: %s", sm_isa_name(k->isa), c->kind, c->d, c->h,
                  c->w, segmamba_get_last_error());
        double err = 0, worst = 0; /* the largest error, and as a fraction of its bound */
        int64_t kept = 0;
        for (int64_t l = 0; l < L; l++) {
            for (int j = 0; j < C; j++) {
                const double r = ref[l * C + j], e = fabs(out[l * ld + j] - r);
                const double f = e / (TOL * scale + 0x1p-24 * fabs(r));
                err = e > err || e != e ? e : err;
                worst = f > worst || f != f ? f : worst;
            }
            /* the channels past C: x's own in place, else the sentinel */
            for (int j = C; j < ld; j++)
                kept += out[l * ld + j] == (in_place ? x[l * x_ld + j] : SENTINEL);
        }
        fprintf(stderr,
                "%-6s %-11s %dx%dx%d S %-3lld C %-2d di %-2d N %-2d R %-2d %s: max err "
                "%.3g = %.3g of the branch's max %.3g, %.3g of the bound\n",
                sm_isa_name(k->isa), c->kind, c->d, c->h, c->w, (long long)c->S, C, c->di, c->N,
                c->R, in_place ? "in place" : "strided ", err, err / scale, scale, worst);
        CHECK_MSG(worst <= 1.0,
                  "%s %s %dx%dx%d S %lld in place %d: max err %.3g, %.3g times "
                  "the bound (%g of the branch's max %.3g, + rounding)",
                  sm_isa_name(k->isa), c->kind, c->d, c->h, c->w, (long long)c->S, in_place, err,
                  worst, TOL, scale);
        CHECK_MSG(kept == L * (ld - C), "%s %s: %lld of %lld padding floats changed",
                  sm_isa_name(k->isa), c->kind, (long long)(L * (ld - C) - kept),
                  (long long)(L * (ld - C)));
        if (!(worst <= worst_margin)) worst_margin = worst;
        free(out);
    }
    /* A branch lost in the residual's rounding would let any error pass. */
    CHECK_MSG(scale > 0.01, "%s: the layer's branch is only %.3g", c->kind, scale);
    sm_mamba_free(m);
    free_weights(&wt), free(x), free(ref), free(scratch);
}

/* What the layer refuses: an inter-slice scan whose nslices does not divide
 * the tokens, and weights of no layer kind. */
static void test_refusals(void)
{
    const layer_case c = {.kind = "v3",
                          .n_dir = 3,
                          .C = 4,
                          .di = 8,
                          .N = 4,
                          .R = 1,
                          .K = 4,
                          .d = 3,
                          .h = 5,
                          .w = 7,
                          .S = 4};
    check_seed(7);
    layer_weights wt = random_weights(&c);
    sm_mamba *m = create(&c, &wt);
    if (m) {
        const int64_t L = 105;
        float *x = check_random_floats(L * c.C, -1, 1),
              *out = check_filled_floats(L * c.C, SENTINEL);
        float *scratch = malloc((size_t)(L * sm_mamba_scratch_per_token(m, 0)) * sizeof *scratch);
        double seconds[SM_KIND_COUNT] = {0};
        CHECK(sm_mamba_forward(m, sm_kernels_get(), x, c.C, out, c.C, 3, 5, 7, 4, scratch,
                               seconds) == SEGMAMBA_E_ARG);
        sm_mamba_free(m);
        free(x), free(out), free(scratch);
    }
    sm_mamba_weights none = {.n_dir = 0};
    sm_mamba *bad = NULL;
    CHECK(sm_mamba_create(4, 8, 4, 1, 4, &none, &bad) == SEGMAMBA_E_ARG && bad == NULL);
    sm_mamba_weights mixed = {.n_dir = 2, .orderings = SM_V2_ORDERINGS};
    CHECK(sm_mamba_create(4, 8, 4, 1, 4, &mixed, &bad) == SEGMAMBA_E_ARG && bad == NULL);
    free_weights(&wt);
}

int main(void)
{
    /* SPEC: the spec's sizes for C channels. The others put d_inner and N
     * off the vector widths, and one a dt_rank above SM_SCAN_MAX_RANK
     * (delta then made by a GEMM, not in the scan kernel). */
#define V3 .kind = "v3", .n_dir = 3
#define V2 .kind = "v2", .n_dir = 2
#define NONE .kind = "none", .n_dir = 1, .S = 1
#define SEGMAMBA_V2 .kind = "segmamba-v2", .n_dir = 1, .orderings = SM_V2_ORDERINGS, .S = 1
#define SPEC(c) .C = c, .di = 2 * c, .N = 16, .R = (c + 15) / 16, .K = 4
    static const layer_case cases[] = {
        {V3, SPEC(5), .d = 3, .h = 5, .w = 7, .S = 3},  /* slices along D */
        {V3, SPEC(6), .d = 3, .h = 5, .w = 7, .S = 35}, /* slices of 3 tokens */
        {V3, SPEC(12), .d = 4, .h = 6, .w = 2, .S = 8}, /* slices not along an axis */
        {V3, SPEC(7), .d = 1, .h = 5, .w = 7, .S = 1},  /* a single slice */
        {V3, SPEC(20), .d = 4, .h = 6, .w = 2, .S = 4},
        {V3, .C = 8, .di = 17, .N = 5, .R = 66, .K = 4, .d = 4, .h = 6, .w = 2, .S = 4},
        {V2, SPEC(5), .d = 3, .h = 5, .w = 7, .S = 1},
        {V2, .C = 9, .di = 33, .N = 7, .R = 1, .K = 4, .d = 4, .h = 6, .w = 2, .S = 1},
        {NONE, SPEC(5), .d = 3, .h = 5, .w = 7},
        {NONE, SPEC(7), .d = 1, .h = 5, .w = 7},
        {NONE, SPEC(6), .d = 1, .h = 1, .w = 1}, /* a single token */
        {SEGMAMBA_V2, SPEC(5), .d = 3, .h = 5, .w = 7},
        {SEGMAMBA_V2, SPEC(12), .d = 4, .h = 6, .w = 2},
        {SEGMAMBA_V2, SPEC(7), .d = 1, .h = 5, .w = 7},
        {SEGMAMBA_V2, .C = 9, .di = 19, .N = 6, .R = 1, .K = 4, .d = 5, .h = 1, .w = 3},
    };
#undef V3
#undef V2
#undef NONE
#undef SEGMAMBA_V2
#undef SPEC
    const int n_cases = (int)(sizeof cases / sizeof *cases);
    int levels = 0;
    for (int isa = SM_ISA_SCALAR; isa <= SM_ISA_NEON; isa++) {
        if (sm_kernels_select((sm_isa)isa) != (sm_isa)isa) continue;
        levels++;
        for (int i = 0; i < n_cases; i++) run_case(sm_kernels_get(), &cases[i], 1000 + (uint64_t)i);
    }
    CHECK(levels >= 1);
    test_refusals();
    fprintf(stderr, "worst error: %.3g of the bound, %d kernel levels\n", worst_margin, levels);
    return check_report("test_mamba");
}
