/* The DICOM reader on arbitrary bytes: dcmtk's parser behind our checks
 * (series, functional groups, geometry, pixel formats, decoders, sizes).
 * segmamba_dicom_read takes folders, so each input is written as the one
 * file of a folder of its own; a file that reads (a multi-frame image) goes
 * on to the geometry comparison and the finiteness check as predict's
 * volumes do. */
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "segmamba_pipeline.h"

static char dir[256], file[sizeof dir + 16];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    segmamba_set_max_memory(SM_FUZZ_MAX_MEMORY);
    snprintf(dir, sizeof dir, "%s/segmamba-fuzz-dicom-%ld", sm_fuzz_scratch_dir(), (long)getpid());
    snprintf(file, sizeof file, "%s/input.dcm", dir);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mkdir(dir, 0700);
    sm_fuzz_write_file(file, data, size);
    const char *dirs[1] = {dir};
    segmamba_volume v;
    segmamba_status st = segmamba_dicom_read(dirs, NULL, 1, &v, NULL);
    /* A refusal names the folder or the file in it (which holds the folder). */
    sm_fuzz_expect_message(st, dir);
    if (st == SEGMAMBA_OK) {
        const char *paths[1] = {file};
        sm_fuzz_expect_message(segmamba_volume_check_finite(&v, paths, 1), file);
        char why[256];
        if (segmamba_geometry_differs(&v.geom, &v.geom, why, sizeof why)) {
            fprintf(stderr, "a geometry differs from itself: %s\n", why);
            abort();
        }
    }
    segmamba_volume_free(&v);
    remove(file);
    rmdir(dir);
    return 0;
}
