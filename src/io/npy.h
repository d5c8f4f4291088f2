/* NumPy .npy arrays (format versions 1-3), float32 only on the engine side:
 * other numeric dtypes are converted on read. The file functions are
 * segmamba_pipeline.h's (segmamba_npy_read, segmamba_npy_write). */
#ifndef SM_IO_NPY_H
#define SM_IO_NPY_H

#include <stdint.h>

#include "io/weights.h"
#include "segmamba_pipeline.h"

_Static_assert(SM_MAX_DIMS == SEGMAMBA_MAX_DIMS, "one dimension limit for tensors and arrays");

/* The reader on a file already in memory (data[0, size), not
 * NUL-terminated); origin names it in messages. */
sm_status sm_npy_parse(const unsigned char *data, size_t size, const char *origin,
                       segmamba_array *out);

#endif
