/* Test helper for tests/dicom_test.py, through the public API only:
 *
 *   dicom_dump OUT.nii DIR [DIR...] [--series UID...]
 *
 * reads the DICOM series (segmamba_dicom_read, one channel per folder or
 * UID) and writes the volume as float32 NIfTI with the geometry derived from
 * DICOM (segmamba_nifti_write_f32: the affine as sform). A failure prints
 * the library's message and exits with the status. */
#include <stdio.h>
#include <string.h>

#include "segmamba_pipeline.h"

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: dicom_dump OUT.nii DIR [DIR...] [--series UID...]\n");
        return 1;
    }
    const char *dirs[SEGMAMBA_CARD_MAX_CHANNELS], *series[SEGMAMBA_CARD_MAX_CHANNELS];
    int nd = 0, ns = 0, in_series = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--series") == 0)
            in_series = 1;
        else if (in_series && ns < SEGMAMBA_CARD_MAX_CHANNELS)
            series[ns++] = argv[i];
        else if (!in_series && nd < SEGMAMBA_CARD_MAX_CHANNELS)
            dirs[nd++] = argv[i];
    }
    for (int i = nd; i < ns; i++) dirs[i] = dirs[0];
    const int n = ns > nd ? ns : nd;
    segmamba_volume v;
    segmamba_status st = segmamba_dicom_read(dirs, ns ? series : NULL, n, &v, NULL);
    if (st == SEGMAMBA_OK) st = segmamba_nifti_write_f32(argv[1], &v.geom, v.data, v.c);
    segmamba_volume_free(&v);
    if (st != SEGMAMBA_OK) fprintf(stderr, "dicom_dump: %s\n", segmamba_last_error());
    return (int)st;
}
