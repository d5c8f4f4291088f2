/* The memory cap: the most bytes one allocation whose size comes from a file
 * (a checkpoint's tensor, an array, a NIfTI volume, a whole file read into
 * memory) may take. Sizes are checked against it before anything is
 * allocated, so a small hostile file cannot make the engine reserve memory
 * without bound; src/api/model.c also holds a CPU forward's arena plus its
 * weights to it. The cap is, in order: segmamba_set_max_memory(), the
 * environment variable SEGMAMBA_MAX_MEMORY (bytes, or with a K, M, G or T
 * suffix, powers of 1024), else the machine's physical memory. */
#ifndef SM_IO_MEMORY_CAP_H
#define SM_IO_MEMORY_CAP_H

#include <stdint.h>

#include "core/error.h"

/* OK when bytes fit the cap; else E_NOMEM with a message
 * "<origin>: <what> would need N bytes, more than the memory limit ...".
 * An unparsable SEGMAMBA_MAX_MEMORY is an E_ARG error. */
sm_status sm_memory_check(uint64_t bytes, const char *origin, const char *what);

/* The cap now in force, or 0 with an E_ARG message when
 * SEGMAMBA_MAX_MEMORY cannot be parsed. */
uint64_t sm_memory_cap(void);

/* Parses "123", "64K", "512M", "8G", "1T" (optionally followed by "B" or
 * "iB"); 1 on success. */
int sm_memory_parse(const char *text, uint64_t *bytes);

#endif
