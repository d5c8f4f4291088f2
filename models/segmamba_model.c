#include "segmamba_model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the tensor list a configuration implies ---------------------------- */

/* Names are composed here from fixed prefixes and small integers. */
#define NAME_CAP 96

typedef struct expected {
    char name[NAME_CAP];
    int ndim;
    int64_t shape[5];
} expected;

typedef struct expected_list {
    expected *items;
    int count, cap;
    int failed;
} expected_list;

static void expect(expected_list *l, int ndim, const int64_t *shape, const char *fmt, ...)
{
    if (l->failed) return;
    if (l->count == l->cap) {
        int cap = l->cap ? l->cap * 2 : 256;
        expected *p = realloc(l->items, (size_t)cap * sizeof *p);
        if (!p) {
            l->failed = 1;
            return;
        }
        l->items = p;
        l->cap = cap;
    }
    expected *e = &l->items[l->count++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->name, NAME_CAP, fmt, ap);
    va_end(ap);
    e->ndim = ndim;
    memcpy(e->shape, shape, (size_t)ndim * sizeof *shape);
}

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define NDIM(...) ((int)(sizeof(SHAPE(__VA_ARGS__)) / sizeof(int64_t)))
#define EXPECT(l, dims, ...) expect(l, NDIM dims, SHAPE dims, __VA_ARGS__)

static void expect_conv(expected_list *l, int cout, int cin, int k, int bias, const char *prefix)
{
    EXPECT(l, (cout, cin, k, k, k), "%s.weight", prefix);
    if (bias) EXPECT(l, (cout), "%s.bias", prefix);
}

/* MONAI UnetResBlock: bias-free convolutions, parameter-free norms. */
static void expect_resblock(expected_list *l, const char *prefix, int cin, int cout)
{
    char p[NAME_CAP];
    snprintf(p, sizeof p, "%s.conv1.conv", prefix);
    expect_conv(l, cout, cin, 3, 0, p);
    snprintf(p, sizeof p, "%s.conv2.conv", prefix);
    expect_conv(l, cout, cout, 3, 0, p);
    if (cin != cout) {
        snprintf(p, sizeof p, "%s.conv3.conv", prefix);
        expect_conv(l, cout, cin, 1, 0, p);
    }
}

static const char *const dir_suffix[SM_DIRECTIONS] = {"", "_b", "_s"};

/* The directions of each Mamba type (the first n of dir_suffix). */
static int type_directions(int mamba_type)
{
    return mamba_type == SEGMAMBA_MAMBA_NONE ? 1 : mamba_type == SEGMAMBA_MAMBA_V2 ? 2 : 3;
}

const char *sm_family_name(int family)
{
    return family == SEGMAMBA_FAMILY_V1   ? "SegMamba v1"
           : family == SEGMAMBA_FAMILY_V2 ? "SegMamba-V2"
                                          : "unknown";
}

const char *sm_mamba_type_name(int mamba_type)
{
    return mamba_type == SEGMAMBA_MAMBA_V3     ? "v3"
           : mamba_type == SEGMAMBA_MAMBA_V2   ? "v2"
           : mamba_type == SEGMAMBA_MAMBA_NONE ? "none"
                                               : "unknown";
}

/* The layer whose tensors say the Mamba type: the first layer of the first
 * stage that has any (stage 0 in every released model); -1 if none has. */
static int type_stage(const segmamba_config *cfg)
{
    for (int i = 0; i < SEGMAMBA_STAGES; i++)
        if (cfg->depths[i] > 0) return i;
    return -1;
}

static void expect_mamba(expected_list *l, const segmamba_config *cfg, int i, int j)
{
    const int64_t C = cfg->feat[i], di = (int64_t)cfg->expand * C, N = cfg->d_state,
                  R = cfg->dt_rank[i], K = cfg->d_conv;
    EXPECT(l, (C), "vit.stages.%d.%d.norm.weight", i, j);
    EXPECT(l, (C), "vit.stages.%d.%d.norm.bias", i, j);
    EXPECT(l, (2 * di, C), "vit.stages.%d.%d.mamba.in_proj.weight", i, j);
    for (int s = 0; s < type_directions(cfg->mamba_type); s++) {
        const char *x = dir_suffix[s];
        EXPECT(l, (di, 1, K), "vit.stages.%d.%d.mamba.conv1d%s.weight", i, j, x);
        EXPECT(l, (di), "vit.stages.%d.%d.mamba.conv1d%s.bias", i, j, x);
        EXPECT(l, (R + 2 * N, di), "vit.stages.%d.%d.mamba.x_proj%s.weight", i, j, x);
        EXPECT(l, (di, R), "vit.stages.%d.%d.mamba.dt_proj%s.weight", i, j, x);
        EXPECT(l, (di), "vit.stages.%d.%d.mamba.dt_proj%s.bias", i, j, x);
        EXPECT(l, (di, N), "vit.stages.%d.%d.mamba.A%s_log", i, j, x);
        EXPECT(l, (di), "vit.stages.%d.%d.mamba.D%s", i, j, x);
    }
    EXPECT(l, (C, di), "vit.stages.%d.%d.mamba.out_proj.weight", i, j);
}

