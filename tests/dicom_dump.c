/* Test helper for tests/test_dicom.py, through the public API only:
 *
 *   dicom_dump OUT.nii DIR [DIR...] [--series UID...]
 *
 * reads the DICOM series (segmamba_dicom_read, one channel per folder or
 * UID) and writes the volume as float32 NIfTI with the geometry derived from
 * DICOM (segmamba_nifti_write_f32: the affine as sform); or
 *
 *   dicom_dump --seg OUT.dcm LABELS.npy CARD.json DIR
 *
 * writes the DICOM SEG (segmamba_dicom_write_seg) of a label map given as a
 * (D, H, W) .npy on the grid of the series in DIR, so that a test chooses
 * the label map. A failure prints the library's message and exits with the
 * status. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "segmamba_pipeline.h"

static segmamba_status write_seg(const char *out, const char *labels_path, const char *card_path,
                                 const char *dir)
{
    segmamba_volume v;
    segmamba_dicom_source *src = NULL;
    segmamba_array a = {0};
    segmamba_card card;
    segmamba_prediction p = {0};
    segmamba_status st = segmamba_dicom_read(&dir, NULL, 1, &v, &src);
    if (st == SEGMAMBA_OK) st = segmamba_npy_read(labels_path, &a);
    if (st == SEGMAMBA_OK &&
        (a.ndim != 3 || a.shape[0] != v.d || a.shape[1] != v.h || a.shape[2] != v.w)) {
        fprintf(stderr, "dicom_dump: %s is not a (%d, %d, %d) label map\n", labels_path, v.d, v.h,
                v.w);
        st = SEGMAMBA_E_ARG;
    }
    if (st == SEGMAMBA_OK) st = segmamba_card_load(card_path, &card);
    if (st == SEGMAMBA_OK && !(p.labels = malloc((size_t)a.numel))) st = SEGMAMBA_E_NOMEM;
    if (st == SEGMAMBA_OK) {
        p.d = v.d, p.h = v.h, p.w = v.w;
        for (int64_t i = 0; i < a.numel; i++) p.labels[i] = (uint8_t)a.data[i];
        st = segmamba_dicom_write_seg(out, src, &card, &p);
    }
    free(p.labels);
    segmamba_array_free(&a);
    segmamba_dicom_source_free(src);
    segmamba_volume_free(&v);
    return st;
}

int main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "--seg") == 0) {
        const segmamba_status st = write_seg(argv[2], argv[3], argv[4], argv[5]);
        if (st != SEGMAMBA_OK) fprintf(stderr, "dicom_dump: %s\n", segmamba_get_last_error());
        return (int)st;
    }
    if (argc < 3) {
        fprintf(stderr, "usage: dicom_dump OUT.nii DIR [DIR...] [--series UID...]\n"
                        "       dicom_dump --seg OUT.dcm LABELS.npy CARD.json DIR\n");
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
    if (st != SEGMAMBA_OK) fprintf(stderr, "dicom_dump: %s\n", segmamba_get_last_error());
    return (int)st;
}
