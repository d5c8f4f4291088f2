/* The tensor store: a checkpoint once loaded, named float32 tensors (in the
 * shape and C-order layout PyTorch gives them) plus string metadata. The
 * bottom of the checkpoint I/O: the readers (io/pt.h, io/safetensors.h)
 * fill it, the loader (io/checkpoint.h) picks a reader and normalises the
 * names; the model builder checks it against the names and shapes the
 * configuration implies. */
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
     * supervision heads), in file order; sm_weights_normalise
     * (io/checkpoint.h) moves them here from items. */
    char **ignored;
    size_t nignored, ignored_cap;
} sm_weights;

/* Takes ownership of data (freed by sm_weights_free, also on failure).
 * A duplicate name is an error. */
sm_status sm_weights_add(sm_weights *w, const char *name, int ndim, const int64_t *shape,
                         float *data);

/* Copies key and value; a repeated key replaces the value. */
sm_status sm_weights_set_meta(sm_weights *w, const char *key, const char *value);

const sm_tensor_entry *sm_weights_find(const sm_weights *w, const char *name);

/* Frees a tensor's data once it has been copied elsewhere; the name and
 * shape stay. Unknown names are ignored. */
void sm_weights_release(sm_weights *w, const char *name);
const char *sm_weights_meta(const sm_weights *w, const char *key);

/* Bytes of the tensors whose data the store still holds. */
size_t sm_weights_resident_bytes(const sm_weights *w);

void sm_weights_free(sm_weights *w);

/* Formats a shape as "(a, b, c)" into buf (always terminated). */
void sm_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape);

#endif
