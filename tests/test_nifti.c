/* NIfTI reader and writers: every datatype and scaling, 4D channels, the
 * geometry carried to outputs, hostile files, channel mismatches. Input files
 * are made with nifticlib's own writer (an independent path from ours);
 * tests/test_nifti_nibabel.py does the same with nibabel. Files go to a fresh
 * folder under tests/work. */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nifti/nifti2_io.h>
#include <zlib.h>

#include "check.h"
#include "clinical/nifti.h"

static char dir[256];

static const char *tmp(const char *name)
{
    static char buf[8][512];
    static int slot;
    char *p = buf[slot++ % 8];
    snprintf(p, 512, "%s/%s", dir, name);
    return p;
}

/* The value written at element i of a test image of datatype dt. */
static double pattern(int dt, size_t i)
{
    const double v =
        (double)(i % 97) -
        ((dt == DT_UINT8 || dt == DT_UINT16 || dt == DT_UINT32 || dt == DT_UINT64) ? 0 : 40);
    return dt == DT_FLOAT32 || dt == DT_FLOAT64 ? v * 0.25 : v;
}

static void store(void *data, int dt, size_t i, double v)
{
    switch (dt) {
    case DT_UINT8: ((uint8_t *)data)[i] = (uint8_t)v; break;
    case DT_INT8: ((int8_t *)data)[i] = (int8_t)v; break;
    case DT_UINT16: ((uint16_t *)data)[i] = (uint16_t)v; break;
    case DT_INT16: ((int16_t *)data)[i] = (int16_t)v; break;
    case DT_UINT32: ((uint32_t *)data)[i] = (uint32_t)v; break;
    case DT_INT32: ((int32_t *)data)[i] = (int32_t)v; break;
    case DT_UINT64: ((uint64_t *)data)[i] = (uint64_t)v; break;
    case DT_INT64: ((int64_t *)data)[i] = (int64_t)v; break;
    case DT_FLOAT32: ((float *)data)[i] = (float)v; break;
    case DT_FLOAT64: ((double *)data)[i] = v; break;
    default: break; /* complex and RGB: left zero */
    }
}

typedef struct spec {
    int dt;
    int64_t dim[8];
    double slope, inter;
    int nifti2;
    int xyz_units;
} spec;

/* Writes nim to path: nifticlib builds the header, the bytes are written
 * here (Debian's nifticlib 3.0.1 cannot write one-file NIfTI-2). */
static int save(nifti_image *nim, const char *path)
{
    const int v2 = nim->nifti_type == NIFTI_FTYPE_NIFTI2_1;
    nim->iname_offset = v2 ? 544 : 352;
    union {
        nifti_1_header n1;
        nifti_2_header n2;
    } h;
    if (v2 ? nifti_convert_nim2n2hdr(nim, &h.n2) : nifti_convert_nim2n1hdr(nim, &h.n1)) return 1;
    const size_t hsize = v2 ? sizeof h.n2 : sizeof h.n1;
    const size_t gz = strlen(path) > 3 && strcmp(path + strlen(path) - 3, ".gz") == 0;
    gzFile f = gzopen(path, gz ? "wb6" : "wbT");
    if (!f) return 1;
    const char zeros[16] = {0};
    int ok = gzwrite(f, &h, (unsigned)hsize) == (int)hsize &&
             gzwrite(f, zeros, (unsigned)(nim->iname_offset - (int64_t)hsize)) ==
                 (int)(nim->iname_offset - (int64_t)hsize);
    const unsigned nbytes = (unsigned)(nim->nvox * nim->nbyper);
    ok = ok && gzwrite(f, nim->data, nbytes) == (int)nbytes;
    return (gzclose(f) != Z_OK) | !ok;
}

/* Writes a file with nifticlib: a rotated sform (code 1) and a different
 * qform (code 2), pixdim 1.5 x 0.75 x 2.5. */
