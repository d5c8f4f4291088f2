/* The safetensors reader and writer. The readers append to out, which the
 * caller frees; the names are left as the file has them (io/checkpoint.h
 * normalises them). */
#ifndef SM_IO_SAFETENSORS_H
#define SM_IO_SAFETENSORS_H

#include <stddef.h>

#include "core/error.h"
#include "io/weights.h"

sm_status sm_load_safetensors(const char *path, sm_weights *out);

/* Only the string metadata (__metadata__), from the header without the
 * tensors. */
sm_status sm_safetensors_metadata(const char *path, sm_weights *out);

/* The tensors of a file already in memory (data[0, size), not
 * NUL-terminated); origin names it in messages. */
sm_status sm_load_safetensors_memory(const unsigned char *data, size_t size, const char *origin,
                                     sm_weights *out);

/* Writes every tensor as F32 plus the metadata into a .safetensors file. */
sm_status sm_save_safetensors(const char *path, const sm_weights *w);

#endif
