/* SM_OP_SE: the squeeze-excitation gate of SegMamba-V2's LargeKernelConv
 * blocks (se.h). The mean is summed in double per thread, then the two
 * small Linear layers run once, then every voxel is scaled. */
#include "engine/se.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/parallel.h"

struct sm_se {
    int c, hidden;
    float *fc1_w, *fc1_b, *fc2_w, *fc2_b; /* one allocation, fc1_w first */
};

sm_status sm_se_create(int c, int hidden, const float *fc1_w, const float *fc1_b,
                       const float *fc2_w, const float *fc2_b, sm_se **out)
{
    *out = NULL;
    if (c < 1 || hidden < 1 || c > (1 << 20) || hidden > (1 << 20))
        return sm_fail(SEGMAMBA_E_ARG, "squeeze-excitation: %d channels, %d hidden", c, hidden);
    sm_se *se = calloc(1, sizeof *se);
    const size_t nw = (size_t)hidden * c;
    float *all = malloc((2 * nw + (size_t)hidden + (size_t)c) * sizeof *all);
    if (!se || !all) {
        free(se);
        free(all);
        return sm_fail(SEGMAMBA_E_NOMEM, "squeeze-excitation: out of memory");
    }
    se->c = c;
    se->hidden = hidden;
    se->fc1_w = all;
    se->fc2_w = all + nw;
    se->fc1_b = all + 2 * nw;
    se->fc2_b = se->fc1_b + hidden;
    memcpy(se->fc1_w, fc1_w, nw * sizeof *all);
    memcpy(se->fc2_w, fc2_w, nw * sizeof *all);
    memcpy(se->fc1_b, fc1_b, (size_t)hidden * sizeof *all);
    memcpy(se->fc2_b, fc2_b, (size_t)c * sizeof *all);
    *out = se;
    return SEGMAMBA_OK;
}

sm_status sm_se_forward(const sm_se *se, const float *x, int x_ld, float *out, int out_ld,
                        int64_t n)
{
    const int c = se->c, hid = se->hidden, nt = sm_num_threads();
    double *part = calloc((size_t)nt * c, sizeof *part);
    float *mean = malloc((size_t)(c + hid + c) * sizeof *mean);
    if (!part || !mean || n < 1) {
        free(part);
        free(mean);
        return n < 1 ? sm_fail(SEGMAMBA_E_ARG, "squeeze-excitation: empty volume")
                     : sm_fail(SEGMAMBA_E_NOMEM, "squeeze-excitation: out of memory");
    }
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int t = 0; t < nt; t++) {
        double *acc = part + (size_t)t * c;
        for (int64_t v = n * t / nt; v < n * (t + 1) / nt; v++) {
            const float *row = x + v * x_ld;
            for (int j = 0; j < c; j++) acc[j] += row[j];
        }
    }
    for (int j = 0; j < c; j++) {
        double s = 0.0;
        for (int t = 0; t < nt; t++) s += part[(size_t)t * c + j];
        mean[j] = (float)(s / (double)n);
    }
    float *hidden = mean + c, *g = hidden + hid;
    for (int i = 0; i < hid; i++) {
        float s = se->fc1_b[i];
        for (int j = 0; j < c; j++) s += se->fc1_w[(size_t)i * c + j] * mean[j];
        hidden[i] = s > 0.0f ? s : 0.0f;
    }
    for (int j = 0; j < c; j++) {
        float s = se->fc2_b[j];
        for (int i = 0; i < hid; i++) s += se->fc2_w[(size_t)j * hid + i] * hidden[i];
        g[j] = 1.0f / (1.0f + expf(-s));
    }
#pragma omp parallel for schedule(static)
    for (int64_t v = 0; v < n; v++) {
        const float *row = x + v * x_ld;
        float *o = out + v * out_ld;
        for (int j = 0; j < c; j++) o[j] = row[j] * g[j];
    }
    free(part);
    free(mean);
    return SEGMAMBA_OK;
}

sm_se_weights sm_se_get_weights(const sm_se *se)
{
    return (sm_se_weights){.c = se->c,
                           .hidden = se->hidden,
                           .fc1_w = se->fc1_w,
                           .fc1_b = se->fc1_b,
                           .fc2_w = se->fc2_w,
                           .fc2_b = se->fc2_b};
}

size_t sm_se_weight_bytes(const sm_se *se)
{
    const size_t nw = (size_t)se->hidden * (size_t)se->c;
    return (2 * nw + (size_t)se->hidden + (size_t)se->c) * sizeof(float);
}

void sm_se_free(sm_se *se)
{
    if (!se) return;
    free(se->fc1_w);
    free(se);
}