static nifti_image *make(const char *path, const spec *s)
{
    nifti_image *nim = nifti_make_new_nim(s->dim, s->dt, 1);
    if (!nim) return NULL;
    for (size_t i = 0; i < (size_t)nim->nvox; i++) store(nim->data, s->dt, i, pattern(s->dt, i));
    nim->scl_slope = s->slope;
    nim->scl_inter = s->inter;
    nim->dx = nim->pixdim[1] = 1.5;
    nim->dy = nim->pixdim[2] = 0.75;
    nim->dz = nim->pixdim[3] = 2.5;
    nim->xyz_units = s->xyz_units ? s->xyz_units : NIFTI_UNITS_MM;
    const double c = cos(0.3), sn = sin(0.3);
    nifti_dmat44 m = {{{1.5 * c, -0.75 * sn, 0, 10},
                       {1.5 * sn, 0.75 * c, 0, -20},
                       {0, 0, 2.5, 30.5},
                       {0, 0, 0, 1}}};
    nim->sto_xyz = m;
    nim->sform_code = NIFTI_XFORM_SCANNER_ANAT;
    nim->qform_code = NIFTI_XFORM_ALIGNED_ANAT;
    nim->quatern_b = 0;
    nim->quatern_c = 0;
    nim->quatern_d = 0;
    nim->qoffset_x = 1;
    nim->qoffset_y = 2;
    nim->qoffset_z = 3;
    nim->qfac = 1;
    nim->nifti_type = s->nifti2 ? NIFTI_FTYPE_NIFTI2_1 : NIFTI_FTYPE_NIFTI1_1;
    if (save(nim, path) != 0) {
        nifti_image_free(nim);
        return NULL;
    }
    return nim;
}

static void make_file(const char *path, const spec *s)
{
    nifti_image *nim = make(path, s);
    CHECK_MSG(nim != NULL, "cannot make %s", path);
    if (nim) nifti_image_free(nim);
}

static const int all_types[] = {DT_UINT8, DT_INT8,   DT_UINT16, DT_INT16,   DT_UINT32,
                                DT_INT32, DT_UINT64, DT_INT64,  DT_FLOAT32, DT_FLOAT64};

static void test_datatypes(void)
{
    const double slopes[][2] = {{1, 0}, {2.5, -1}, {0, 7}}; /* slope 0: unscaled */
    int n = 0;
    for (size_t t = 0; t < sizeof all_types / sizeof all_types[0]; t++)
        for (int s = 0; s < 3; s++, n++) {
            spec sp = {
                all_types[t], {3, 5, 4, 3, 1, 1, 1, 1}, slopes[s][0], slopes[s][1], n % 2, 0};
            char name[64];
            snprintf(name, sizeof name, "dt%d_%d.nii%s", all_types[t], s, n % 3 ? ".gz" : "");
            const char *path = tmp(name);
            make_file(path, &sp);
            segmamba_volume v;
            sm_status st = segmamba_nifti_read(path, &v);
            CHECK_MSG(st == SEGMAMBA_OK, "%s: %s", path, segmamba_get_last_error());
            if (st != SEGMAMBA_OK) continue;
            CHECK(v.c == 1 && v.d == 3 && v.h == 4 && v.w == 5);
            const double a = slopes[s][0] == 0 ? 1 : slopes[s][0];
            const double b = slopes[s][0] == 0 ? 0 : slopes[s][1];
            int bad = 0;
            for (size_t i = 0; i < 60; i++) bad += v.data[i] != (float)(pattern(sp.dt, i) * a + b);
            CHECK_MSG(bad == 0, "%s: %d values differ", path, bad);
            CHECK(fabs(v.geom.spacing[0] - 2.5) < 1e-6 && fabs(v.geom.spacing[1] - 0.75) < 1e-6 &&
                  fabs(v.geom.spacing[2] - 1.5) < 1e-6);
            CHECK(fabs(v.geom.affine[0][0] - 1.5 * cos(0.3)) < 1e-6 &&
                  fabs(v.geom.affine[2][3] - 30.5) < 1e-6); /* the sform wins */
            CHECK(v.geom.header != NULL);
            segmamba_volume_free(&v);
        }
}

