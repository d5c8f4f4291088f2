/* The NIfTI reader on arbitrary bytes: our header checks, nifticlib's
 * parser behind them, the data read (plain or gzip), scaling; then what
 * the pipeline and metrics do with a volume read (finiteness, labels,
 * geometry comparison). nifticlib opens files by name, so each input is
 * written to a file first, named .nii.gz when it starts like gzip (as a
 * real file would be) and .nii otherwise. */
#include <unistd.h>

#include "fuzz.h"
#include "clinical/nifti.h"

static char plain[256], gz[sizeof plain + 3];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    segmamba_set_max_memory(SM_FUZZ_MAX_MEMORY);
    snprintf(plain, sizeof plain, "%s/segmamba-fuzz-%ld.nii", sm_fuzz_scratch_dir(),
             (long)getpid());
    snprintf(gz, sizeof gz, "%s.gz", plain);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = size >= 2 && data[0] == 0x1f && data[1] == 0x8b ? gz : plain;
    sm_fuzz_write_file(path, data, size);
    segmamba_volume v;
    segmamba_status st = segmamba_nifti_read(path, &v);
    sm_fuzz_expect_message(st, path);
    if (st == SEGMAMBA_OK) {
        sm_fuzz_expect_message(segmamba_volume_check_finite(&v, &path, 1), path);
        char why[256];
        if (segmamba_geometry_differs(&v.geom, &v.geom, why, sizeof why)) {
            fprintf(stderr, "a geometry differs from itself: %s\n", why);
            abort();
        }
        uint8_t *labels = NULL;
        if (v.c == 1) sm_fuzz_expect_message(segmamba_volume_get_labels(&v, path, &labels), path);
        free(labels);
    }
    segmamba_volume_free(&v);
    remove(path);
    return 0;
}