static void down_name(char *buf, size_t cap, int i)
{
    if (i == 0)
        snprintf(buf, cap, "vit.downsample_layers.0.0");
    else
        snprintf(buf, cap, "vit.downsample_layers.%d.1", i);
}

/* SegMamba-V2's squeeze-excitation width: c/8 in the official code. */
static int se_hidden(int c) { return c / 8; }

/* SegMamba-V2's LargeKernelConv block vit.gscs.i.j (spec 7.2). */
static const struct {
    const char *path;
    int k, pad, dil;
} lkc_convs[5] = {{"deep_path.0", 5, 2, 1}, {"deep_path.1", 3, 1, 1}, {"deep_path.2", 3, 2, 2},
                  {"shortcut_path.0", 3, 1, 1}, {"shortcut_path.1", 1, 0, 1}};

/* SegMamba-V2's encoder: down_i k3 s2, LargeKernelConv blocks, V2 Mamba
 * layers on stages 2 and 3 (one direction), skip heads. */
static void expect_encoder_v2(expected_list *l, const segmamba_config *cfg)
{
    const int *f = cfg->feat;
    char p[NAME_CAP];
    for (int i = 0; i < SEGMAMBA_STAGES; i++) {
        snprintf(p, sizeof p, "vit.downsample_layers.%d.0", i);
        expect_conv(l, f[i], i == 0 ? f[0] : f[i - 1], 3, 1, p);
        for (int j = 0; j < cfg->depths[i]; j++) {
            for (int k = 0; k < 5; k++) {
                snprintf(p, sizeof p, "vit.gscs.%d.%d.%s.block.0", i, j, lkc_convs[k].path);
                expect_conv(l, f[i], f[i], lkc_convs[k].k, 1, p);
            }
            const int64_t hid = se_hidden(f[i]);
            EXPECT(l, (hid, f[i]), "vit.gscs.%d.%d.se.fc.0.weight", i, j);
            EXPECT(l, (hid), "vit.gscs.%d.%d.se.fc.0.bias", i, j);
            EXPECT(l, (f[i], hid), "vit.gscs.%d.%d.se.fc.2.weight", i, j);
            EXPECT(l, (f[i]), "vit.gscs.%d.%d.se.fc.2.bias", i, j);
        }
        if (i >= 2)
            for (int j = 0; j < cfg->depths[i]; j++) expect_mamba(l, cfg, i, j);
        snprintf(p, sizeof p, "vit.mlps.%d.fc1", i);
        expect_conv(l, 2 * f[i], f[i], 1, 1, p);
        snprintf(p, sizeof p, "vit.mlps.%d.fc2", i);
        expect_conv(l, f[i], 2 * f[i], 1, 1, p);
    }
}

static void expect_all(expected_list *l, const segmamba_config *cfg)
{
    const int *f = cfg->feat;
    char p[NAME_CAP];
    for (int i = 0; i < SEGMAMBA_STAGES && cfg->family == SEGMAMBA_FAMILY_V1; i++) {
        down_name(p, sizeof p, i);
        if (i == 0)
            expect_conv(l, f[0], cfg->in_chans, 7, 1, p);
        else
            expect_conv(l, f[i], f[i - 1], 2, 1, p);
        static const char *const gsc_names[4] = {"proj", "proj2", "proj3", "proj4"};
        for (int k = 0; k < 4; k++) {
            snprintf(p, sizeof p, "vit.gscs.%d.%s", i, gsc_names[k]);
            expect_conv(l, f[i], f[i], k < 2 ? 3 : 1, 1, p);
        }
        for (int j = 0; j < cfg->depths[i]; j++) expect_mamba(l, cfg, i, j);
        snprintf(p, sizeof p, "vit.mlps.%d.fc1", i);
        expect_conv(l, 2 * f[i], f[i], 1, 1, p);
        snprintf(p, sizeof p, "vit.mlps.%d.fc2", i);
        expect_conv(l, f[i], 2 * f[i], 1, 1, p);
    }
    if (cfg->family == SEGMAMBA_FAMILY_V2) expect_encoder_v2(l, cfg);
    expect_resblock(l, "encoder1.layer", cfg->in_chans, f[0]);
    for (int i = 1; i < 4; i++) {
        snprintf(p, sizeof p, "encoder%d.layer", i + 1);
        expect_resblock(l, p, f[i - 1], f[i]);
    }
    expect_resblock(l, "encoder5.layer", f[3], cfg->hidden);
    for (int k = 5; k >= 2; k--) {
        const int cin = k == 5 ? cfg->hidden : f[k - 1], cout = f[k - 2];
        EXPECT(l, (cin, cout, 2, 2, 2), "decoder%d.transp_conv.conv.weight", k);
        snprintf(p, sizeof p, "decoder%d.conv_block", k);
        expect_resblock(l, p, 2 * cout, cout);
    }
    expect_resblock(l, "decoder1.layer", f[0], f[0]);
    expect_conv(l, cfg->out_chans, f[0], 1, 1, "out.conv.conv");
}

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
    static const char *const parts[] = {"conv1d%s.weight", "conv1d%s.bias", "x_proj%s.weight",
                                        "dt_proj%s.weight", "dt_proj%s.bias", "A%s_log", "D%s"};
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
             positive_int(cfg->hidden) && positive_int(cfg->d_state) &&
             positive_int(cfg->d_conv);
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

