/* The CUDA squeeze-excitation gate of SegMamba-V2 (cuda_backend.h). */
#include <stdlib.h>

#include "cuda_optional/cuda_internal.h"

struct sm_cuda_se {
    int c, hidden;
    float *block;
    float *fc1_w, *fc1_b, *fc2_w, *fc2_b; /* as sm_se_get_weights */
};

sm_status sm_cuda_se_upload(const sm_se *se, sm_cuda_se **out)
{
    *out = NULL;
    const sm_se_weights w = sm_se_get_weights(se);
    sm_cuda_se *ds = calloc(1, sizeof *ds);
    if (!ds) return sm_fail(SEGMAMBA_E_NOMEM, "CUDA backend: out of memory");
    ds->c = w.c;
    ds->hidden = w.hidden;
    const size_t nw = (size_t)w.c * (size_t)w.hidden;
    const sm_cuda_piece pieces[] = {
        {w.fc1_w, nw, &ds->fc1_w},
        {w.fc1_b, (size_t)w.hidden, &ds->fc1_b},
        {w.fc2_w, nw, &ds->fc2_w},
        {w.fc2_b, (size_t)w.c, &ds->fc2_b},
    };
    sm_status st = sm_cuda_upload_pieces(pieces, 4, &ds->block);
    if (st != SEGMAMBA_OK) {
        free(ds);
        return st;
    }
    *out = ds;
    return SEGMAMBA_OK;
}

void sm_cuda_se_free(sm_cuda_se *se)
{
    if (!se) return;
    cudaFree(se->block);
    free(se);
}

sm_status sm_cuda_se_forward(sm_cuda_ctx *ctx, const sm_cuda_se *se, const float *x, int x_ld,
                             float *out, int out_ld, int64_t n)
{
    const int c = se->c, hid = se->hidden;
    if (n < 1) return sm_fail(SEGMAMBA_E_ARG, "CUDA squeeze-excitation: empty volume");
    if (x_ld < c || out_ld < c)
        return sm_fail(SEGMAMBA_E_ARG,
                       "CUDA squeeze-excitation: strides %d and %d for %d "
                       "channels",
                       x_ld, out_ld, c);
    /* The mean as the instance norm's (partial sums in double), then the
     * two Linear layers, then the gate on every voxel. */
    const int groups = (int)(n / 1024 < 1 ? 1 : n / 1024 > 1024 ? 1024 : n / 1024);
    float *wk;
    SM_TRY(sm_cuda_work(ctx, 2 * ((size_t)groups * c + (size_t)c) + (size_t)hid + (size_t)c, &wk));
    double *partial = (double *)wk, *mean = partial + (size_t)groups * c;
    float *hidden = (float *)(mean + c), *gate = hidden + hid;
    cudaStream_t s = ctx->stream;
    CU_TRY(sm_cuk_channel_partials(s, x, x_ld, n, c, NULL, groups, partial), "squeeze-excitation");
    CU_TRY(sm_cuk_channel_mean(s, partial, groups, c, n, mean), "squeeze-excitation");
    CU_TRY(sm_cuk_se_hidden(s, mean, c, hid, se->fc1_w, se->fc1_b, hidden), "squeeze-excitation");
    CU_TRY(sm_cuk_se_gate(s, hidden, c, hid, se->fc2_w, se->fc2_b, gate), "squeeze-excitation");
    CU_TRY(sm_cuk_scale_channels(s, x, x_ld, out, out_ld, n, c, gate), "squeeze-excitation");
    return SEGMAMBA_OK;
}
