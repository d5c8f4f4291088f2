/* The settings a checkpoint's metadata may carry besides its weights: the
 * Mamba slice counts and the FUE switch, which no tensor shape reveals.
 * They sit in a safetensors file's __metadata__, under "card" (a model card
 * as JSON text, written by `segmamba convert`) or "config" (the test case
 * generator's). The engine reads them here; the clinical layer's card
 * parser reads the same keys through sm_meta_mamba_keys. */
#ifndef SM_IO_CHECKPOINT_META_H
#define SM_IO_CHECKPOINT_META_H

#include "core/error.h"
#include "io/json.h"
#include "io/weights.h"
#include "segmamba.h"

/* Reads the optional members "nslices" (SEGMAMBA_STAGES integers in
 * [1, 2^30]) and "fue" (a boolean) of a JSON object; an absent member leaves
 * its output as it was. *found (may be NULL) is set to 1 when either is
 * present. E_FORMAT naming origin for a member of the wrong form. */
sm_status sm_meta_mamba_keys(const sm_json *obj, const char *origin, int nslices[SEGMAMBA_STAGES],
                             int *fue, int *found);

/* The same from a loaded checkpoint's metadata: "card" when present, else
 * "config"; with neither the outputs are left as they are. path names the
 * checkpoint in messages. */
sm_status sm_meta_mamba(const sm_weights *w, const char *path, int nslices[SEGMAMBA_STAGES],
                        int *fue);

#endif
