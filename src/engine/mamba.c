#include "engine/mamba.h"

#include <math.h>
#include <stdlib.h>

#include "blas_backends/gemm.h"
#include "engine/ops.h"
#include "core/parallel.h"
#include "simd/dispatch.h"

/* Positions per unit of work of the conv1d. */
#define CONV1D_BLOCK 256

/* u = SiLU(causal conv1d of x) along the sequence's order (simd/conv1d.h). */
static void causal_conv1d_silu(const sm_mamba *m, const sm_kernels *k, const sm_mamba_dir *dir,
                               const sm_seq *seq, const float *x, int64_t ldx, float *u)
{
    const int64_t L = seq->L;
    const sm_conv1d_args args = {.seq = *seq,
                                 .c = m->d_inner,
                                 .K = m->d_conv,
                                 .x = x,
                                 .ld_x = ldx,
                                 .w = dir->conv_wt,
                                 .b = dir->conv_b,
                                 .u = u,
                                 .ld_u = m->d_inner};
    const sm_conv1d_silu_fn f = k->conv1d_silu;
    const int64_t blocks = (L + CONV1D_BLOCK - 1) / CONV1D_BLOCK;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < blocks; b++)
        f(&args, b * CONV1D_BLOCK, (b + 1) * CONV1D_BLOCK < L ? (b + 1) * CONV1D_BLOCK : L);
}

static sm_status run_scan(const sm_mamba *m, const sm_kernels *kern, const sm_scan_args *args)
{
    const int di = m->d_inner, N = m->d_state;
    const int nt = sm_num_threads();
    /* Channels are independent: one contiguous block per thread. */
    float *state = malloc((size_t)di * (size_t)N * sizeof *state);
    if (!state) return sm_fail(SEGMAMBA_E_NOMEM, "selective scan: out of memory");
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int b = 0; b < nt; b++) {
        const int c0 = (int)((int64_t)di * b / nt), c1 = (int)((int64_t)di * (b + 1) / nt);
        if (c1 > c0) kern->scan(args, c0, c1, state + (int64_t)c0 * N);
    }
    free(state);
    return SEGMAMBA_OK;
}

/* Whether the scan kernels take dt_proj's rank, and so compute delta. */
static int scan_fuses_dt(int dt_rank) { return dt_rank <= SM_SCAN_MAX_RANK; }

int64_t sm_mamba_scratch_floats(int dim, int d_inner, int d_state, int dt_rank, int device)
{
    const int64_t u = d_inner > dim ? d_inner : dim;
    const int with_delta = device || !scan_fuses_dt(dt_rank);
    return (device ? 2 : 1) * (int64_t)d_inner + u + d_inner + dt_rank + 2 * (int64_t)d_state +
           (with_delta ? d_inner : 0);
}

sm_mamba_scratch sm_mamba_scratch_split(int dim, int d_inner, int d_state, int dt_rank, int device,
                                        int64_t L, float *scratch)
{
    sm_mamba_scratch s;
    s.ld_xz = (device ? 2 : 1) * (int64_t)d_inner;
    s.x = scratch;
    s.z = device ? s.x + d_inner : NULL;
    s.u = s.x + L * s.ld_xz;
    s.y = s.u + L * (d_inner > dim ? d_inner : dim);
    s.p = s.y + L * d_inner;
    s.delta = device || !scan_fuses_dt(dt_rank) ? s.p + L * (dt_rank + 2 * (int64_t)d_state) : NULL;
    return s;
}

int64_t sm_mamba_scratch_per_token(const sm_mamba *m, int device)
{
    return sm_mamba_scratch_floats(m->dim, m->d_inner, m->d_state, m->dt_rank, device);
}

int sm_mamba_scans(const sm_mamba *m, int64_t d, int64_t h, int64_t w, int64_t nslices,
                   sm_seq seq[SM_DIRECTIONS], int dir[SM_DIRECTIONS])
{
    static const sm_order v1[SM_DIRECTIONS] = {SM_ORDER_FORWARD, SM_ORDER_BACKWARD, SM_ORDER_SLICE};
    static const sm_order v2[SM_V2_ORDERINGS] = {SM_ORDER_FORWARD, SM_ORDER_HDW, SM_ORDER_WHD};
    const int n = m->orderings == SM_V2_ORDERINGS ? SM_V2_ORDERINGS : m->n_dir;
    for (int s = 0; s < n; s++) {
        const int vol = m->orderings == SM_V2_ORDERINGS;
        seq[s] = (sm_seq){
            .order = vol ? v2[s] : v1[s], .L = d * h * w, .S = nslices, .d = d, .h = h, .w = w};
        dir[s] = vol ? 0 : s;
    }
    return n;
}

