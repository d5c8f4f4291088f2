/* Reads the central directory of a zip archive held in memory (ZIP64
 * included), as torch.save writes it. Entries can be read only when stored
 * uncompressed, which is how torch.save stores them; every offset and size
 * the archive claims is checked against the buffer before it is used. */
#ifndef SM_IO_ZIP_H
#define SM_IO_ZIP_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct sm_zip_entry {
    char *name;               /* NUL-terminated */
    unsigned method;          /* 0 stored, 8 deflated, ... */
    uint64_t compressed_size; /* bytes at data_offset */
    uint64_t size;            /* bytes once extracted */
    uint64_t data_offset;     /* past the local header, whose own name and
                                 extra lengths are used (torch pads the local
                                 extra field to align the data) */
} sm_zip_entry;

typedef struct sm_zip {
    const unsigned char *data; /* the archive, not owned */
    size_t size;
    const char *path; /* names the archive in messages, not owned */
    sm_zip_entry *entries;
    size_t count;
} sm_zip;

/* Reads the directory of the archive in data[0, size). Errors (E_FORMAT for
 * a damaged archive, E_UNSUPPORTED for multi-disk or encrypted archives)
 * name path. On failure z is left empty. */
sm_status sm_zip_open(sm_zip *z, const unsigned char *data, size_t size, const char *path);

/* The entry with exactly this name, or NULL. */
const sm_zip_entry *sm_zip_find(const sm_zip *z, const char *name);

/* Points *bytes at the contents of a stored entry; a compressed entry is
 * E_UNSUPPORTED. */
sm_status sm_zip_entry_data(const sm_zip *z, const sm_zip_entry *e, const unsigned char **bytes,
                            size_t *size);

void sm_zip_close(sm_zip *z);

#endif
