/* The model card (spec section 5): what a checkpoint needs beyond its
 * weights to turn images into a segmentation. It names the input channels
 * and how each is normalized, the spacing and patch the network was trained
 * at, the Mamba slice counts and FUE switch, and how the outputs become
 * labels.
 *
 * JSON form (every key optional; an absent key keeps its default, an unknown
 * key is an error so that a typo cannot pass silently):
 *
 *   {"channels": [{"name": "t2w", "normalization": "zscore"},
 *                 {"name": "ct", "normalization": "ct", "clip_lo": -1000,
 *                  "clip_hi": 1000, "mean": 80.5, "std": 120.1}, ...],
 *    "spacing": [z, y, x],            mm along (D, H, W)
 *    "patch": [d, h, w],              sliding-window roi, multiples of 16
 *    "nslices": [a, b, c, d],
 *    "fue": false,
 *    "labels": ["background", ...],   names of the label values 0, 1, ...
 *    "output": "argmax" | "regions"}
 *
 * "argmax": the model has one logit per label, softmax then argmax.
 * "regions": the model has 3 sigmoid outputs, BraTS TC, WT, ET in that order
 * (the official training's convert_labels order); a region is present where
 * its logit is > 0 and the label map is ET -> 3, else TC -> 1, else WT -> 2,
 * else 0 (labels must then name 4 values).
 *
 * Where a card is found (segmamba_card_for_model), first match wins:
 *   1. a .safetensors file's __metadata__["card"] (this JSON as a string);
 *   2. a side file next to the checkpoint: "model.pt" -> "model.card.json"
 *      (the checkpoint's name with its extension replaced by .card.json);
 *   3. the official BraTS 2023 defaults, with nslices and fue taken from
 *      __metadata__["config"] when the safetensors file has one (the test
 *      case generator writes it). */
#ifndef SM_CARD_H
#define SM_CARD_H

#include <stddef.h>

#include "core/error.h"
#include "segmamba_pipeline.h"

/* segmamba_card and its functions are segmamba_pipeline.h's. */

/* The output channels the model must have for this card. */
int sm_card_out_chans(const segmamba_card *card);

#endif
