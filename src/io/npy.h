/* NumPy .npy arrays (format versions 1-3), float32 only on the engine side:
 * other numeric dtypes are converted on read. */
#ifndef SM_IO_NPY_H
#define SM_IO_NPY_H

#include <stdint.h>

#include "io/weights.h"

typedef struct sm_array {
    int ndim;
    int64_t shape[SM_MAX_DIMS];
    int64_t numel;
    float *data; /* owned */
} sm_array;

/* Reads a C-order (or Fortran-order, transposed to C-order on read) array of
 * dtype <f4, <f8, <f2, integers or bool, converting to float32. */
sm_status sm_npy_read(const char *path, sm_array *out);

/* The same reader on a file already in memory (data[0, size), not
 * NUL-terminated); origin names it in messages. */
sm_status sm_npy_parse(const unsigned char *data, size_t size, const char *origin, sm_array *out);

/* E_UNSUPPORTED naming origin and the first element that is NaN or
 * infinite, if any: such values would run through the model into every
 * output near them. */
sm_status sm_array_check_finite(const sm_array *a, const char *origin);

/* Writes a little-endian float32 C-order array (atomically). */
sm_status sm_npy_write(const char *path, int ndim, const int64_t *shape, const float *data);

void sm_array_free(sm_array *a);

#endif
