/* Private to the SegMamba model's files (the interface is
 * segmamba_model.h): the tensor names a configuration implies and the check
 * of a checkpoint against them (segmamba_names.c), the configuration from
 * tensor shapes (segmamba_config.c) and the graph builder
 * (segmamba_graph.c). What they share: how the names are composed. */
#ifndef SM_MODELS_SEGMAMBA_INTERNAL_H
#define SM_MODELS_SEGMAMBA_INTERNAL_H

#include <stddef.h>
#include <stdio.h>

#include "segmamba_model.h"

/* Names are composed here from fixed prefixes and small integers. */
#define NAME_CAP 96

static const char *const dir_suffix[SM_DIRECTIONS] = {"", "_b", "_s"};

/* The directions of each Mamba type (the first n of dir_suffix). */
static inline int type_directions(int mamba_type)
{
    return mamba_type == SEGMAMBA_MAMBA_NONE ? 1 : mamba_type == SEGMAMBA_MAMBA_V2 ? 2 : 3;
}

/* The layer whose tensors say the Mamba type: the first layer of the first
 * stage that has any (stage 0 in every released model); -1 if none has. */
static inline int type_stage(const segmamba_config *cfg)
{
    for (int i = 0; i < SEGMAMBA_STAGES; i++)
        if (cfg->depths[i] > 0) return i;
    return -1;
}

/* v1's downsampling convolution of encoder stage i. */
static inline void down_name(char *buf, size_t cap, int i)
{
    if (i == 0)
        snprintf(buf, cap, "vit.downsample_layers.0.0");
    else
        snprintf(buf, cap, "vit.downsample_layers.%d.1", i);
}

/* SegMamba-V2's squeeze-excitation width: c/8 in the official code. */
static inline int se_hidden(int c) { return c / 8; }

/* SegMamba-V2's LargeKernelConv block vit.gscs.i.j (spec 7.2). */
static const struct {
    const char *path;
    int k, pad, dil;
} lkc_convs[5] = {{"deep_path.0", 5, 2, 1},
                  {"deep_path.1", 3, 1, 1},
                  {"deep_path.2", 3, 2, 2},
                  {"shortcut_path.0", 3, 1, 1},
                  {"shortcut_path.1", 1, 0, 1}};

static inline int is_v2(const segmamba_config *cfg) { return cfg->family == SEGMAMBA_FAMILY_V2; }

#endif
