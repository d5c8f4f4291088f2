#include "io/zip.h"

#include <stdlib.h>
#include <string.h>

#include "io/binary.h"

enum {
    EOCD_SIG = 0x06054b50,
    EOCD_SIZE = 22,
    ZIP64_LOCATOR_SIG = 0x07064b50,
    ZIP64_LOCATOR_SIZE = 20,
    ZIP64_EOCD_SIG = 0x06064b50,
    ZIP64_EOCD_SIZE = 56,
    CENTRAL_SIG = 0x02014b50,
    CENTRAL_SIZE = 46,
    LOCAL_SIG = 0x04034b50,
    LOCAL_SIZE = 30,
    ZIP64_EXTRA_ID = 0x0001,
    MAX_COMMENT = 0xffff,
};

/* Where the central directory lies and how many entries it holds. */
typedef struct directory {
    uint64_t offset, size, count;
    uint64_t end_limit; /* the directory must end before this offset */
} directory;

/* The end-of-central-directory record sits at the end, after a comment of
 * up to 64 KiB; searching backwards and requiring the comment length to reach
 * exactly the end of the file keeps a signature inside the comment from
 * being taken for the record. */
static sm_status find_eocd(const sm_zip *z, size_t *pos)
{
    if (z->size >= EOCD_SIZE) {
        size_t last = z->size - EOCD_SIZE;
        size_t first = last > MAX_COMMENT ? last - MAX_COMMENT : 0;
        for (size_t back = 0; back <= last - first; back++) {
            size_t p = last - back;
            const unsigned char *r = z->data + p;
            if (sm_le32(r) == EOCD_SIG && p + EOCD_SIZE + sm_le16(r + 20) == z->size) {
                *pos = p;
                return SEGMAMBA_OK;
            }
        }
    }
    return sm_fail(SEGMAMBA_E_FORMAT,
                   "%s: not a zip archive, or truncated: no end-of-central-directory record",
                   z->path);
}

/* ZIP64 keeps the real counts and offsets in a second record, found through
 * a locator just before the classic one. */
static sm_status read_zip64_directory(const sm_zip *z, size_t eocd, directory *d)
{
    const unsigned char *loc = z->data + eocd - ZIP64_LOCATOR_SIZE;
    if (sm_le32(loc + 4) != 0 || sm_le32(loc + 16) > 1)
        return sm_fail(SEGMAMBA_E_UNSUPPORTED, "%s: multi-disk zip archives are not supported",
                       z->path);
    uint64_t rec = sm_le64(loc + 8);
    if (!sm_range_ok(eocd - ZIP64_LOCATOR_SIZE, rec, ZIP64_EOCD_SIZE) ||
        sm_le32(z->data + rec) != ZIP64_EOCD_SIG)
        return sm_fail(SEGMAMBA_E_FORMAT,
                       "%s: ZIP64 locator points to offset %llu, where no "
                       "ZIP64 end-of-central-directory record lies",
                       z->path, (unsigned long long)rec);
    const unsigned char *r = z->data + rec;
    if (sm_le32(r + 16) != 0 || sm_le32(r + 20) != 0 || sm_le64(r + 24) != sm_le64(r + 32))
        return sm_fail(SEGMAMBA_E_UNSUPPORTED, "%s: multi-disk zip archives are not supported",
                       z->path);
    d->count = sm_le64(r + 32);
    d->size = sm_le64(r + 40);
    d->offset = sm_le64(r + 48);
    d->end_limit = rec;
    return SEGMAMBA_OK;
}

static sm_status read_directory_location(const sm_zip *z, size_t eocd, directory *d)
{
    const unsigned char *r = z->data + eocd;
    int has_locator = eocd >= ZIP64_LOCATOR_SIZE &&
                      sm_le32(z->data + eocd - ZIP64_LOCATOR_SIZE) == ZIP64_LOCATOR_SIG;
    if (has_locator) return read_zip64_directory(z, eocd, d);

    uint16_t disk = sm_le16(r + 4), cd_disk = sm_le16(r + 6);
    uint16_t on_disk = sm_le16(r + 8), total = sm_le16(r + 10);
    uint32_t size = sm_le32(r + 12), offset = sm_le32(r + 16);
    if (total == 0xffff || size == 0xffffffffu || offset == 0xffffffffu)
        return sm_fail(SEGMAMBA_E_FORMAT,
                       "%s: zip end record defers to ZIP64 but there is no "
                       "ZIP64 locator",
                       z->path);
    if (disk != 0 || cd_disk != 0 || on_disk != total)
        return sm_fail(SEGMAMBA_E_UNSUPPORTED, "%s: multi-disk zip archives are not supported",
                       z->path);
    d->count = total;
    d->size = size;
    d->offset = offset;
    d->end_limit = eocd;
    return SEGMAMBA_OK;
}

