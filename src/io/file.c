#define _POSIX_C_SOURCE 200809L
#include "io/file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/memory_cap.h"

sm_status sm_file_peek(const char *path, void *buf, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return sm_fail(SEGMAMBA_E_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t got = fread(buf, 1, n, f);
    fclose(f);
    if (got != n) return sm_fail(SEGMAMBA_E_FORMAT, "%s: file is too short (%zu bytes)", path, got);
    return SEGMAMBA_OK;
}

sm_status segmamba_file_read(const char *path, unsigned char **data, size_t *size)
{
    *data = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return sm_fail(SEGMAMBA_E_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fseeko(f, 0, SEEK_END) != 0) {
        fclose(f);
        return sm_fail(SEGMAMBA_E_IO, "%s: cannot seek: %s", path, strerror(errno));
    }
    off_t len = ftello(f);
    if (len < 0 || fseeko(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return sm_fail(SEGMAMBA_E_IO, "%s: cannot tell its size", path);
    }
    if ((unsigned long long)len > (unsigned long long)SIZE_MAX - 1) {
        fclose(f);
        return sm_fail(SEGMAMBA_E_NOMEM, "%s: file too large for this machine", path);
    }
    sm_status st = sm_memory_check((uint64_t)len + 1, path, "reading the file");
    if (st != SEGMAMBA_OK) {
        fclose(f);
        return st;
    }
    unsigned char *buf = malloc((size_t)len + 1);
    if (!buf) {
        fclose(f);
        return sm_fail(SEGMAMBA_E_NOMEM, "%s: cannot allocate %lld bytes", path, (long long)len);
    }
    size_t got = fread(buf, 1, (size_t)len, f);
    int err = ferror(f);
    fclose(f);
    if (got != (size_t)len || err) {
        free(buf);
        return sm_fail(SEGMAMBA_E_IO, "%s: read failed after %zu of %lld bytes", path, got,
                       (long long)len);
    }
    buf[len] = 0;
    *data = buf;
    *size = (size_t)len;
    return SEGMAMBA_OK;
}

/* Writes every part and closes f; 0 with errno's reason in *err on failure. */
static int write_parts(FILE *f, const void *parts[], const size_t sizes[], int nparts, int *err)
{
    int ok = 1;
    *err = 0;
    for (int i = 0; i < nparts && ok; i++)
        if (sizes[i] && fwrite(parts[i], 1, sizes[i], f) != sizes[i]) ok = 0;
    if (ok && fflush(f) != 0) ok = 0;
    if (!ok) *err = errno;
    if (fclose(f) != 0 && ok) {
        ok = 0;
        *err = errno;
    }
    if (!ok && !*err) *err = EIO;
    return ok;
}

/* An existing path that is not a regular file (/dev/null, a FIFO, a
 * terminal) is written in place: renaming a temporary file over it would
 * replace the device node itself. */
static sm_status write_special(const char *path, const void *parts[], const size_t sizes[],
                               int nparts)
{
    FILE *f = fopen(path, "wb");
    if (!f) return sm_fail(SEGMAMBA_E_IO, "%s: cannot open for writing: %s", path, strerror(errno));
    int err;
    if (!write_parts(f, parts, sizes, nparts, &err))
        return sm_fail(SEGMAMBA_E_IO, "%s: write failed: %s", path, strerror(err));
    return SEGMAMBA_OK;
}

sm_status segmamba_file_check_writable(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        if (S_ISDIR(st.st_mode))
            return sm_fail(SEGMAMBA_E_IO, "%s: is a directory, not a file name", path);
        if (access(path, W_OK) != 0)
            return sm_fail(SEGMAMBA_E_IO, "%s: cannot open for writing: %s", path, strerror(errno));
        return SEGMAMBA_OK;
    }
    /* the folder that will hold the temporary file */
    const char *slash = strrchr(path, '/');
    const size_t n = slash ? (slash == path ? 1 : (size_t)(slash - path)) : 1;
    char *dir = malloc(n + 1);
    if (!dir) return sm_fail(SEGMAMBA_E_NOMEM, "%s: out of memory", path);
    if (slash)
        memcpy(dir, path, n);
    else
        dir[0] = '.';
    dir[n] = 0;
    int err = 0;
    if (stat(dir, &st) != 0)
        err = errno;
    else if (!S_ISDIR(st.st_mode))
        err = ENOTDIR;
    else if (access(dir, W_OK | X_OK) != 0)
        err = errno;
    free(dir);
    if (err) return sm_fail(SEGMAMBA_E_IO, "%s: cannot create: %s", path, strerror(err));
    return SEGMAMBA_OK;
}

sm_status sm_file_write_atomic(const char *path, const void *parts[], const size_t sizes[],
                               int nparts)
{
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        if (S_ISDIR(st.st_mode))
            return sm_fail(SEGMAMBA_E_IO, "%s: is a directory, not a file name", path);
        return write_special(path, parts, sizes, nparts);
    }
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp) return sm_fail(SEGMAMBA_E_NOMEM, "%s: out of memory", path);
    snprintf(tmp, n, "%s.tmp-%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        sm_status rc = sm_fail(SEGMAMBA_E_IO, "%s: cannot create: %s", path, strerror(errno));
        free(tmp);
        return rc;
    }
    int err;
    if (!write_parts(f, parts, sizes, nparts, &err)) {
        remove(tmp);
        free(tmp);
        return sm_fail(SEGMAMBA_E_IO, "%s: write failed: %s", path, strerror(err));
    }
    if (rename(tmp, path) != 0) {
        err = errno;
        remove(tmp);
        free(tmp);
        return sm_fail(SEGMAMBA_E_IO, "%s: cannot rename temporary file into place: %s", path,
                       strerror(err));
    }
    free(tmp);
    return SEGMAMBA_OK;
}

sm_status segmamba_file_write(const char *path, const void *data, size_t size)
{
    const void *parts[1] = {data};
    const size_t sizes[1] = {size};
    return sm_file_write_atomic(path, parts, sizes, 1);
}
