/* The zip reader (src/io/zip.c) on its own, on the loader fixtures
 * (tests/fixtures/loaders): a ZIP64 archive's entries, and damaged end
 * records, directory entries and truncations refused with their messages. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "io/file.h"
#include "io/zip.h"

#define FIXTURES "tests/fixtures/loaders/"

static void test_zip(void)
{
    unsigned char *file;
    size_t size;
    CHECK(segmamba_file_read(FIXTURES "state_dict_zip64.pt", &file, &size) == SEGMAMBA_OK);
    sm_zip z;
    CHECK(sm_zip_open(&z, file, size, "zip64") == SEGMAMBA_OK);
    const sm_zip_entry *pkl = sm_zip_find(&z, "archive/data.pkl");
    CHECK(pkl && pkl->method == 0 && pkl->data_offset % 64 == 0 && pkl->size > 100);
    const unsigned char *bytes;
    size_t n;
    CHECK(pkl && sm_zip_entry_data(&z, pkl, &bytes, &n) == SEGMAMBA_OK && n == pkl->size &&
          bytes[0] == 0x80 && bytes[n - 1] == '.');
    CHECK(sm_zip_find(&z, "archive/nothing") == NULL);
    sm_zip_close(&z);
    free(file);

    /* Damage a classic archive's end record and first directory entry. */
    CHECK(segmamba_file_read(FIXTURES "handmade.pt", &file, &size) == SEGMAMBA_OK);
    unsigned char *eocd = file + size - 22;
    uint32_t cd_offset =
        eocd[16] | eocd[17] << 8 | (uint32_t)eocd[18] << 16 | (uint32_t)eocd[19] << 24;
    static const struct {
        int in_directory; /* 0: in the end record, 1: in the first central header */
        size_t offset;    /* byte offset within it */
        size_t len;
        unsigned char value[4];
        const char *message;
    } damage[] = {
        {0, 16, 4, {0xf0, 0xff, 0xff, 0x7f}, "lies outside the file"},
        {0, 8, 4, {0xfe, 0xff, 0xfe, 0xff}, "claims 65534 entries"},
        {0, 4, 1, {1}, "multi-disk"},
        {0, 16, 4, {0xff, 0xff, 0xff, 0xff}, "no ZIP64 locator"},
        {1, 42, 4, {0xf0, 0xff, 0xff, 0x7f}, "no local header at offset"},
        {1, 20, 4, {0xf0, 0xff, 0xff, 0x7f}, "past the end of the"},
        {1, 20, 4, {0xff, 0xff, 0xff, 0xff}, "no ZIP64 extra field"},
        {1, 28, 2, {0xff, 0x0f}, "runs past the directory"},
        {1, 0, 1, {'X'}, "central directory is damaged"},
        {1, 8, 1, {1}, "is encrypted"},
    };
    for (size_t i = 0; i < sizeof damage / sizeof damage[0]; i++) {
        unsigned char *copy = malloc(size);
        memcpy(copy, file, size);
        unsigned char *base = damage[i].in_directory ? copy + cd_offset : copy + size - 22;
        memcpy(base + damage[i].offset, damage[i].value, damage[i].len);
        sm_status st = sm_zip_open(&z, copy, size, "damaged.zip");
        const char *msg = segmamba_get_last_error();
        CHECK_MSG(st != SEGMAMBA_OK && check_contains(msg, "damaged.zip") &&
                      check_contains(msg, damage[i].message),
                  "damage %zu: %s '%s'", i, segmamba_get_status_name(st), msg);
        CHECK(z.entries == NULL && z.count == 0);
        free(copy);
    }
    /* The end record sits at the very end, so no truncation opens. */
    for (size_t cut = 0; cut < size; cut++)
        CHECK(sm_zip_open(&z, file, cut, "cut.zip") != SEGMAMBA_OK);
    free(file);
}

int main(void)
{
    test_zip();
    return check_report("test_zip");
}
