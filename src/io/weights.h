/* A checkpoint once loaded: named float32 tensors (in the shape and C-order
 * layout PyTorch gives them) plus string metadata. Loaders fill it; the model
 * builder checks it against the names and shapes the configuration implies. */
#ifndef SM_WEIGHTS_H
#define SM_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define SM_MAX_DIMS 8

typedef struct sm_tensor_entry {
    char *name;
    int ndim;
    int64_t shape[SM_MAX_DIMS];
    int64_t numel;
    float *data; /* owned, numel floats */
} sm_tensor_entry;

typedef struct sm_meta_entry {
    char *key;
    char *value;
} sm_meta_entry;

typedef struct sm_weights {
    sm_tensor_entry *items;
    size_t count, cap;
    sm_meta_entry *meta;
    size_t nmeta, meta_cap;
    /* Names of checkpoint tensors that inference does not use (deep
     * supervision heads), in file order; sm_load_weights moves them here
     * from items. */
    char **ignored;
    size_t nignored, ignored_cap;
} sm_weights;

/* Takes ownership of data (freed by sm_weights_free, also on failure).
 * A duplicate name is an error. */
sm_status sm_weights_add(sm_weights *w, const char *name, int ndim,
                         const int64_t *shape, float *data);

/* Copies key and value; a repeated key replaces the value. */
sm_status sm_weights_set_meta(sm_weights *w, const char *key, const char *value);

const sm_tensor_entry *sm_weights_find(const sm_weights *w, const char *name);

/* Frees a tensor's data once it has been copied elsewhere; the name and
 * shape stay. Unknown names are ignored. */
void sm_weights_release(sm_weights *w, const char *name);
const char *sm_weights_meta(const sm_weights *w, const char *key);

void sm_weights_free(sm_weights *w);

/* Formats a shape as "(a, b, c)" into buf (always terminated). */
void sm_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape);

/* Loads a checkpoint, choosing the reader from the file's first bytes (a zip
 * is a torch.save file; anything else must be safetensors), then
 * normalises the names (sm_weights_normalise). */
sm_status sm_load_weights(const char *path, sm_weights *out);

/* The names training code gives that are not the model's own:
 * - a leading "module." (DataParallel) and "_orig_mod." (torch.compile), in
 *   either order or both, stripped while every key carries one;
 * - "ds_seg_from_dec*" (nnU-Net's deep-supervision heads) moved to the
 *   ignored names, their data freed;
 * - "out_main_seg.*" (nnU-Net's name for the head) read as "out.*" when no
 *   key begins with "out.". */
sm_status sm_weights_normalise(sm_weights *w);

/* Only the string metadata of a checkpoint, read from a safetensors file's
 * header without its tensors; a torch.save file has none. Appends to out's
 * metadata, which the caller frees. */
sm_status sm_load_metadata(const char *path, sm_weights *out);

/* The readers (src/io/). Both append to out, which the caller frees. */
sm_status sm_load_pt(const char *path, sm_weights *out);
sm_status sm_load_safetensors(const char *path, sm_weights *out);
sm_status sm_safetensors_metadata(const char *path, sm_weights *out);
/* The same readers on a file already in memory (data[0, size), not
 * NUL-terminated); origin names it in messages. */
sm_status sm_load_pt_memory(const unsigned char *data, size_t size, const char *origin,
                            sm_weights *out);
sm_status sm_load_safetensors_memory(const unsigned char *data, size_t size, const char *origin,
                                     sm_weights *out);

/* Writes every tensor as F32 plus the metadata into a .safetensors file. */
sm_status sm_save_safetensors(const char *path, const sm_weights *w);

#endif
