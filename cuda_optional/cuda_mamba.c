/* The CUDA Mamba layer: layer norm, cuBLAS projections, the causal conv1d
 * + SiLU and the chunked selective scan of kernels.cu (cuda_backend.h). */
#include <stdlib.h>

#include "cuda_optional/cuda_internal.h"

/* The kernels take these as plain ints. */
#define SAME(a, b) ((int)(a) == (int)(b))
_Static_assert(SAME(SM_CUK_FORWARD, SM_ORDER_FORWARD) && SAME(SM_CUK_BACKWARD, SM_ORDER_BACKWARD) &&
                   SAME(SM_CUK_SLICE, SM_ORDER_SLICE) && SAME(SM_CUK_HDW, SM_ORDER_HDW) &&
                   SAME(SM_CUK_WHD, SM_ORDER_WHD) && SM_ORDER_COUNT == 5,
               "kernel scan orders follow sm_order");
#undef SAME

static sm_cuk_seq device_seq(const sm_seq *s)
{
    return (sm_cuk_seq){
        .order = (int)s->order, .L = s->L, .S = s->S, .d = s->d, .h = s->h, .w = s->w};
}

static sm_status check_seq(const sm_seq *s, const char *what)
{
    if (sm_seq_valid(s)) return SEGMAMBA_OK;
    return sm_fail(SEGMAMBA_E_ARG,
                   "CUDA %s: order %d over %lld tokens (%lld slices, volume "
                   "%lldx%lldx%lld)",
                   what, (int)s->order, (long long)s->L, (long long)s->S, (long long)s->d,
                   (long long)s->h, (long long)s->w);
}

sm_status sm_cuda_conv1d_silu(sm_cuda_ctx *ctx, const float *x, int64_t ldx, const float *w,
                              const float *b, int K, int di, const sm_seq *seq, float *u)
{
    SM_TRY(check_seq(seq, "causal conv1d"));
    const sm_cuk_seq ds = device_seq(seq);
    CU_TRY(sm_cuk_conv1d_silu(ctx->stream, x, ldx, w, b, K, di, &ds, u), "causal conv1d");
    return SEGMAMBA_OK;
}

sm_status sm_cuda_scan(sm_cuda_ctx *ctx, const sm_scan_args *a, int d_inner, int64_t chunk)
{
    const sm_cuk_scan_args k = {.seq = device_seq(&a->seq),
                                .d_inner = d_inner,
                                .n_state = a->n_state,
                                .u = a->u,
                                .ld_u = a->ld_u,
                                .delta = a->delta,
                                .ld_delta = a->ld_delta,
                                .delta_bias = a->delta_bias,
                                .A = a->A,
                                .B = a->B,
                                .C = a->C,
                                .ld_bc = a->ld_bc,
                                .D = a->D,
                                .z = a->z,
                                .ld_z = a->ld_z,
                                .y = a->y,
                                .ld_y = a->ld_y};
    if (a->n_state < 1 || a->n_state > SM_CUK_MAX_STATE)
        return sm_fail(SEGMAMBA_E_UNSUPPORTED, "CUDA scan: state size %d is outside 1..%d",
                       a->n_state, SM_CUK_MAX_STATE);
    SM_TRY(check_seq(&a->seq, "scan"));
    if (!a->delta || !a->z)
        return sm_fail(SEGMAMBA_E_ARG, "CUDA scan: delta and z are made by the caller");
    if (chunk <= 0) chunk = sm_cuk_scan_default_chunk(a->seq.L);
    float *wk;
    SM_TRY(sm_cuda_work(ctx, (size_t)sm_cuk_scan_work_floats(&k, chunk), &wk));
    CU_TRY(sm_cuk_scan(ctx->stream, &k, chunk, wk), "selective scan");
    return SEGMAMBA_OK;
}

typedef struct dev_dir {
    float *conv_wt, *conv_b, *x_proj, *dt_proj, *dt_bias, *A, *D;
} dev_dir;

struct sm_cuda_mamba {
    /* The CPU layer's sizes, directions and orderings, without its weights:
     * what sm_mamba_scans and sm_mamba_scratch_per_token read. */
    sm_mamba shape;
    float *block;
    float *norm_w, *norm_b, *in_proj, *out_proj;
    dev_dir dir[SM_DIRECTIONS];
};

