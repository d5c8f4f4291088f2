/* The tensors a configuration implies (the official code's state_dict
 * names and shapes, both families), the check of a checkpoint against
 * them, and the names of the families and Mamba types. */
#include "segmamba_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the tensor list a configuration implies ---------------------------- */

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

/* ---- the check against it ---------------------------------------------- */

/* Whether name is a Mamba layer's tensor. */
static int is_mamba_tensor(const char *name)
{
    return strncmp(name, "vit.stages.", 11) == 0 && strstr(name, ".mamba.") != NULL;
}

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
                snprintf(note, sizeof note,
                         " (SegMamba-V2, recognised by "
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
