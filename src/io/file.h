/* Whole-file I/O with the errors named after the file. */
#ifndef SM_IO_FILE_H
#define SM_IO_FILE_H

#include <stddef.h>

#include "core/error.h"

/* Reads the first n bytes; a shorter file is an E_FORMAT error. */
sm_status sm_file_peek(const char *path, void *buf, size_t n);

/* Reads the whole file into a fresh buffer (freed by the caller). */
sm_status sm_file_read_all(const char *path, unsigned char **data, size_t *size);

/* Writes bytes to path through a temporary file in the same folder that is
 * renamed over path at the end, so a failed write (a full disk, a read-only
 * folder) leaves no partial file. An existing path that is not a regular
 * file (/dev/null, a FIFO) is written in place; a folder is refused. */
sm_status sm_file_write_atomic(const char *path, const void *parts[],
                               const size_t sizes[], int nparts);

/* Whether sm_file_write_atomic(path) can create its file, checked before
 * long work whose result it would write: path must not be a folder, and
 * the folder it goes into must exist and be writable (an existing path
 * that is not a regular file must be writable itself). The errors are the
 * ones the write would give. A full disk is found only by the write. */
sm_status sm_file_check_writable(const char *path);

#endif