/* y *= SiLU(z) over L rows of d_inner, z overwritten with SiLU(z). */
static void gate(const sm_kernels *k, float *y, float *z, int64_t n)
{
    const sm_silu_fn silu = k->silu;
    const int64_t block = 4096;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < n; b += block) {
        const int64_t len = n - b < block ? n - b : block;
        silu(z + b, z + b, len);
        for (int64_t i = b; i < b + len; i++) y[i] *= z[i];
    }
}

sm_status sm_mamba_forward(const sm_mamba *m, const sm_kernels *k, const float *x, int x_ld,
                           float *out, int out_ld, int d, int h, int w, int64_t nslices,
                           float *scratch, double *seconds)
{
    const int C = m->dim, di = m->d_inner, N = m->d_state, R = m->dt_rank;
    const int np = R + 2 * N;
    const int64_t L = (int64_t)d * h * w;
    sm_seq seqs[SM_DIRECTIONS];
    int dirs[SM_DIRECTIONS];
    const int n_scans = sm_mamba_scans(m, d, h, w, nslices, seqs, dirs);
    for (int s = 0; s < n_scans; s++)
        if (!sm_seq_valid(&seqs[s]))
            return sm_fail(SEGMAMBA_E_ARG, "Mamba layer: %dx%dx%d tokens in %lld slices", d, h, w,
                           (long long)nslices);
    const sm_mamba_scratch sc = sm_mamba_scratch_split(C, di, N, R, 0, L, scratch);
    float *xs = sc.x, *u = sc.u, *y = sc.y, *p = sc.p, *delta = sc.delta;
    float *xn = u; /* the normed input, dead once in_proj has read it */
    const size_t sz_u = (size_t)L * di;

    double t0 = sm_now_seconds();
    sm_layer_norm(x, x_ld, xn, C, L, C, m->norm_w, m->norm_b);
    double t1 = sm_now_seconds(), norm_seconds = t1 - t0;
    /* in_proj's first half: rows [0, d_inner) of the weight */
    sm_sgemm(0, 1, (int)L, di, C, 1.0f, xn, C, m->in_proj, C, 0.0f, xs, di);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < sz_u; i++) y[i] = 0.0f;

    /* Every scan reads x and adds to y in the original token order; its
     * order is only the order the kernels visit the tokens in. */
    sm_status st = SEGMAMBA_OK;
    double scan_seconds = 0.0;
    for (int s = 0; s < n_scans && st == SEGMAMBA_OK; s++) {
        const sm_mamba_dir *dir = &m->dir[dirs[s]];
        causal_conv1d_silu(m, k, dir, &seqs[s], xs, di, u);
        sm_sgemm(0, 1, (int)L, np, di, 1.0f, u, di, dir->x_proj, di, 0.0f, p, np);
        if (delta) sm_sgemm(0, 1, (int)L, di, R, 1.0f, p, np, dir->dt_proj, R, 0.0f, delta, di);
        const sm_scan_args args = {
            .seq = seqs[s],
            .n_state = N,
            .u = u,
            .ld_u = di,
            .delta = delta,
            .ld_delta = di,
            .dt_low = p,
            .ld_dt_low = np,
            .dt_proj = dir->dt_proj,
            .dt_rank = R,
            .delta_bias = dir->dt_bias,
            .A = dir->A,
            .B = p + R,
            .C = p + R + N,
            .ld_bc = np,
            .D = dir->D,
            .z = NULL,
            .y = y,
            .ld_y = di,
        };
        double t2 = sm_now_seconds();
        st = run_scan(m, k, &args);
        scan_seconds += sm_now_seconds() - t2;
    }
    if (st == SEGMAMBA_OK) {
        /* y *= SiLU(z), z = in_proj's second half of the normed input,
         * made again now into x's rows (dead after the last conv1d). */
        double t3 = sm_now_seconds();
        sm_layer_norm(x, x_ld, xn, C, L, C, m->norm_w, m->norm_b);
        norm_seconds += sm_now_seconds() - t3;
        float *z = xs;
        sm_sgemm(0, 1, (int)L, di, C, 1.0f, xn, C, m->in_proj + (size_t)di * C, C, 0.0f, z, di);
        gate(k, y, z, (int64_t)sz_u);
        /* out = x + out_proj(y) */
        float *o = u; /* dead after the last scan, at least (L, C) floats */
        sm_sgemm(0, 1, (int)L, C, di, 1.0f, y, di, m->out_proj, di, 0.0f, o, C);
        sm_add(k, o, C, x, x_ld, out, out_ld, L, C, SM_ACT_NONE);
    }
    seconds[SM_KIND_NORM] += norm_seconds;
    seconds[SM_KIND_SCAN] += scan_seconds;
    /* Everything but the norms and the scans: GEMMs, conv1d, gate, residual. */
    seconds[SM_KIND_OTHER] += sm_now_seconds() - t0 - norm_seconds - scan_seconds;
    return st;
}

