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
 * the label map; or
 *
 *   dicom_dump --memory OUT.nii DIR [DIR...]
 *   dicom_dump --memory-seg OUT.dcm LABELS.npy CARD.json SERIES_UID INSTANCE_UID DIR
 *
 * the same through the in-memory entries: every regular file under each DIR
 * read into memory (named by its path) and given to
 * segmamba_dicom_read_memory, and the SEG made by segmamba_dicom_encode_seg
 * with the given UIDs. A failure prints the library's message and exits
 * with the status. */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "segmamba_pipeline.h"

/* The files of one folder, in memory. */
typedef struct objects {
    segmamba_dicom_object *o;
    char **names;
    int n, cap;
    segmamba_status st;
} objects;

static objects *walking;

static int add_file(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    objects *w = walking;
    if (type != FTW_F) return 0;
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->o = realloc(w->o, (size_t)w->cap * sizeof *w->o);
        w->names = realloc(w->names, (size_t)w->cap * sizeof *w->names);
        if (!w->o || !w->names) abort();
    }
    unsigned char *data = NULL;
    size_t size = 0;
    w->st = segmamba_file_read(path, &data, &size);
    if (w->st != SEGMAMBA_OK) return 1;
    w->names[w->n] = strdup(path);
    w->o[w->n] = (segmamba_dicom_object){data, size, w->names[w->n]};
    w->n++;
    return 0;
}

static segmamba_status read_folders(const char *const *dirs, int n, segmamba_volume *v,
                                    segmamba_dicom_source **src)
{
    objects all[16] = {{0}};
    const segmamba_dicom_object *obj[16] = {0};
    int counts[16] = {0};
    if (n > 16) n = 16;
    segmamba_status st = SEGMAMBA_OK;
    for (int i = 0; i < n && st == SEGMAMBA_OK; i++) {
        walking = &all[i];
        if (nftw(dirs[i], add_file, 16, FTW_PHYS) != 0 && all[i].st == SEGMAMBA_OK) {
            fprintf(stderr, "dicom_dump: cannot walk %s\n", dirs[i]);
            st = SEGMAMBA_E_IO;
        }
        if (st == SEGMAMBA_OK) st = all[i].st;
        obj[i] = all[i].o;
        counts[i] = all[i].n;
    }
    if (st == SEGMAMBA_OK) st = segmamba_dicom_read_memory(obj, counts, n, v, src);
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < all[i].n; k++) {
            free((void *)all[i].o[k].data);
            free(all[i].names[k]);
        }
        free(all[i].o);
        free(all[i].names);
    }
    return st;
}

static segmamba_status write_seg(const char *out, const char *labels_path, const char *card_path,
                                 const char *dir, const segmamba_dicom_seg_options *memory)
{
    segmamba_volume v;
    segmamba_dicom_source *src = NULL;
    segmamba_array a = {0};
    segmamba_card card;
    segmamba_prediction p = {0};
    segmamba_status st =
        memory ? read_folders(&dir, 1, &v, &src) : segmamba_dicom_read(&dir, NULL, 1, &v, &src);
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
        if (memory) {
            unsigned char *bytes = NULL;
            size_t size = 0;
            st = segmamba_dicom_encode_seg(src, &card, &p, memory, &bytes, &size);
            if (st == SEGMAMBA_OK) st = segmamba_file_write(out, bytes, size);
            free(bytes);
        } else {
            st = segmamba_dicom_write_seg(out, src, &card, &p);
        }
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
        const segmamba_status st = write_seg(argv[2], argv[3], argv[4], argv[5], NULL);
        if (st != SEGMAMBA_OK) fprintf(stderr, "dicom_dump: %s\n", segmamba_get_last_error());
        return (int)st;
    }
    if (argc == 8 && strcmp(argv[1], "--memory-seg") == 0) {
        const segmamba_dicom_seg_options o = {argv[5], argv[6], "SegMamba (in memory)"};
        const segmamba_status st = write_seg(argv[2], argv[3], argv[4], argv[7], &o);
        if (st != SEGMAMBA_OK) fprintf(stderr, "dicom_dump: %s\n", segmamba_get_last_error());
        return (int)st;
    }
    if (argc >= 4 && strcmp(argv[1], "--memory") == 0) {
        segmamba_volume v;
        segmamba_status st = read_folders((const char *const *)argv + 3, argc - 3, &v, NULL);
        if (st == SEGMAMBA_OK) st = segmamba_nifti_write_f32(argv[2], &v.geom, v.data, v.c);
        segmamba_volume_free(&v);
        if (st != SEGMAMBA_OK) fprintf(stderr, "dicom_dump: %s\n", segmamba_get_last_error());
        return (int)st;
    }
    if (argc < 3) {
        fprintf(stderr, "usage: dicom_dump OUT.nii DIR [DIR...] [--series UID...]\n"
                        "       dicom_dump --seg OUT.dcm LABELS.npy CARD.json DIR\n"
                        "       dicom_dump --memory OUT.nii DIR [DIR...]\n"
                        "       dicom_dump --memory-seg OUT.dcm LABELS.npy CARD.json SERIES_UID "
                        "INSTANCE_UID DIR\n");
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