sm_status sm_cuda_mamba_upload(const sm_mamba *m, sm_cuda_mamba **out)
{
    *out = NULL;
    if (m->d_state < 1 || m->d_state > SM_CUK_MAX_STATE)
        return sm_fail(SEGMAMBA_E_UNSUPPORTED,
                       "CUDA backend: Mamba state size %d is outside "
                       "1..%d",
                       m->d_state, SM_CUK_MAX_STATE);
    if (m->n_dir < 1 || m->n_dir > SM_DIRECTIONS ||
        (m->orderings != 1 && (m->orderings != SM_V2_ORDERINGS || m->n_dir != 1)))
        return sm_fail(SEGMAMBA_E_ARG,
                       "CUDA backend: Mamba layer with %d directions and %d "
                       "orderings",
                       m->n_dir, m->orderings);
    sm_cuda_mamba *dm = calloc(1, sizeof *dm);
    if (!dm) return sm_fail(SEGMAMBA_E_NOMEM, "CUDA backend: out of memory");
    dm->shape = (sm_mamba){.dim = m->dim,
                           .d_inner = m->d_inner,
                           .d_state = m->d_state,
                           .dt_rank = m->dt_rank,
                           .d_conv = m->d_conv,
                           .n_dir = m->n_dir,
                           .orderings = m->orderings};
    const size_t C = (size_t)m->dim, di = (size_t)m->d_inner, N = (size_t)m->d_state,
                 R = (size_t)m->dt_rank, K = (size_t)m->d_conv;
    sm_cuda_piece pieces[4 + 7 * SM_DIRECTIONS] = {
        {m->norm_w, C, &dm->norm_w},
        {m->norm_b, C, &dm->norm_b},
        {m->in_proj, 2 * di * C, &dm->in_proj},
        {m->out_proj, C * di, &dm->out_proj},
    };
    int np = 4;
    for (int s = 0; s < m->n_dir; s++) {
        const sm_mamba_dir *h = &m->dir[s];
        dev_dir *d = &dm->dir[s];
        pieces[np++] = (sm_cuda_piece){h->conv_wt, K * di, &d->conv_wt};
        pieces[np++] = (sm_cuda_piece){h->conv_b, di, &d->conv_b};
        pieces[np++] = (sm_cuda_piece){h->x_proj, (R + 2 * N) * di, &d->x_proj};
        pieces[np++] = (sm_cuda_piece){h->dt_proj, di * R, &d->dt_proj};
        pieces[np++] = (sm_cuda_piece){h->dt_bias, di, &d->dt_bias};
        pieces[np++] = (sm_cuda_piece){h->A, di * N, &d->A};
        pieces[np++] = (sm_cuda_piece){h->D, di, &d->D};
    }
    for (int i = 0; i < np; i++)
        if (!pieces[i].src) {
            free(dm);
            return sm_fail(SEGMAMBA_E_ARG, "CUDA backend: Mamba layer without weight %d", i);
        }
    sm_status st = sm_cuda_upload_pieces(pieces, np, &dm->block);
    if (st != SEGMAMBA_OK) {
        free(dm);
        return st;
    }
    *out = dm;
    return SEGMAMBA_OK;
}

void sm_cuda_mamba_free(sm_cuda_mamba *m)
{
    if (!m) return;
    cudaFree(m->block);
    free(m);
}

int64_t sm_cuda_mamba_scratch_per_token(const sm_cuda_mamba *m)
{
    return sm_mamba_scratch_per_token(&m->shape, 1);
}

sm_status sm_cuda_mamba_forward(sm_cuda_ctx *ctx, const sm_cuda_mamba *m, const float *x, int x_ld,
                                float *out, int out_ld, int d, int h, int w, int64_t nslices,
                                float *scratch, int64_t chunk)
{
    const int C = m->shape.dim, di = m->shape.d_inner, N = m->shape.d_state, R = m->shape.dt_rank;
    const int np = R + 2 * N;
    const int64_t L = (int64_t)d * h * w;
    /* The CPU layer's scans, in its order (their sum is added in that order). */
    sm_seq seqs[SM_DIRECTIONS];
    int dirs[SM_DIRECTIONS];
    const int n_scans = sm_mamba_scans(&m->shape, d, h, w, nslices, seqs, dirs);
    for (int s = 0; s < n_scans; s++)
        if (!sm_seq_valid(&seqs[s]))
            return sm_fail(SEGMAMBA_E_ARG, "CUDA Mamba layer: %dx%dx%d tokens in %lld slices", d, h,
                           w, (long long)nslices);
    /* The device layout (src/engine/mamba.h): xz whole, delta made by a GEMM. */
    const sm_mamba_scratch sc = sm_mamba_scratch_split(C, di, N, R, 1, L, scratch);
    float *xz = sc.x, *u = sc.u, *y = sc.y, *p = sc.p, *delta = sc.delta;
    float *xn = u; /* the normed input, dead once in_proj has read it */

    SM_TRY(sm_cuda_mark_time(ctx, SM_KIND_NORM));
    SM_TRY(sm_cuda_layer_norm(ctx, x, x_ld, xn, C, L, C, m->norm_w, m->norm_b));
    SM_TRY(sm_cuda_mark_time(ctx, SM_KIND_OTHER));
    SM_TRY(sm_cuda_gemm(ctx, 1, L, 2 * di, C, xn, C, m->in_proj, C, 0.0f, xz, 2 * di));
    CU_TRY(cudaMemsetAsync(y, 0, (size_t)L * di * sizeof *y, ctx->stream), "clearing y");
    for (int s = 0; s < n_scans; s++) {
        const dev_dir *dir = &m->dir[dirs[s]];
        SM_TRY(sm_cuda_conv1d_silu(ctx, xz, 2 * di, dir->conv_wt, dir->conv_b, m->shape.d_conv, di,
                                   &seqs[s], u));
        SM_TRY(sm_cuda_gemm(ctx, 1, L, np, di, u, di, dir->x_proj, di, 0.0f, p, np));
        SM_TRY(sm_cuda_gemm(ctx, 1, L, di, R, p, np, dir->dt_proj, R, 0.0f, delta, di));
        const sm_scan_args args = {
            .seq = seqs[s],
            .n_state = N,
            .u = u,
            .ld_u = di,
            .delta = delta,
            .ld_delta = di,
            .delta_bias = dir->dt_bias,
            .A = dir->A,
            .B = p + R,
            .C = p + R + N,
            .ld_bc = np,
            .D = dir->D,
            .z = xz + di,
            .ld_z = 2 * di,
            .y = y,
            .ld_y = di,
        };
        SM_TRY(sm_cuda_mark_time(ctx, SM_KIND_SCAN));
        SM_TRY(sm_cuda_scan(ctx, &args, di, chunk));
        SM_TRY(sm_cuda_mark_time(ctx, SM_KIND_OTHER));
    }
    /* out = x + out_proj(y), the projection into u (dead here, at least L x C). */
    SM_TRY(sm_cuda_gemm(ctx, 1, L, C, di, y, di, m->out_proj, di, 0.0f, u, C));
    return sm_cuda_add(ctx, u, C, x, x_ld, out, out_ld, L, C, SM_ACT_NONE);
}
