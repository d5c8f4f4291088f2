/* Test helper for tests/test_nifti_nibabel.py: exposes the NIfTI reader and writers.
 *
 *   nifti_dump read OUT.npy IN...        segmamba_nifti_read_channels(IN...); writes the
 *                                        (C, D, H, W) float32 data to OUT.npy and
 *                                        prints the geometry as one JSON line
 *   nifti_dump write-u8 IN OUT           reads IN, writes it back rounded to uint8
 *   nifti_dump write-f32 IN OUT          reads IN, writes it back as float32
 *   nifti_dump write-bare IN OUT         as write-f32 but from the geometry without
 *                                        its header (affine and spacing only)
 *
 * A failure prints the library's message and exits with the status. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/npy.h"
#include "clinical/nifti.h"

static int fail(sm_status st)
{
    fprintf(stderr, "nifti_dump: %s\n", segmamba_get_last_error());
    return (int)st;
}

static void print_geometry(const segmamba_volume *v)
{
    printf("{\"c\": %d, \"d\": %d, \"h\": %d, \"w\": %d, \"spacing\": [%.17g, %.17g, %.17g], "
           "\"affine\": [",
           v->c, v->d, v->h, v->w, v->geom.spacing[0], v->geom.spacing[1], v->geom.spacing[2]);
    for (int r = 0; r < 4; r++)
        printf("%s[%.17g, %.17g, %.17g, %.17g]", r ? ", " : "", v->geom.affine[r][0],
               v->geom.affine[r][1], v->geom.affine[r][2], v->geom.affine[r][3]);
    printf("]}\n");
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr,
                "usage: nifti_dump read OUT.npy IN... | write-u8|write-f32|write-bare IN OUT\n");
        return 1;
    }
    const char *mode = argv[1];
    segmamba_volume v;
    sm_status st;
    if (strcmp(mode, "read") == 0) {
        st = segmamba_nifti_read_channels((const char *const *)argv + 3, argc - 3, &v);
        if (st != SEGMAMBA_OK) return fail(st);
        const int64_t shape[4] = {v.c, v.d, v.h, v.w};
        st = segmamba_npy_write(argv[2], 4, shape, v.data);
        if (st == SEGMAMBA_OK) print_geometry(&v);
        segmamba_volume_free(&v);
        return st == SEGMAMBA_OK ? 0 : fail(st);
    }
    st = segmamba_nifti_read(argv[2], &v);
    if (st != SEGMAMBA_OK) return fail(st);
    const size_t n = (size_t)v.c * v.d * v.h * v.w;
    if (strcmp(mode, "write-u8") == 0) {
        uint8_t *u = malloc(n);
        if (!u) return 7;
        for (size_t i = 0; i < n; i++) u[i] = (uint8_t)lrintf(fminf(fmaxf(v.data[i], 0), 255));
        st = segmamba_nifti_write_u8(argv[3], &v.geom, u, v.c);
        free(u);
    } else if (strcmp(mode, "write-f32") == 0 || strcmp(mode, "write-bare") == 0) {
        if (strcmp(mode, "write-bare") == 0) sm_geometry_free(&v.geom);
        st = segmamba_nifti_write_f32(argv[3], &v.geom, v.data, v.c);
    } else {
        fprintf(stderr, "nifti_dump: unknown mode '%s'\n", mode);
        st = SEGMAMBA_E_ARG;
    }
    segmamba_volume_free(&v);
    return st == SEGMAMBA_OK ? 0 : fail(st);
}