static void test_4d_and_units(void)
{
    spec sp = {DT_INT16, {4, 5, 4, 3, 2, 1, 1, 1}, 1, 0, 0, NIFTI_UNITS_MICRON};
    const char *path = tmp("four.nii.gz");
    make_file(path, &sp);
    segmamba_volume v;
    sm_status st = segmamba_nifti_read(path, &v);
    CHECK_MSG(st == SEGMAMBA_OK, "%s", segmamba_get_last_error());
    if (st != SEGMAMBA_OK) return;
    CHECK(v.c == 2 && v.d == 3 && v.h == 4 && v.w == 5);
    /* channel 1, voxel (k=2, j=3, i=4) is element 60 + 2*20 + 3*5 + 4 of the file */
    CHECK(v.data[60 + 59] == (float)pattern(DT_INT16, 119));
    CHECK(fabs(v.geom.spacing[0] - 0.0025) < 1e-9); /* microns */
    CHECK(fabs(v.geom.affine[2][3] - 0.0305) < 1e-9);
    segmamba_volume_free(&v);

    /* the same file through read_channels with n == 1 */
    const char *one[1] = {path};
    st = segmamba_nifti_read_channels(one, 1, &v);
    CHECK(st == SEGMAMBA_OK && v.c == 2);
    segmamba_volume_free(&v);
}

/* Writes a valid file, then damages it. */
static void refusal(const char *name, const spec *sp, long patch_at, const void *patch,
                    size_t patch_n, long truncate_to, sm_status want, const char *words)
{
    const char *path = tmp(name);
    make_file(path, sp);
    if (patch) {
        FILE *f = fopen(path, "r+b");
        CHECK(f != NULL);
        if (f) {
            fseek(f, patch_at, patch_at < 0 ? SEEK_END : SEEK_SET);
            fwrite(patch, 1, patch_n, f);
            fclose(f);
        }
    }
    if (truncate_to >= 0) CHECK(truncate(path, truncate_to) == 0);
    segmamba_volume v;
    sm_status st = segmamba_nifti_read(path, &v);
    const char *msg = segmamba_get_last_error();
    CHECK_MSG(st == want, "%s: status %d, want %d (%s)", name, st, want, msg);
    CHECK_MSG(check_contains(msg, path) && check_contains(msg, words),
              "%s: message '%s' lacks '%s'", name, msg, words);
    CHECK(v.data == NULL && v.geom.header == NULL);
}

static void test_refusals(void)
{
    const spec ok = {DT_INT16, {3, 20, 20, 20, 1, 1, 1, 1}, 1, 0, 0, 0};
    refusal("trunc.nii", &ok, 0, NULL, 0, 352 + 1000, SEGMAMBA_E_FORMAT, "truncated");
    refusal("trunc.nii.gz", &ok, 0, NULL, 0, 300, SEGMAMBA_E_FORMAT, "truncated");
    refusal("short.nii", &ok, 0, NULL, 0, 100, SEGMAMBA_E_FORMAT, "too short");
    const unsigned char junk[64] = {0x55, 0xaa, 0x12, 0x34, 0x99, 0x77, 0x66, 0x11};
    refusal("corrupt.nii.gz", &ok, 40, junk, sizeof junk, -1, SEGMAMBA_E_FORMAT, "gzip");
    refusal("crc.nii.gz", &ok, -8, junk + 1, 4, -1, SEGMAMBA_E_FORMAT, "gzip");
    const short zero = 0;
    refusal("zerodim.nii", &ok, 40 + 2 * 2, &zero, 2, -1, SEGMAMBA_E_FORMAT, "dimension 2 is 0");
    const spec five = {DT_FLOAT32, {5, 4, 4, 4, 1, 2, 1, 1}, 1, 0, 0, 0};
    refusal("five.nii", &five, 0, NULL, 0, -1, SEGMAMBA_E_UNSUPPORTED, "5D");
    const spec cplx = {DT_COMPLEX64, {3, 4, 4, 4, 1, 1, 1, 1}, 1, 0, 0, 0};
    refusal("complex.nii", &cplx, 0, NULL, 0, -1, SEGMAMBA_E_UNSUPPORTED, "COMPLEX64");
    const spec rgb = {DT_RGB24, {3, 4, 4, 4, 1, 1, 1, 1}, 1, 0, 1, 0};
    refusal("rgb.nii.gz", &rgb, 0, NULL, 0, -1, SEGMAMBA_E_UNSUPPORTED, "RGB24");
    const short huge = 32767;
    const spec big = {DT_UINT8, {3, 4, 4, 4, 1, 1, 1, 1}, 1, 0, 0, 0};
    /* 32767^3 elements claimed by a tiny file */
    FILE *f;
    const char *hp = tmp("huge.nii");
    make_file(hp, &big);
    if ((f = fopen(hp, "r+b"))) {
        for (int i = 1; i <= 3; i++) {
            fseek(f, 40 + 2 * i, SEEK_SET);
            fwrite(&huge, 2, 1, f);
        }
        fclose(f);
    }
    segmamba_volume v;
    CHECK(segmamba_nifti_read(hp, &v) == SEGMAMBA_E_UNSUPPORTED &&
          check_contains(segmamba_get_last_error(), "absurd"));
    CHECK(segmamba_nifti_read(tmp("missing.nii"), &v) == SEGMAMBA_E_IO &&
          check_contains(segmamba_get_last_error(), "missing.nii"));
    const char *np = tmp("notnifti.nii");
    if ((f = fopen(np, "wb"))) {
        for (int i = 0; i < 1000; i++) fputc(i * 7, f);
        fclose(f);
    }
    CHECK(segmamba_nifti_read(np, &v) == SEGMAMBA_E_FORMAT &&
          check_contains(segmamba_get_last_error(), "not a NIfTI file"));
}

