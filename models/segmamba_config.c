/* The configuration from a checkpoint's tensor shapes (both families),
 * and the check of an input's sides against it. */
#include "segmamba_internal.h"

#include <stdio.h>
#include <string.h>

/* ---- configuration from shapes ------------------------------------------ */

static sm_status need(const sm_weights *w, const char *name, int ndim, const sm_tensor_entry **out)
{
    const sm_tensor_entry *e = sm_weights_find(w, name);
    if (!e)
        return sm_fail(SEGMAMBA_E_MODEL,
                       "not a SegMamba checkpoint: tensor '%s' is missing (%zu tensors present)",
                       name, w->count);
    if (e->ndim != ndim) {
        char s[128];
        sm_shape_str(s, sizeof s, e->ndim, e->shape);
        return sm_fail(SEGMAMBA_E_MODEL, "tensor '%s' has shape %s, expected %d dimensions", name,
                       s, ndim);
    }
    *out = e;
    return SEGMAMBA_OK;
}

static int positive_int(int64_t v) { return v > 0 && v <= (1 << 20); }

/* Whether layer i.0 has any tensor of direction s; the first one found
 * goes to name. */
static int has_direction(const sm_weights *w, int i, int s, char *name, size_t cap)
{
    static const char *const parts[] = {"conv1d%s.weight",
                                        "conv1d%s.bias",
                                        "x_proj%s.weight",
                                        "dt_proj%s.weight",
                                        "dt_proj%s.bias",
                                        "A%s_log",
                                        "D%s"};
    for (size_t k = 0; k < sizeof parts / sizeof *parts; k++) {
        char part[32];
        snprintf(part, sizeof part, parts[k], dir_suffix[s]);
        snprintf(name, cap, "vit.stages.%d.0.mamba.%s", i, part);
        if (sm_weights_find(w, name)) return 1;
    }
    return 0;
}

/* The Mamba type from the directions layer i.0 has tensors of: _b and _s
 * v3, _b only v2, neither none. A direction whose tensors are incomplete
 * is left to sm_segmamba_check_weights, which names the missing one. */
static sm_status infer_mamba_type(const sm_weights *w, int i, int *type)
{
    char b_name[NAME_CAP], s_name[NAME_CAP];
    const int b = has_direction(w, i, 1, b_name, sizeof b_name);
    const int sl = has_direction(w, i, 2, s_name, sizeof s_name);
    if (sl && !b)
        return sm_fail(SEGMAMBA_E_MODEL,
                       "tensor '%s' is a slice-direction (_s) Mamba tensor, but layer "
                       "vit.stages.%d.0 has no backward (_b) ones: no Mamba type has that "
                       "(v3: forward, _b and _s; v2: forward and _b; none: forward only)",
                       s_name, i);
    *type = sl ? SEGMAMBA_MAMBA_V3 : b ? SEGMAMBA_MAMBA_V2 : SEGMAMBA_MAMBA_NONE;
    return SEGMAMBA_OK;
}

/* Mamba settings from layer vit.stages.i.0 (present): d_state and expand
 * (the first time), dt_rank[i] and d_conv. */
static sm_status infer_mamba_dims(const sm_weights *w, int i, segmamba_config *cfg)
{
    const sm_tensor_entry *e = NULL;
    char name[NAME_CAP];
    snprintf(name, sizeof name, "vit.stages.%d.0.mamba.A_log", i);
    SM_TRY(need(w, name, 2, &e));
    const int64_t di = e->shape[0];
    if (cfg->d_state == 0) {
        cfg->d_state = (int)e->shape[1];
        cfg->expand = cfg->feat[i] > 0 ? (int)(di / cfg->feat[i]) : 0;
    }
    if (cfg->expand <= 0 || di != (int64_t)cfg->expand * cfg->feat[i])
        return sm_fail(SEGMAMBA_E_MODEL,
                       "tensor '%s' has %lld rows; expected a whole multiple of the stage's "
                       "%d channels, the same for every stage",
                       name, (long long)di, cfg->feat[i]);
    snprintf(name, sizeof name, "vit.stages.%d.0.mamba.dt_proj.weight", i);
    SM_TRY(need(w, name, 2, &e));
    cfg->dt_rank[i] = (int)e->shape[1];
    snprintf(name, sizeof name, "vit.stages.%d.0.mamba.conv1d.weight", i);
    SM_TRY(need(w, name, 3, &e));
    cfg->d_conv = (int)e->shape[2];
    return SEGMAMBA_OK;
}

/* The official Mamba defaults where the checkpoint has no Mamba layer,
 * then a check that every size is usable (SegMamba-V2's squeeze-excitation
 * needs at least 8 channels a stage). */
static sm_status finish_config(segmamba_config *cfg)
{
    const int v2 = cfg->family == SEGMAMBA_FAMILY_V2;
    if (cfg->d_state == 0) {
        cfg->d_state = 16;
        cfg->expand = 2;
        cfg->d_conv = 4;
    }
    int ok = positive_int(cfg->in_chans) && positive_int(cfg->out_chans) &&
             positive_int(cfg->hidden) && positive_int(cfg->d_state) && positive_int(cfg->d_conv);
    for (int i = 0; i < SEGMAMBA_STAGES; i++)
        ok = ok && positive_int(cfg->feat[i]) && positive_int(cfg->dt_rank[i]) &&
             (!v2 || se_hidden(cfg->feat[i]) >= 1);
    if (!ok)
        return sm_fail(SEGMAMBA_E_MODEL, v2 ? "SegMamba-V2 checkpoint: tensor shapes give an "
                                              "invalid configuration (each stage needs at least 8 "
                                              "channels)"
                                            : "checkpoint tensor shapes give an invalid "
                                              "configuration");
    return SEGMAMBA_OK;
}

