/* The SegMamba network: its configuration inferred from a checkpoint's
 * tensor shapes, the full list of tensors that configuration implies (the
 * weight-name map of the official PyTorch code), and the graph builder. */
#ifndef SM_SEGMAMBA_MODEL_H
#define SM_SEGMAMBA_MODEL_H

#include "engine/conv.h"
#include "engine/graph.h"
#include "segmamba.h"
#include "io/weights.h"

/* The names of a family ("SegMamba v1", "SegMamba-V2") and of a Mamba type
 * ("v3", "v2", "none"); "unknown" outside the enums. The one place they are
 * spelled: segmamba_get_config_names gives them to every client. */
const char *sm_family_name(int family);
const char *sm_mamba_type_name(int mamba_type);

/* Fills cfg from tensor shapes (nslices and fue are left as they are), and
 * the family and Mamba type from the tensors present: the directions whose
 * tensors the first Mamba layer has (_b and _s v3, _b v2, neither none). */
sm_status sm_segmamba_infer_config(const sm_weights *w, segmamba_config *cfg);

/* Checks that w holds exactly the tensors cfg implies, each with its shape
 * (every Mamba layer with the directions of cfg's Mamba type); the error
 * names the tensor and both shapes. Sets cfg->n_params. */
sm_status sm_segmamba_check_weights(const sm_weights *w, segmamba_config *cfg);

/* Checks an input of sides d, h, w against cfg (multiples of 16; nslices
 * with the v3 Mamba). */
sm_status sm_segmamba_check_shape(const segmamba_config *cfg, int d, int h, int w);

/* Builds the graph: convolutions on conv, except those that wino puts on
 * the Winograd backend (sm_conv_winograd_pick, with wino_tile), which run
 * on kernel table k (the model's). Convolution weights are
 * copied into the backend's layout and released from w (so that they are
 * held once); the Mamba layers borrow theirs from w, which must outlive g. */
sm_status sm_segmamba_build(sm_weights *w, const segmamba_config *cfg, const sm_kernels *k,
                            sm_conv_kind conv, sm_wino_use wino, int wino_tile, sm_graph **out);

#endif