static void test_channels(void)
{
    spec a = {DT_INT16, {3, 5, 4, 3, 1, 1, 1, 1}, 1, 0, 0, 0};
    spec b = {DT_FLOAT32, {3, 5, 4, 3, 1, 1, 1, 1}, 2, 0, 1, 0};
    spec c = {DT_UINT8, {3, 5, 4, 4, 1, 1, 1, 1}, 1, 0, 0, 0};
    const char *pa = tmp("ch_a.nii"), *pb = tmp("ch_b.nii.gz"), *pc = tmp("ch_c.nii");
    make_file(pa, &a);
    make_file(pb, &b);
    make_file(pc, &c);
    const char *ok[3] = {pa, pb, pa};
    segmamba_volume v;
    sm_status st = segmamba_nifti_read_channels(ok, 3, &v);
    CHECK_MSG(st == SEGMAMBA_OK, "%s", segmamba_get_last_error());
    if (st == SEGMAMBA_OK) {
        CHECK(v.c == 3 && v.d == 3);
        CHECK(v.data[7] == (float)pattern(DT_INT16, 7));
        CHECK(v.data[60 + 7] == (float)(2 * pattern(DT_FLOAT32, 7)));
        CHECK(v.data[120 + 7] == (float)pattern(DT_INT16, 7));
        segmamba_volume_free(&v);
    }
    const char *bad_dims[2] = {pa, pc};
    st = segmamba_nifti_read_channels(bad_dims, 2, &v);
    CHECK(st == SEGMAMBA_E_SHAPE && v.data == NULL);
    CHECK_MSG(check_contains(segmamba_get_last_error(), "dims differ: 5x4x3 vs 5x4x4") &&
                  check_contains(segmamba_get_last_error(), pa) &&
                  check_contains(segmamba_get_last_error(), pc),
              "%s", segmamba_get_last_error());

    /* a shifted origin and a different spacing, through edited headers */
    nifti_image *nim = make(tmp("ch_shift.nii"), &a);
    if (nim) {
        nim->sto_xyz.m[0][3] += 0.01;
        CHECK(save(nim, tmp("ch_shift.nii")) == 0);
        nim->sto_xyz.m[0][3] -= 0.0099; /* 1e-4 mm: within tolerance */
        CHECK(save(nim, tmp("ch_near.nii")) == 0);
        nim->dz = 3.0;
        CHECK(save(nim, tmp("ch_spacing.nii")) == 0);
        nifti_image_free(nim);
    }
    const char *shift[2] = {pa, tmp("ch_shift.nii")};
    st = segmamba_nifti_read_channels(shift, 2, &v);
    CHECK_MSG(st == SEGMAMBA_E_SHAPE &&
                  check_contains(segmamba_get_last_error(), "affines differ") &&
                  check_contains(segmamba_get_last_error(), "origin"),
              "%s", segmamba_get_last_error());
    const char *near[2] = {pa, tmp("ch_near.nii")};
    st = segmamba_nifti_read_channels(near, 2, &v);
    CHECK_MSG(st == SEGMAMBA_OK, "%s", segmamba_get_last_error());
    segmamba_volume_free(&v);
    const char *spc[2] = {pa, tmp("ch_spacing.nii")};
    st = segmamba_nifti_read_channels(spc, 2, &v);
    CHECK_MSG(st == SEGMAMBA_E_SHAPE &&
                  check_contains(segmamba_get_last_error(),
                                 "spacing differs: 1.5x0.75x2.5 vs 1.5x0.75x3 mm"),
              "%s", segmamba_get_last_error());
    spec four = {DT_INT16, {4, 5, 4, 3, 2, 1, 1, 1}, 1, 0, 0, 0};
    make_file(tmp("ch_4d.nii"), &four);
    const char *with4d[2] = {pa, tmp("ch_4d.nii")};
    CHECK(segmamba_nifti_read_channels(with4d, 2, &v) == SEGMAMBA_E_UNSUPPORTED &&
          check_contains(segmamba_get_last_error(), "4D"));
}