/* SegMamba-V2 (spec 7.2): channels from the downsampling convolutions,
 * depths from the LargeKernelConv blocks, the Mamba settings from stages
 * 2 and 3. Every tensor is then checked against the full list. */
static sm_status infer_config_v2(const sm_weights *w, segmamba_config *cfg)
{
    const sm_tensor_entry *e = NULL;
    char name[NAME_CAP];
    cfg->family = SEGMAMBA_FAMILY_V2;
    cfg->mamba_type = SEGMAMBA_MAMBA_NONE;
    SM_TRY(need(w, "encoder1.layer.conv1.conv.weight", 5, &e));
    cfg->in_chans = (int)e->shape[1];
    for (int i = 0; i < SEGMAMBA_STAGES; i++) {
        snprintf(name, sizeof name, "vit.downsample_layers.%d.0.weight", i);
        SM_TRY(need(w, name, 5, &e));
        cfg->feat[i] = (int)e->shape[0];
        int j = 0;
        for (;; j++) {
            snprintf(name, sizeof name, "vit.gscs.%d.%d.deep_path.0.block.0.weight", i, j);
            if (!sm_weights_find(w, name)) break;
        }
        cfg->depths[i] = j;
        cfg->dt_rank[i] = (cfg->feat[i] + 15) / 16;
    }
    SM_TRY(need(w, "encoder5.layer.conv1.conv.weight", 5, &e));
    cfg->hidden = (int)e->shape[0];
    SM_TRY(need(w, "out.conv.conv.weight", 5, &e));
    cfg->out_chans = (int)e->shape[0];
    cfg->d_state = 0;
    for (int i = 2; i < SEGMAMBA_STAGES; i++)
        if (cfg->depths[i] > 0) SM_TRY(infer_mamba_dims(w, i, cfg));
    return finish_config(cfg);
}

sm_status sm_segmamba_infer_config(const sm_weights *w, segmamba_config *cfg)
{
    const sm_tensor_entry *e = NULL;
    char name[NAME_CAP];
    /* SegMamba-V2: its first LargeKernelConv block. A checkpoint that also
     * has v1's stage-0 Mamba layers is a mixture, refused by
     * sm_segmamba_check_weights naming the first of them. */
    if (sm_weights_find(w, "vit.gscs.0.0.deep_path.0.block.0.weight"))
        return infer_config_v2(w, cfg);
    SM_TRY(need(w, "vit.downsample_layers.0.0.weight", 5, &e));
    cfg->feat[0] = (int)e->shape[0];
    cfg->in_chans = (int)e->shape[1];
    for (int i = 1; i < SEGMAMBA_STAGES; i++) {
        down_name(name, sizeof name, i);
        strcat(name, ".weight");
        SM_TRY(need(w, name, 5, &e));
        cfg->feat[i] = (int)e->shape[0];
    }
    SM_TRY(need(w, "encoder5.layer.conv1.conv.weight", 5, &e));
    cfg->hidden = (int)e->shape[0];
    SM_TRY(need(w, "out.conv.conv.weight", 5, &e));
    cfg->out_chans = (int)e->shape[0];
    cfg->d_state = 0;
    for (int i = 0; i < SEGMAMBA_STAGES; i++) {
        int j = 0;
        for (;; j++) {
            snprintf(name, sizeof name, "vit.stages.%d.%d.norm.weight", i, j);
            if (!sm_weights_find(w, name)) break;
        }
        cfg->depths[i] = j;
        /* dt_rank is ceil(C/16) in the official code, but read it where present. */
        cfg->dt_rank[i] = (cfg->feat[i] + 15) / 16;
        if (j > 0) SM_TRY(infer_mamba_dims(w, i, cfg));
    }
    cfg->family = SEGMAMBA_FAMILY_V1;
    cfg->mamba_type = SEGMAMBA_MAMBA_V3;
    const int ts = type_stage(cfg);
    if (ts >= 0) SM_TRY(infer_mamba_type(w, ts, &cfg->mamba_type));
    return finish_config(cfg);
}

sm_status sm_segmamba_check_shape(const segmamba_config *cfg, int d, int h, int w)
{
    const int side[3] = {d, h, w};
    for (int k = 0; k < 3; k++)
        if (side[k] <= 0 || side[k] % 16 != 0)
            return sm_fail(SEGMAMBA_E_SHAPE,
                           "input of %dx%dx%d voxels: each side must be a positive multiple of 16 "
                           "(the encoder halves it four times)",
                           d, h, w);
    /* Only the v3 Mamba scans inter-slice. */
    for (int i = 0; i < SEGMAMBA_STAGES && cfg->mamba_type == SEGMAMBA_MAMBA_V3; i++) {
        const int64_t L = (int64_t)(d >> (i + 1)) * (h >> (i + 1)) * (w >> (i + 1));
        if (cfg->depths[i] > 0 && (cfg->nslices[i] <= 0 || L % cfg->nslices[i] != 0))
            return sm_fail(SEGMAMBA_E_SHAPE,
                           "input of %dx%dx%d voxels: stage %d has %lld tokens, not divisible by "
                           "its nslices %d (set nslices to match the input size)",
                           d, h, w, i, (long long)L, cfg->nslices[i]);
    }
    return SEGMAMBA_OK;
}