/* Whether name is a Mamba layer's tensor. */
static int is_mamba_tensor(const char *name)
{
    return strncmp(name, "vit.stages.", 11) == 0 && strstr(name, ".mamba.") != NULL;
}

static int is_v2(const segmamba_config *cfg) { return cfg->family == SEGMAMBA_FAMILY_V2; }

/* What a Mamba tensor that is missing or unexpected goes against. */
static void type_note(const segmamba_config *cfg, char *buf, size_t cap)
{
    static const char *const dirs[SM_DIRECTIONS] = {"forward", "forward and backward (_b)",
                                                    "forward, backward (_b) and slice (_s)"};
    if (type_stage(cfg) < 0) {
        snprintf(buf, cap, ": the checkpoint has no Mamba layer (no vit.stages.i.j.norm.weight)");
        return;
    }
    snprintf(buf, cap,
             ": the Mamba type is %s, from the directions layer vit.stages.%d.0 has tensors "
             "of (%s), and every layer needs all the tensors of those directions and no others",
             sm_mamba_type_name(cfg->mamba_type), type_stage(cfg),
             dirs[type_directions(cfg->mamba_type) - 1]);
}

sm_status sm_segmamba_check_weights(const sm_weights *w, segmamba_config *cfg)
{
    expected_list l = {0};
    expect_all(&l, cfg);
    if (l.failed) {
        free(l.items);
        return sm_fail(SEGMAMBA_E_NOMEM, "out of memory listing the model's tensors");
    }
    sm_status st = SEGMAMBA_OK;
    int64_t params = 0;
    for (int i = 0; i < l.count && st == SEGMAMBA_OK; i++) {
        const expected *x = &l.items[i];
        const sm_tensor_entry *e = sm_weights_find(w, x->name);
        char want[128], got[128], note[256] = "";
        sm_shape_str(want, sizeof want, x->ndim, x->shape);
        if (!e) {
            if (is_v2(cfg))
                snprintf(note, sizeof note, " (SegMamba-V2, recognised by "
                         "vit.gscs.0.0.deep_path.0.block.0.weight)");
            else if (is_mamba_tensor(x->name))
                type_note(cfg, note, sizeof note);
            st = sm_fail(SEGMAMBA_E_MODEL, "tensor '%s' %s is missing from the checkpoint%s",
                         x->name, want, note);
            break;
        }
        int same = e->ndim == x->ndim;
        for (int k = 0; same && k < x->ndim; k++) same = e->shape[k] == x->shape[k];
        if (!same) {
            sm_shape_str(got, sizeof got, e->ndim, e->shape);
            st = sm_fail(SEGMAMBA_E_MODEL, "tensor '%s' has shape %s, expected %s", x->name, got,
                         want);
        }
        params += e->numel;
    }
    /* Every expected tensor was found once, so a count mismatch means extras. */
    if (st == SEGMAMBA_OK && (size_t)l.count != w->count) {
        for (size_t k = 0; k < w->count; k++) {
            int known = 0;
            for (int i = 0; i < l.count && !known; i++)
                known = strcmp(l.items[i].name, w->items[k].name) == 0;
            if (!known) {
                char got[128];
                sm_shape_str(got, sizeof got, w->items[k].ndim, w->items[k].shape);
                if (is_v2(cfg)) {
                    st = sm_fail(SEGMAMBA_E_MODEL,
                                 "unexpected tensor '%s' %s in the checkpoint (not part of "
                                 "SegMamba-V2, recognised by "
                                 "vit.gscs.0.0.deep_path.0.block.0.weight, with the "
                                 "configuration its shapes imply)",
                                 w->items[k].name, got);
                } else if (is_mamba_tensor(w->items[k].name)) {
                    char note[256];
                    type_note(cfg, note, sizeof note);
                    st = sm_fail(SEGMAMBA_E_MODEL, "unexpected tensor '%s' %s in the checkpoint%s",
                                 w->items[k].name, got, note);
                } else {
                    st = sm_fail(SEGMAMBA_E_MODEL,
                                 "unexpected tensor '%s' %s in the checkpoint (not part of "
                                 "SegMamba with the configuration its shapes imply)",
                                 w->items[k].name, got);
                }
                break;
            }
        }
    }
    free(l.items);
    if (st == SEGMAMBA_OK) cfg->n_params = params;
    return st;
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

/* ---- the graph ----------------------------------------------------------- */

typedef struct builder {
    sm_graph *g;
    sm_weights *w;
    const segmamba_config *cfg;
    const sm_kernels *kernels;
    sm_conv_kind kind;
    sm_wino_use wino;
    int wino_tile;
} builder;

static const float *tensor(builder *b, const char *fmt, ...) SM_PRINTF(2, 3);

/* Looks up a tensor already validated by sm_segmamba_check_weights. */
static const float *tensor(builder *b, const char *fmt, ...)
{
    char name[NAME_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const sm_tensor_entry *e = sm_weights_find(b->w, name);
    if (!e && b->g->status == SEGMAMBA_OK)
        b->g->status = sm_fail(SEGMAMBA_E_MODEL, "tensor '%s' is missing", name);
    return e ? e->data : NULL;
}

static void release(builder *b, const char *fmt, ...) SM_PRINTF(2, 3);

/* Frees a tensor the graph holds its own copy of. */
static void release(builder *b, const char *fmt, ...)
{
    char name[NAME_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    sm_weights_release(b->w, name);
}

/* A convolution node of opcode op (SM_OP_CONV, or SM_OP_POINTWISE for a
 * 1x1x1 one): out = act(conv(x)), a new tensor unless out >= 0 is given. */
static int conv_op(builder *b, sm_opcode op, int x, int out, int cout, int k, int stride, int pad,
                   int dil, int bias, sm_act act, const char *prefix)
{
    sm_graph *g = b->g;
    if (g->status != SEGMAMBA_OK) return -1;
    const float *wt = tensor(b, "%s.weight", prefix);
    const float *bs = bias ? tensor(b, "%s.bias", prefix) : NULL;
    if (g->status != SEGMAMBA_OK) return -1;
    sm_conv_params p = {.cin = sm_graph_channels(g, x), .cout = cout, .k = k,
                        .stride = stride, .pad = pad, .act = act,
                        .precision = b->cfg->bf16 ? SM_PREC_BF16 : SM_PREC_F32,
                        .kernels = b->kernels, .dilation = dil};
    const sm_conv_choice use = sm_conv_pick(&p, b->wino, b->kind, b->wino_tile);
    p.tile = use.tile;
    sm_conv *c = NULL;
    sm_status st = sm_conv_create(use.kind, &p, wt, bs, &c);
    if (st != SEGMAMBA_OK) {
        g->status = sm_fail_wrap(st, "%s", prefix);
        return -1;
    }
    release(b, "%s.weight", prefix);
    if (bias) release(b, "%s.bias", prefix);
    if (out < 0) out = sm_graph_tensor(g, cout, sm_graph_level(g, x) + (stride == 2 ? 1 : 0));
    sm_graph_node(g, op, x, -1, out, SM_ACT_NONE, c, 0);
    sm_graph_set_flops(g, 2.0 * k * k * k * p.cin * cout / ((double)stride * stride * stride));
    return out;
}

static int conv(builder *b, int x, int out, int cout, int k, int stride, int pad, int bias,
                sm_act act, const char *prefix)
{
    return conv_op(b, SM_OP_CONV, x, out, cout, k, stride, pad, 0, bias, act, prefix);
}

static int inorm(builder *b, int x, int out, sm_act act)
{
    if (out < 0) out = sm_graph_tensor(b->g, sm_graph_channels(b->g, x), sm_graph_level(b->g, x));
    sm_graph_node(b->g, SM_OP_INORM, x, -1, out, act, NULL, 0);
    return out;
}

static int add(builder *b, int x, int y, int out, sm_act act)
{
    if (out < 0) out = sm_graph_tensor(b->g, sm_graph_channels(b->g, x), sm_graph_level(b->g, x));
    sm_graph_node(b->g, SM_OP_ADD, x, y, out, act, NULL, 0);
    return out;
}

static int conv_same(builder *b, sm_opcode op, int x, int out, int cout, int k, int bias,
                     const char *fmt, va_list ap) SM_PRINTF(8, 0);

/* conv(x) for a stride-1 "same" convolution named by fmt, into out (a new
 * tensor if < 0). */
static int conv_same(builder *b, sm_opcode op, int x, int out, int cout, int k, int bias,
                     const char *fmt, va_list ap)
{
    char p[NAME_CAP];
    vsnprintf(p, sizeof p, fmt, ap);
    return conv_op(b, op, x, out, cout, k, 1, k / 2, 0, bias, SM_ACT_NONE, p);
}

static int conv_norm(builder *b, int x, int out, int cout, int k, int bias, sm_act act,
                     const char *fmt, ...) SM_PRINTF(8, 9);

/* act(IN(conv(x))), the norm in place on the convolution's output. */
static int conv_norm(builder *b, int x, int out, int cout, int k, int bias, sm_act act,
                     const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int y = conv_same(b, SM_OP_CONV, x, out, cout, k, bias, fmt, ap);
    va_end(ap);
    return inorm(b, y, y, act);
}

static int conv_plain(builder *b, sm_opcode op, int x, int out, int cout, int k, const char *fmt,
                      ...) SM_PRINTF(7, 8);

/* conv(x) without bias, its norm left to the node that consumes it. */
static int conv_plain(builder *b, sm_opcode op, int x, int out, int cout, int k, const char *fmt,
                      ...)
{
    va_list ap;
    va_start(ap, fmt);
    int y = conv_same(b, op, x, out, cout, k, 0, fmt, ap);
    va_end(ap);
    return y;
}

/* Where a residual block puts its tensors: values of the block's output
 * channels at its level, or -1 for fresh ones; out -1 writes the result
 * over a2. The full-resolution blocks are what set the peak memory, and
 * they run in memory their neighbours have finished with. */
typedef struct block_slots {
    int a1, a2; /* conv1's and conv2's outputs (dense: a convolution's) */
    int r;      /* the residual projection (any stride) */
    int out;
} block_slots;

static const block_slots FRESH = {-1, -1, -1, -1};

static int same_buffer(const sm_graph *g, int u, int v)
{
    return u >= 0 && v >= 0 && g->values[u].buf == g->values[v].buf;
}

/* MONAI UnetResBlock: lrelu(IN(conv2(a)) + r), r = IN(conv3(x)) when the
 * channels change, else x. The tail (both norms, the sum, the activation)
 * is one fused node: on the full-resolution blocks each separate pass over
 * the tensor costs as much as the norm itself. */
static int resblock(builder *b, const char *prefix, int x, int cout, block_slots s)
{
    sm_graph *g = b->g;
    int a = conv_norm(b, x, s.a1, cout, 3, 0, SM_ACT_LRELU, "%s.conv1.conv", prefix);
    const int down = sm_graph_channels(g, x) != cout;
    /* A projection that overwrites x runs before conv2, whose output may
     * take the rest of x's memory; any other runs after it, so that its
     * slot is live as briefly as can be. */
    const int r_over_x = down && same_buffer(g, s.r, x);
    int r = x;
    if (r_over_x) r = conv_plain(b, SM_OP_POINTWISE, x, s.r, cout, 1, "%s.conv3.conv", prefix);
    a = conv_plain(b, SM_OP_CONV, a, s.a2, cout, 3, "%s.conv2.conv", prefix);
    if (down && !r_over_x)
        r = conv_plain(b, s.r >= 0 ? SM_OP_POINTWISE : SM_OP_CONV, x, s.r, cout, 1,
                       "%s.conv3.conv", prefix);
    /* The result may overwrite a, whose last use it is. */
    const int out = s.out >= 0 ? s.out : a;
    sm_graph_node(g, down ? SM_OP_INORM_ADD_INORM : SM_OP_INORM_ADD, a, r, out, SM_ACT_LRELU, NULL,
                  0);
    return out;
}

/* Whether a 3x3x3 convolution of cin -> cout channels (a ResBlock's,
 * bias-free) goes to the Winograd backend. */
static int runs_winograd(const builder *b, int cin, int cout)
{
    const sm_conv_params p = {.cin = cin, .cout = cout, .k = 3, .stride = 1, .pad = 1,
                              .precision = b->cfg->bf16 ? SM_PREC_BF16 : SM_PREC_F32};
    return sm_conv_pick(&p, b->wino, b->kind, b->wino_tile).kind == SM_CONV_WINOGRAD;
}

/* Where an encoder ResBlock on x writes the skip of cat, into cat's
 * second half (skip). The first half of cat is free until the up block's
 * transposed convolution. Winograd convolutions read and write such
 * strided views directly (oneDNN would copy through full-size
 * temporaries), so with them the whole block runs inside cat: conv1 into
 * the first half, conv2 into the second, the projection into the first
 * once conv2 has read conv1's output. Otherwise encoder1 (full resolution,
 * where the peak memory is) still puts its projection in the first half;
 * the others take fresh tensors. */
static block_slots skip_slots(builder *b, int x, int cat, int skip, int first_level)
{
    sm_graph *g = b->g;
    if (g->status != SEGMAMBA_OK) return FRESH;
    const int cout = sm_graph_channels(g, skip);
    block_slots s = {.a1 = -1, .a2 = -1, .r = -1, .out = skip};
    const int inside = runs_winograd(b, sm_graph_channels(g, x), cout) &&
                       runs_winograd(b, cout, cout);
    if (inside || first_level) s.r = sm_graph_slice(g, cat, 0, cout);
    if (inside) {
        s.a1 = s.r;
        s.a2 = skip;
    }
    return s;
}

/* Gated spatial convolution; the released code adds the two branches. */
static int gsc(builder *b, int i, int x)
{
    const int C = sm_graph_channels(b->g, x);
    int x1 = conv_norm(b, x, -1, C, 3, 1, SM_ACT_RELU, "vit.gscs.%d.proj", i);
    x1 = conv_norm(b, x1, -1, C, 3, 1, SM_ACT_RELU, "vit.gscs.%d.proj2", i);
    int x2 = conv_norm(b, x, -1, C, 1, 1, SM_ACT_RELU, "vit.gscs.%d.proj3", i);
    add(b, x1, x2, x1, SM_ACT_NONE);
    int o = conv_norm(b, x1, -1, C, 1, 1, SM_ACT_RELU, "vit.gscs.%d.proj4", i);
    return add(b, o, x, o, SM_ACT_NONE);
}

/* SegMamba-V2's CB(k, p, dil) at vit.gscs.i.j.<path>: ReLU(IN(conv + bias)). */
static int conv_block_v2(builder *b, int x, int i, int j, int which)
{
    char p[NAME_CAP];
    snprintf(p, sizeof p, "vit.gscs.%d.%d.%s.block.0", i, j, lkc_convs[which].path);
    const int C = sm_graph_channels(b->g, x);
    int y = conv_op(b, SM_OP_CONV, x, -1, C, lkc_convs[which].k, 1, lkc_convs[which].pad,
                    lkc_convs[which].dil, 1, SM_ACT_NONE, p);
    if (y < 0) return -1;
    return inorm(b, y, y, SM_ACT_RELU);
}

/* SegMamba-V2's LargeKernelConv block vit.gscs.i.j: s = deep + short + x,
 * then the squeeze-excitation gate, in place on s. */
static int large_kernel_block(builder *b, int i, int j, int x)
{
    sm_graph *g = b->g;
    int d = conv_block_v2(b, x, i, j, 0);
    d = conv_block_v2(b, d, i, j, 1);
    d = conv_block_v2(b, d, i, j, 2);
    int s = conv_block_v2(b, x, i, j, 3);
    s = conv_block_v2(b, s, i, j, 4);
    if (g->status != SEGMAMBA_OK) return -1;
    add(b, d, s, d, SM_ACT_NONE);
    add(b, d, x, d, SM_ACT_NONE);
    const int C = sm_graph_channels(g, x), hid = se_hidden(C);
    const float *w1 = tensor(b, "vit.gscs.%d.%d.se.fc.0.weight", i, j),
                *b1 = tensor(b, "vit.gscs.%d.%d.se.fc.0.bias", i, j),
                *w2 = tensor(b, "vit.gscs.%d.%d.se.fc.2.weight", i, j),
                *b2 = tensor(b, "vit.gscs.%d.%d.se.fc.2.bias", i, j);
    if (g->status != SEGMAMBA_OK) return -1;
    sm_se *se = NULL;
    sm_status st = sm_se_create(C, hid, w1, b1, w2, b2, &se);
    if (st != SEGMAMBA_OK) {
        g->status = sm_fail_wrap(st, "vit.gscs.%d.%d.se", i, j);
        return -1;
    }
    sm_graph_node(g, SM_OP_SE, d, -1, d, SM_ACT_NONE, se, 0);
    sm_graph_set_flops(g, 2.0 * C);
    return d;
}

static void mamba_layer(builder *b, int i, int j, int x)
{
    sm_graph *g = b->g;
    if (g->status != SEGMAMBA_OK) return;
    const segmamba_config *cfg = b->cfg;
    const char *pre = "vit.stages";
    const int n_dir = type_directions(cfg->mamba_type);
    sm_mamba_weights w = {
        .n_dir = n_dir,
        .orderings = is_v2(cfg) ? SM_V2_ORDERINGS : 1,
        .norm_w = tensor(b, "%s.%d.%d.norm.weight", pre, i, j),
        .norm_b = tensor(b, "%s.%d.%d.norm.bias", pre, i, j),
        .in_proj = tensor(b, "%s.%d.%d.mamba.in_proj.weight", pre, i, j),
        .out_proj = tensor(b, "%s.%d.%d.mamba.out_proj.weight", pre, i, j)};
    for (int s = 0; s < n_dir; s++) {
        const char *x = dir_suffix[s];
        w.dir[s].conv_w = tensor(b, "%s.%d.%d.mamba.conv1d%s.weight", pre, i, j, x);
        w.dir[s].conv_b = tensor(b, "%s.%d.%d.mamba.conv1d%s.bias", pre, i, j, x);
        w.dir[s].x_proj = tensor(b, "%s.%d.%d.mamba.x_proj%s.weight", pre, i, j, x);
        w.dir[s].dt_proj = tensor(b, "%s.%d.%d.mamba.dt_proj%s.weight", pre, i, j, x);
        w.dir[s].dt_bias = tensor(b, "%s.%d.%d.mamba.dt_proj%s.bias", pre, i, j, x);
        w.dir[s].A_log = tensor(b, "%s.%d.%d.mamba.A%s_log", pre, i, j, x);
        w.dir[s].D = tensor(b, "%s.%d.%d.mamba.D%s", pre, i, j, x);
    }
    if (g->status != SEGMAMBA_OK) return;
    sm_mamba *m = NULL;
    sm_status st = sm_mamba_create(cfg->feat[i], cfg->expand * cfg->feat[i], cfg->d_state,
                                   cfg->dt_rank[i], cfg->d_conv, &w, &m);
    if (st != SEGMAMBA_OK) {
        g->status = sm_fail_wrap(st, "Mamba layer %d.%d", i, j);
        return;
    }
    /* The layer holds its own copies of these. */
    for (int s = 0; s < n_dir; s++) {
        release(b, "%s.%d.%d.mamba.A%s_log", pre, i, j, dir_suffix[s]);
        release(b, "%s.%d.%d.mamba.conv1d%s.weight", pre, i, j, dir_suffix[s]);
    }
    const double flops = sm_mamba_flops_per_token(m);
    const int scratch = sm_graph_tensor(
        g, (int)sm_mamba_scratch_per_token(m, cfg->backend == SEGMAMBA_BACKEND_CUDA),
        sm_graph_level(g, x));
    /* In place: the layer reads all of x before it writes its result.
     * Without the slice direction nslices is unused (and need not divide
     * the token count). */
    sm_graph_node(g, SM_OP_MAMBA, x, scratch, x, SM_ACT_NONE, m,
                  n_dir == SM_DIRECTIONS ? cfg->nslices[i] : 1);
    sm_graph_set_flops(g, flops);
}

/* The skip feature of encoder stage i (both families): the MLP (1x1x1
 * convolutions with a GELU between) on the instance-normed stage output x,
 * and FUE when the model has it. */
static int skip_mlp(builder *b, int i, int x)
{
    const segmamba_config *cfg = b->cfg;
    char p[NAME_CAP];
    if (b->g->status != SEGMAMBA_OK) return -1;
    int n = inorm(b, x, -1, SM_ACT_NONE);
    snprintf(p, sizeof p, "vit.mlps.%d.fc1", i);
    int f1 = conv(b, n, -1, 2 * cfg->feat[i], 1, 1, 0, 1, SM_ACT_NONE, p);
    sm_graph_node(b->g, SM_OP_ACT, f1, -1, f1, SM_ACT_GELU, NULL, 0);
    snprintf(p, sizeof p, "vit.mlps.%d.fc2", i);
    int o = conv(b, f1, -1, cfg->feat[i], 1, 1, 0, 1, SM_ACT_NONE, p);
    if (cfg->fue) sm_graph_node(b->g, SM_OP_FUE, o, -1, o, SM_ACT_NONE, NULL, 0);
    return o;
}

/* Encoder stage i: returns the stage output (which continues to the next
 * stage) and stores the skip feature o_i in *skip. */
static int encoder_stage(builder *b, int i, int x, int *skip)
{
    const segmamba_config *cfg = b->cfg;
    char p[NAME_CAP];
    down_name(p, sizeof p, i);
    if (i == 0) {
        x = conv(b, x, -1, cfg->feat[0], 7, 2, 3, 1, SM_ACT_NONE, p);
    } else {
        int n = inorm(b, x, -1, SM_ACT_NONE);
        x = conv(b, n, -1, cfg->feat[i], 2, 2, 0, 1, SM_ACT_NONE, p);
    }
    x = gsc(b, i, x);
    for (int j = 0; j < cfg->depths[i]; j++) mamba_layer(b, i, j, x);
    *skip = skip_mlp(b, i, x);
    return x;
}

/* SegMamba-V2's encoder stage i (spec 7.2) on x (enc1 for stage 0). */
static int encoder_stage_v2(builder *b, int i, int x, int *skip)
{
    const segmamba_config *cfg = b->cfg;
    char p[NAME_CAP];
    snprintf(p, sizeof p, "vit.downsample_layers.%d.0", i);
    x = conv(b, x, -1, cfg->feat[i], 3, 2, 1, 1, SM_ACT_NONE, p);
    for (int j = 0; j < cfg->depths[i]; j++) x = large_kernel_block(b, i, j, x);
    if (i >= 2)
        for (int j = 0; j < cfg->depths[i]; j++) mamba_layer(b, i, j, x);
    *skip = skip_mlp(b, i, x);
    return x;
}

/* UNETR up block: the transposed convolution fills the first half of cat
 * (whose second half already holds the skip), then a ResBlock, which
 * projects cat into the first half of cat's memory and writes conv2's
 * output and its result into the second: the result is a packed value. */
static int up_block(builder *b, int k, int x, int cat)
{
    sm_graph *g = b->g;
    if (g->status != SEGMAMBA_OK) return -1;
    const int cin = sm_graph_channels(g, x), cout = sm_graph_channels(g, cat) / 2;
    sm_convt2 *t = NULL;
    const float *wt = tensor(b, "decoder%d.transp_conv.conv.weight", k);
    if (g->status != SEGMAMBA_OK) return -1;
    sm_status st = sm_convt2_create(cin, cout, wt, &t);
    if (st != SEGMAMBA_OK) {
        g->status = st;
        return -1;
    }
    release(b, "decoder%d.transp_conv.conv.weight", k);
    sm_graph_node(g, SM_OP_CONVT2, x, -1, sm_graph_slice(g, cat, 0, cout), SM_ACT_NONE, t, 0);
    sm_graph_set_flops(g, 2.0 * 8 * cin * cout);
    char p[NAME_CAP];
    snprintf(p, sizeof p, "decoder%d.conv_block", k);
    const block_slots s = {.a1 = -1, .a2 = sm_graph_packed(g, cat, cout, cout),
                           .r = sm_graph_packed(g, cat, 0, cout), .out = -1};
    return resblock(b, p, cat, cout, s);
}

sm_status sm_segmamba_build(sm_weights *w, const segmamba_config *cfg, const sm_kernels *k,
                            sm_conv_kind kind, sm_wino_use wino, int wino_tile, sm_graph **out)
{
    *out = NULL;
    sm_graph *g = sm_graph_create();
    if (!g) return sm_fail(SEGMAMBA_E_NOMEM, "out of memory building the graph");
    builder b = {.g = g, .w = w, .cfg = cfg, .kernels = k, .kind = kind, .wino = wino,
                 .wino_tile = wino_tile};
    const int *f = cfg->feat;

    int input = sm_graph_tensor(g, cfg->in_chans, 0);
    /* Each skip is written straight into the second half of the buffer its
     * up block concatenates into: cat[k] at level k-2 for decoder k. */
    int cat[4];
    for (int k = 0; k < 4; k++) cat[k] = sm_graph_tensor(g, 2 * f[k], k);
    int skip_slot[4];
    for (int k = 0; k < 4; k++) skip_slot[k] = sm_graph_slice(g, cat[k], f[k], f[k]);

    const int enc1 =
        resblock(&b, "encoder1.layer", input, f[0], skip_slots(&b, input, cat[0], skip_slot[0], 1));
    int x = input, o[4];
    if (cfg->family == SEGMAMBA_FAMILY_V2) { /* the encoder runs on enc1 */
        x = enc1;
        for (int i = 0; i < SEGMAMBA_STAGES; i++) x = encoder_stage_v2(&b, i, x, &o[i]);
    } else {
        for (int i = 0; i < SEGMAMBA_STAGES; i++) x = encoder_stage(&b, i, x, &o[i]);
    }
    char p[NAME_CAP];
    for (int i = 1; i < 4; i++) {
        snprintf(p, sizeof p, "encoder%d.layer", i + 1);
        resblock(&b, p, o[i - 1], f[i], skip_slots(&b, o[i - 1], cat[i], skip_slot[i], 0));
    }
    int h = resblock(&b, "encoder5.layer", o[3], cfg->hidden, FRESH);
    int d = h;
    for (int k = 5; k >= 2; k--) d = up_block(&b, k, d, cat[k - 2]);
    /* decoder2 left its result in the second half of cat[0]'s memory and
     * has finished with the first. */
    d = resblock(&b, "decoder1.layer", d, f[0],
                 (block_slots){.a1 = sm_graph_packed(g, cat[0], 0, f[0]), .a2 = -1, .r = -1,
                               .out = -1});
    int logits = conv(&b, d, -1, cfg->out_chans, 1, 1, 0, 1, SM_ACT_NONE, "out.conv.conv");

    sm_status st = sm_graph_finish(g, input, logits);
    if (st != SEGMAMBA_OK) {
        sm_graph_free(g);
        return st;
    }
    *out = g;
    return SEGMAMBA_OK;
}