/* Replaces the 32-bit fields that are saturated (0xffffffff) by the 64-bit
 * values the ZIP64 extra field carries for them, in the order the format
 * fixes: size, compressed size, local header offset. */
static sm_status apply_zip64_extra(const sm_zip *z, const unsigned char *extra, size_t len,
                                   sm_zip_entry *e, uint64_t *local_offset)
{
    uint64_t *fields[3] = {&e->size, &e->compressed_size, local_offset};
    int needed = 0;
    for (int i = 0; i < 3; i++) needed += *fields[i] == 0xffffffffu;
    if (!needed) return SEGMAMBA_OK;
    for (size_t p = 0; len - p >= 4;) {
        uint16_t id = sm_le16(extra + p), n = sm_le16(extra + p + 2);
        if (n > len - p - 4) break;
        if (id == ZIP64_EXTRA_ID) {
            const unsigned char *f = extra + p + 4;
            size_t have = n / 8;
            for (int i = 0; i < 3 && needed; i++) {
                if (*fields[i] != 0xffffffffu) continue;
                if (have == 0) break;
                *fields[i] = sm_le64(f);
                f += 8;
                have--;
                needed--;
            }
            break;
        }
        p += 4 + (size_t)n;
    }
    if (needed)
        return sm_fail(SEGMAMBA_E_FORMAT,
                       "%s: zip entry '%s' has 32-bit fields saturated but no "
                       "ZIP64 extra field holding their values",
                       z->path, e->name);
    return SEGMAMBA_OK;
}

/* Finds the entry's data through its local header, whose name and extra
 * field may differ in length from the central directory's. */
static sm_status locate_data(const sm_zip *z, sm_zip_entry *e, uint64_t local)
{
    if (!sm_range_ok(z->size, local, LOCAL_SIZE) || sm_le32(z->data + local) != LOCAL_SIG)
        return sm_fail(SEGMAMBA_E_FORMAT, "%s: zip entry '%s': no local header at offset %llu",
                       z->path, e->name, (unsigned long long)local);
    const unsigned char *h = z->data + local;
    size_t name_len = sm_le16(h + 26), extra_len = sm_le16(h + 28);
    if (!sm_range_ok(z->size, local + LOCAL_SIZE, name_len + extra_len) ||
        name_len != strlen(e->name) || memcmp(h + LOCAL_SIZE, e->name, name_len) != 0)
        return sm_fail(SEGMAMBA_E_FORMAT,
                       "%s: zip entry '%s': local header does not match the "
                       "central directory",
                       z->path, e->name);
    e->data_offset = local + LOCAL_SIZE + name_len + extra_len;
    if (!sm_range_ok(z->size, e->data_offset, e->compressed_size))
        return sm_fail(SEGMAMBA_E_FORMAT,
                       "%s: zip entry '%s' claims %llu bytes at offset %llu, "
                       "past the end of the %zu-byte file (truncated?)",
                       z->path, e->name, (unsigned long long)e->compressed_size,
                       (unsigned long long)e->data_offset, z->size);
    return SEGMAMBA_OK;
}

/* Reads the central directory header at *pos (inside [.., end)) into e and
 * advances *pos past it. */
