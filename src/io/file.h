/* Whole-file I/O with the errors named after the file. */
#ifndef SM_IO_FILE_H
#define SM_IO_FILE_H

#include <stddef.h>

#include "core/error.h"
#include "segmamba_pipeline.h"

/* Reads the first n bytes; a shorter file is an E_FORMAT error. */
sm_status sm_file_peek(const char *path, void *buf, size_t n);

/* segmamba_file_read, segmamba_file_write and segmamba_file_check_writable
 * are segmamba_pipeline.h's. */

/* Writes bytes to path through a temporary file in the same folder that is
 * renamed over path at the end, so a failed write (a full disk, a read-only
 * folder) leaves no partial file. An existing path that is not a regular
 * file (/dev/null, a FIFO) is written in place; a folder is refused. */
sm_status sm_file_write_atomic(const char *path, const void *parts[], const size_t sizes[],
                               int nparts);

#endif
