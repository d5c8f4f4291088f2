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
 * Where a card is found (sm_card_for_model), first match wins:
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
#include "io/weights.h"
#include "segmamba.h"

#define SM_CARD_MAX_CHANNELS 16
#define SM_CARD_MAX_LABELS 64
#define SM_CARD_NAME_MAX 64 /* bytes, terminator included */

typedef enum sm_norm_kind { SM_NORM_ZSCORE = 0, SM_NORM_CT = 1 } sm_norm_kind;

/* zscore: (x - mean) / max(std, 1e-8) with the volume's own statistics
 * (over the whole cropped volume). ct: clip to [clip_lo, clip_hi], then
 * (x - mean) / max(std, 1e-8) with the training set's foreground figures. */
typedef struct sm_norm {
    sm_norm_kind kind;
    double clip_lo, clip_hi, mean, std;
} sm_norm;

typedef enum sm_output_kind { SM_OUTPUT_ARGMAX = 0, SM_OUTPUT_REGIONS = 1 } sm_output_kind;

typedef struct sm_card {
    int n_channels;
    char channels[SM_CARD_MAX_CHANNELS][SM_CARD_NAME_MAX];
    sm_norm norm[SM_CARD_MAX_CHANNELS];
    double spacing[3]; /* mm along (D, H, W) = (z, y, x) */
    int patch[3];
    int nslices[SEGMAMBA_STAGES];
    int fue;
    int n_labels;
    char labels[SM_CARD_MAX_LABELS][SM_CARD_NAME_MAX];
    sm_output_kind output;
    char origin[512]; /* where it came from, for messages and `info` */
} sm_card;

/* The official BraTS 2023 setup: t2w, t2f, t1n, t1c, all zscore; 1 mm;
 * patch 128^3; nslices 64,32,16,8; FUE off; background, NCR, ED, ET; argmax. */
void sm_card_default(sm_card *card);

/* Parses a card from JSON text over the defaults and validates every field.
 * origin names the text's source in messages. E_FORMAT for bad JSON or a
 * field of the wrong type or value. */
sm_status sm_card_parse(const char *text, size_t len, const char *origin, sm_card *card);

/* Reads a card JSON file. */
sm_status sm_card_load(const char *path, sm_card *card);

/* The card as JSON text (caller frees *text); parsing it gives the card back. */
sm_status sm_card_to_json(const sm_card *card, char **text);

/* Finds the card of a checkpoint (order above); never fails for a missing
 * card, only for one that exists and is invalid or unreadable. */
sm_status sm_card_for_model(const char *model_path, sm_card *card);

/* The same from a checkpoint already loaded (its metadata in w), without
 * reading the file again. */
sm_status sm_card_for_weights(const char *model_path, const sm_weights *w, sm_card *card);

/* Checks the card against a loaded model: channel count, number of outputs
 * for the mapping, patch accepted by the network. */
sm_status sm_card_check_model(const sm_card *card, const segmamba_model *m);

/* The output channels the model must have for this card. */
int sm_card_out_chans(const sm_card *card);

#endif
