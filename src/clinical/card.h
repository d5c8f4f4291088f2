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
 *    "output": "argmax" | "regions" | "sigmoid",
 *    "threshold": 0.5,                regions/sigmoid: on where sigmoid > threshold
 *    "regions": [{"name": "WT", "channel": 1, "label": 2}, ...],
 *    "sigmoid_labels": "masks" | "last_wins",
 *    "overlap": 0.5}                  sliding-window overlap, 0 to 0.95
 *
 * "spacing": "input" means the input's own spacing: no resampling.
 * "argmax": the model has one logit per label, softmax then argmax.
 * "regions": the model has one sigmoid output per nested region. The
 * "regions" table says, row by row in order, which model channel is the
 * region and which label it writes where it is on (sigmoid > threshold; at
 * 0.5, logit > 0); a later row overwrites an earlier one, and each row is
 * one model output (its channels are 0..rows-1, each once). Without
 * "regions", BraTS: outputs TC, WT, ET (the official training's
 * convert_labels order), table [WT ch1 -> 2, TC ch0 -> 1, ET ch2 -> 3], that
 * is ET -> 3, else TC -> 1, else WT -> 2, else 0 (labels must name 4 values).
 * "sigmoid": one sigmoid per structure, labels[c + 1] naming model channel c
 * (so n_labels - 1 outputs). One output gives labels 0/1. Several give
 * overlapping masks (segmamba_prediction.masks; `segmamba predict -o` writes
 * a 4D uint8 image, one volume per channel) unless the card says how to make
 * a label map: "sigmoid_labels": "last_wins" (channel c writes label c + 1, a
 * later channel overwriting) or a "regions" table (any order, any subset).
 * Mirror TTA and the Gaussian window average the logits before the sigmoid.
 * "threshold" and "regions" are refused with "argmax", "sigmoid_labels"
 * with anything but "sigmoid".
 *
 * Where a card is found (segmamba_card_find), first match wins:
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

/* "argmax", "regions" or "sigmoid": the JSON name of an output kind. */
const char *sm_card_output_name(segmamba_output_kind k);

#endif