static sm_status read_entry(const sm_zip *z, uint64_t *pos, uint64_t end, sm_zip_entry *e)
{
    if (!sm_range_ok(end, *pos, CENTRAL_SIZE) || sm_le32(z->data + *pos) != CENTRAL_SIG)
        return sm_fail(SEGMAMBA_E_FORMAT, "%s: zip central directory is damaged at offset %llu",
                       z->path, (unsigned long long)*pos);
    const unsigned char *h = z->data + *pos;
    size_t name_len = sm_le16(h + 28), extra_len = sm_le16(h + 30), comment_len = sm_le16(h + 32);
    if (!sm_range_ok(end, *pos + CENTRAL_SIZE, name_len + extra_len + comment_len))
        return sm_fail(SEGMAMBA_E_FORMAT,
                       "%s: zip central directory entry at offset %llu runs "
                       "past the directory",
                       z->path, (unsigned long long)*pos);
    const unsigned char *name = h + CENTRAL_SIZE;
    if (memchr(name, 0, name_len))
        return sm_fail(SEGMAMBA_E_FORMAT, "%s: zip entry name at offset %llu contains a NUL byte",
                       z->path, (unsigned long long)*pos);
    e->name = malloc(name_len + 1);
    if (!e->name)
        return sm_fail(SEGMAMBA_E_NOMEM, "%s: out of memory reading zip directory", z->path);
    memcpy(e->name, name, name_len);
    e->name[name_len] = 0;

    uint16_t flags = sm_le16(h + 8);
    if (flags & 1)
        return sm_fail(SEGMAMBA_E_UNSUPPORTED, "%s: zip entry '%s' is encrypted", z->path, e->name);
    e->method = sm_le16(h + 10);
    e->compressed_size = sm_le32(h + 20);
    e->size = sm_le32(h + 24);
    uint64_t local = sm_le32(h + 42);
    SM_TRY(apply_zip64_extra(z, name + name_len, extra_len, e, &local));
    SM_TRY(locate_data(z, e, local));
    *pos += CENTRAL_SIZE + name_len + extra_len + comment_len;
    return SEGMAMBA_OK;
}

static sm_status read_entries(sm_zip *z, const directory *d)
{
    if (!sm_range_ok(d->end_limit, d->offset, d->size))
        return sm_fail(SEGMAMBA_E_FORMAT,
                       "%s: zip central directory (%llu bytes at offset %llu) "
                       "lies outside the file (truncated?)",
                       z->path, (unsigned long long)d->size, (unsigned long long)d->offset);
    /* Each entry takes at least CENTRAL_SIZE bytes, which bounds the count
     * before anything is allocated for it. */
    if (d->count > d->size / CENTRAL_SIZE)
        return sm_fail(SEGMAMBA_E_FORMAT, "%s: zip directory claims %llu entries in %llu bytes",
                       z->path, (unsigned long long)d->count, (unsigned long long)d->size);
    z->entries = calloc(d->count ? (size_t)d->count : 1, sizeof *z->entries);
    if (!z->entries)
        return sm_fail(SEGMAMBA_E_NOMEM, "%s: out of memory reading zip directory", z->path);
    uint64_t pos = d->offset, end = d->offset + d->size;
    for (uint64_t i = 0; i < d->count; i++) {
        z->count++; /* counted first so that sm_zip_close frees a partial name */
        SM_TRY(read_entry(z, &pos, end, &z->entries[i]));
    }
    return SEGMAMBA_OK;
}

sm_status sm_zip_open(sm_zip *z, const unsigned char *data, size_t size, const char *path)
{
    memset(z, 0, sizeof *z);
    z->data = data;
    z->size = size;
    z->path = path;
    size_t eocd = 0;
    directory d = {0, 0, 0, 0};
    sm_status st = find_eocd(z, &eocd);
    if (st == SEGMAMBA_OK) st = read_directory_location(z, eocd, &d);
    if (st == SEGMAMBA_OK) st = read_entries(z, &d);
    if (st != SEGMAMBA_OK) sm_zip_close(z);
    return st;
}

const sm_zip_entry *sm_zip_find(const sm_zip *z, const char *name)
{
    for (size_t i = 0; i < z->count; i++)
        if (strcmp(z->entries[i].name, name) == 0) return &z->entries[i];
    return NULL;
}

sm_status sm_zip_entry_data(const sm_zip *z, const sm_zip_entry *e, const unsigned char **bytes,
                            size_t *size)
{
    if (e->method != 0)
        return sm_fail(SEGMAMBA_E_UNSUPPORTED,
                       "%s: zip entry '%s' is compressed (method %u%s); "
                       "only stored (uncompressed) entries can be read, as torch.save writes them",
                       z->path, e->name, e->method, e->method == 8 ? ", deflate" : "");
    if (e->compressed_size != e->size)
        return sm_fail(SEGMAMBA_E_FORMAT,
                       "%s: stored zip entry '%s' has size %llu but %llu "
                       "bytes of data",
                       z->path, e->name, (unsigned long long)e->size,
                       (unsigned long long)e->compressed_size);
    *bytes = z->data + e->data_offset;
    *size = (size_t)e->size;
    return SEGMAMBA_OK;
}

void sm_zip_close(sm_zip *z)
{
    for (size_t i = 0; i < z->count; i++) free(z->entries[i].name);
    free(z->entries);
    memset(z, 0, sizeof *z);
}