double sm_mamba_flops_per_token(const sm_mamba *m)
{
    const double C = m->dim, di = m->d_inner, N = m->d_state, R = m->dt_rank, K = m->d_conv;
    const double per_dir = 2 * di * K             /* conv1d */
                           + 2 * di * (R + 2 * N) /* x_proj */
                           + 2 * R * di           /* dt_proj */
                           + 6 * di * N;          /* scan: exp argument, h update, C h */
    const int scans = m->n_dir * (m->orderings > 1 ? m->orderings : 1);
    return 2 * C * 2 * di + scans * per_dir + 2 * di * C;
}

sm_status sm_mamba_create(int dim, int d_inner, int d_state, int dt_rank, int d_conv,
                          const sm_mamba_weights *w, sm_mamba **out)
{
    *out = NULL;
    if (w->n_dir < 1 || w->n_dir > SM_DIRECTIONS)
        return sm_fail(SEGMAMBA_E_ARG, "Mamba layer: %d directions (1, 2 or 3)", w->n_dir);
    if (w->orderings > 1 && (w->orderings != SM_V2_ORDERINGS || w->n_dir != 1))
        return sm_fail(SEGMAMBA_E_ARG,
                       "Mamba layer: %d orderings of %d directions (SegMamba-V2's "
                       "layer has 3 of one)",
                       w->orderings, w->n_dir);
    sm_mamba *m = calloc(1, sizeof *m);
    if (!m) return sm_fail(SEGMAMBA_E_NOMEM, "Mamba layer: out of memory");
    *m = (sm_mamba){.dim = dim,
                    .d_inner = d_inner,
                    .d_state = d_state,
                    .dt_rank = dt_rank,
                    .d_conv = d_conv,
                    .n_dir = w->n_dir,
                    .orderings = w->orderings > 1 ? w->orderings : 1,
                    .norm_w = w->norm_w,
                    .norm_b = w->norm_b,
                    .in_proj = w->in_proj,
                    .out_proj = w->out_proj};
    const size_t n = (size_t)d_inner * (size_t)d_state;
    for (int s = 0; s < m->n_dir; s++) {
        sm_mamba_dir *d = &m->dir[s];
        d->conv_b = w->dir[s].conv_b;
        d->x_proj = w->dir[s].x_proj;
        d->dt_proj = w->dir[s].dt_proj;
        d->dt_bias = w->dir[s].dt_bias;
        d->D = w->dir[s].D;
        d->A = malloc(n * sizeof *d->A);
        d->conv_wt = malloc((size_t)d_conv * (size_t)d_inner * sizeof *d->conv_wt);
        if (!d->A || !d->conv_wt) {
            sm_mamba_free(m);
            return sm_fail(SEGMAMBA_E_NOMEM, "Mamba layer: out of memory");
        }
        const float *a_log = w->dir[s].A_log, *conv_w = w->dir[s].conv_w;
        for (size_t k = 0; k < n; k++) d->A[k] = -expf(a_log[k]);
        /* (d_inner, 1, K) -> (K, d_inner): the conv1d's inner loop runs over channels. */
        for (int c = 0; c < d_inner; c++)
            for (int k = 0; k < d_conv; k++)
                d->conv_wt[(size_t)k * d_inner + c] = conv_w[(size_t)c * d_conv + k];
    }
    *out = m;
    return SEGMAMBA_OK;
}

size_t sm_mamba_weight_bytes(const sm_mamba *m)
{
    const size_t per_dir = (size_t)m->d_inner * ((size_t)m->d_state + (size_t)m->d_conv);
    return (size_t)m->n_dir * per_dir * sizeof(float);
}

void sm_mamba_free(sm_mamba *m)
{
    if (!m) return;
    for (int s = 0; s < SM_DIRECTIONS; s++) {
        free(m->dir[s].A);
        free(m->dir[s].conv_wt);
    }
    free(m);
}
