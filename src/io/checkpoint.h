/* Loading a checkpoint: the reader chosen from the file's content
 * (io/pt.h or io/safetensors.h), then the names normalised. Above the
 * readers, which fill the tensor store (io/weights.h) below them. */
#ifndef SM_IO_CHECKPOINT_H
#define SM_IO_CHECKPOINT_H

#include "core/error.h"
#include "io/weights.h"

/* Loads a checkpoint, choosing the reader from the file's first bytes (a zip
 * is a torch.save file; anything else must be safetensors), then
 * normalises the names (sm_weights_normalise). */
sm_status sm_load_weights(const char *path, sm_weights *out);

/* Only the string metadata of a checkpoint, read from a safetensors file's
 * header without its tensors; a torch.save file has none. Appends to out's
 * metadata, which the caller frees. */
sm_status sm_load_metadata(const char *path, sm_weights *out);

/* The names training code gives that are not the model's own:
 * - a leading "module." (DataParallel) and "_orig_mod." (torch.compile), in
 *   either order or both, stripped while every key carries one;
 * - "ds_seg_from_dec*" (nnU-Net's deep-supervision heads) moved to the
 *   ignored names, their data freed;
 * - "out_main_seg.*" (nnU-Net's name for the head) read as "out.*" when no
 *   key begins with "out.". */
sm_status sm_weights_normalise(sm_weights *w);

#endif