static int header_size(const char *path)
{
    int32_t size = 0;
    gzFile f = gzopen(path, "rb");
    if (f) {
        CHECK(gzread(f, &size, 4) == 4);
        gzclose(f);
    }
    return size;
}

static int files_in_dir_with(const char *part)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, part)) n++;
    if (d) closedir(d);
    return n;
}

static void test_writers(void)
{
    spec sp = {DT_INT16, {3, 5, 4, 3, 1, 1, 1, 1}, 1, 0, 1, 0};
    const char *in = tmp("w_in.nii.gz");
    make_file(in, &sp);
    segmamba_volume v;
    if (segmamba_nifti_read(in, &v) != SEGMAMBA_OK) {
        CHECK_MSG(0, "%s", segmamba_get_last_error());
        return;
    }
    const nifti_image *src = v.geom.header;
    uint8_t lab[3 * 60];
    for (int i = 0; i < 3 * 60; i++) lab[i] = (uint8_t)(i % 5);
    for (int c = 1; c <= 3; c += 2) {
        const char *out = tmp(c == 1 ? "w_lab.nii.gz" : "w_regions.nii");
        sm_status st = segmamba_nifti_write_u8(out, &v.geom, lab, c);
        CHECK_MSG(st == SEGMAMBA_OK, "%s", segmamba_get_last_error());
        nifti_image *r = nifti_image_read(out, 1);
        CHECK(r != NULL);
        if (!r) continue;
        CHECK(r->datatype == DT_UINT8 && r->nx == 5 && r->ny == 4 && r->nz == 3);
        CHECK(c == 1 ? r->ndim == 3 : r->ndim == 4 && r->nt == 3);
        CHECK(r->sform_code == src->sform_code && r->qform_code == src->qform_code);
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++)
                CHECK(fabs(r->sto_xyz.m[i][j] - src->sto_xyz.m[i][j]) < 1e-5 &&
                      fabs(r->qto_xyz.m[i][j] - src->qto_xyz.m[i][j]) < 1e-5);
        CHECK(r->dx == src->dx && r->dy == src->dy && r->dz == src->dz);
        CHECK(r->xyz_units == src->xyz_units);
        CHECK(header_size(out) == 540); /* NIfTI-2, as the input */
        CHECK(strcmp(r->descrip, "segmamba") == 0);
        CHECK(r->scl_slope == 1 && r->scl_inter == 0 && r->cal_min == 0 && r->cal_max == 4);
        CHECK(memcmp(r->data, lab, (size_t)60 * c) == 0);
        nifti_image_free(r);
    }
    unsigned char magic[2] = {0};
    FILE *f = fopen(tmp("w_lab.nii.gz"), "rb");
    if (f) {
        CHECK(fread(magic, 1, 2, f) == 2);
        fclose(f);
    }
    CHECK(magic[0] == 0x1f && magic[1] == 0x8b);

    float prob[2 * 60];
    for (int i = 0; i < 120; i++) prob[i] = (float)i / 119.0f - 0.25f;
    const char *fo = tmp("w_prob.nii.gz");
    CHECK(segmamba_nifti_write_f32(fo, &v.geom, prob, 2) == SEGMAMBA_OK);
    segmamba_volume back;
    if (segmamba_nifti_read(fo, &back) == SEGMAMBA_OK) {
        CHECK(back.c == 2 && memcmp(back.data, prob, sizeof prob) == 0);
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++)
                CHECK(fabs(back.geom.affine[i][j] - v.geom.affine[i][j]) < 1e-5);
        const nifti_image *h = back.geom.header;
        CHECK(fabs(h->cal_min + 0.25) < 1e-6 && fabs(h->cal_max - 0.75) < 1e-6);
        segmamba_volume_free(&back);
    } else {
        CHECK_MSG(0, "%s", segmamba_get_last_error());
    }

    /* no header: the affine alone (a rotation) becomes sform and qform */
    segmamba_geometry bare = v.geom;
    bare.header = NULL;
    const char *bo = tmp("w_bare.nii");
    CHECK(segmamba_nifti_write_f32(bo, &bare, prob, 1) == SEGMAMBA_OK);
    if (segmamba_nifti_read(bo, &back) == SEGMAMBA_OK) {
        const nifti_image *h = back.geom.header;
        CHECK(h->sform_code == NIFTI_XFORM_ALIGNED_ANAT &&
              h->qform_code == NIFTI_XFORM_ALIGNED_ANAT);
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) {
                CHECK(fabs(back.geom.affine[i][j] - v.geom.affine[i][j]) < 1e-5);
                CHECK(fabs(h->qto_xyz.m[i][j] - v.geom.affine[i][j]) < 1e-5);
            }
        for (int a = 0; a < 3; a++) CHECK(fabs(back.geom.spacing[a] - v.geom.spacing[a]) < 1e-6);
        segmamba_volume_free(&back);
    }

    /* failures leave nothing behind */
    CHECK(segmamba_nifti_write_u8(tmp("nodir/x.nii.gz"), &v.geom, lab, 1) == SEGMAMBA_E_IO);
    CHECK(segmamba_nifti_write_u8(tmp("w_bad.png"), &v.geom, lab, 1) == SEGMAMBA_E_ARG &&
          check_contains(segmamba_get_last_error(), ".nii"));
    CHECK(files_in_dir_with("tmp") == 0);
    segmamba_volume_free(&v);
}

static void test_file_is_same(void)
{
    const char *a = tmp("w_lab.nii.gz");
    char other[600];
    snprintf(other, sizeof other, "%s/./w_lab.nii.gz", dir);
    CHECK(segmamba_file_is_same(a, a) == 1);
    CHECK(segmamba_file_is_same(a, other) == 1);
    CHECK(segmamba_file_is_same(a, tmp("w_prob.nii.gz")) == 0);
    CHECK(segmamba_file_is_same(a, tmp("does_not_exist.nii")) == 0);
    const char *link = tmp("w_link.nii.gz");
    unlink(link);
    CHECK(symlink("w_lab.nii.gz", link) == 0);
    CHECK(segmamba_file_is_same(a, link) == 1);
}

int main(void)
{
    mkdir("tests/work", 0777);
    snprintf(dir, sizeof dir, "tests/work/nifti-%ld", (long)getpid());
    if (mkdir(dir, 0777) != 0) {
        perror(dir);
        return 1;
    }
    nifti_set_debug_level(0);
    test_datatypes();
    test_4d_and_units();
    test_refusals();
    test_channels();
    test_writers();
    test_file_is_same();
    if (!check_failures && !getenv("KEEP")) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    }
    return check_report("nifti");
}
