/* NIfTI reading and writing. nifticlib parses and builds headers (qform
 * quaternions, sform, NIfTI-1/2 layouts); the data block is read and written
 * here through zlib so that every failure (truncation, corrupt gzip, a full
 * disk) comes back as a status with a message instead of nifticlib's prints,
 * and so that writes can go through sm_file_write_atomic. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "clinical/nifti.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <nifti/nifti2_io.h>
#include <zlib.h>

#include "io/binary.h"
#include "io/file.h"
#include "io/memory_cap.h"

#define MAX_SIDE (1 << 20)
#define MAX_ELEMENTS (1LL << 32) /* 16 GiB of float32 */

/* ------------------------------------------------------------------------ */
/* Header check before nifticlib: nifticlib rejects bad headers with a NULL
 * and (at most) a print, so the problems worth naming are found here. */

typedef struct raw_header {
    int version; /* 1 or 2 */
    int64_t dim[8];
    int datatype;
} raw_header;

/* zlib inflates ahead into its own buffer, so a damaged stream can show
 * while the header is read: the messages do not say where. */
static sm_status gz_failure(const char *path, gzFile f)
{
    int err;
    const char *msg = gzerror(f, &err);
    if (err == Z_ERRNO) return sm_fail(SEGMAMBA_E_IO, "%s: read failed: %s", path, strerror(errno));
    if (err == Z_BUF_ERROR)
        return sm_fail(SEGMAMBA_E_FORMAT, "%s: truncated (the gzip stream ends early)", path);
    /* zlib prefixes its message with the file name. */
    const size_t n = strlen(path);
    if (msg && strncmp(msg, path, n) == 0 && strncmp(msg + n, ": ", 2) == 0) msg += n + 2;
    return sm_fail(SEGMAMBA_E_FORMAT, "%s: corrupt gzip stream (%s)", path,
                   msg && *msg ? msg : "unknown zlib error");
}

/* Reads up to n bytes; a gzip error is a failure, a short read is not. */
static sm_status gz_read_some(const char *path, gzFile f, void *buf, size_t n, size_t *got)
{
    *got = 0;
    while (*got < n) {
        size_t chunk = n - *got < (1u << 30) ? n - *got : (1u << 30);
        int r = gzread(f, (unsigned char *)buf + *got, (unsigned)chunk);
        if (r < 0) return gz_failure(path, f);
        if (r == 0) break;
        *got += (size_t)r;
    }
    int err;
    gzerror(f, &err);
    if (err != Z_OK && err != Z_BUF_ERROR) return gz_failure(path, f);
    return SEGMAMBA_OK;
}

static gzFile gz_open(const char *path, sm_status *st)
{
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f)
        *st = sm_fail(SEGMAMBA_E_IO, "%s: cannot open: %s", path,
                      errno ? strerror(errno) : "out of memory");
    else
        gzbuffer(f, 1 << 18);
    return f;
}

/* The element type of NIfTI datatype dt; 0 when it is not supported. */
static int datatype_supported(int dt, sm_dtype *t)
{
    switch (dt) {
    case DT_UINT8: *t = SM_DT_U8; return 1;
    case DT_INT8: *t = SM_DT_I8; return 1;
    case DT_UINT16: *t = SM_DT_U16; return 1;
    case DT_INT16: *t = SM_DT_I16; return 1;
    case DT_UINT32: *t = SM_DT_U32; return 1;
    case DT_INT32: *t = SM_DT_I32; return 1;
    case DT_UINT64: *t = SM_DT_U64; return 1;
    case DT_INT64: *t = SM_DT_I64; return 1;
    case DT_FLOAT32: *t = SM_DT_F32; return 1;
    case DT_FLOAT64: *t = SM_DT_F64; return 1;
    default: return 0;
    }
}

static sm_status check_header(const char *path, raw_header *h)
{
    sm_status st = SEGMAMBA_OK;
    gzFile f = gz_open(path, &st);
    if (!f) return st;
    unsigned char b[540];
    size_t got;
    st = gz_read_some(path, f, b, sizeof b, &got);
    gzclose(f);
    if (st != SEGMAMBA_OK) return st;
    if (got < 348)
        return sm_fail(SEGMAMBA_E_FORMAT, "%s: too short for a NIfTI header (%zu bytes)", path,
                       got);
    int big;
    int64_t size = sm_load_int(b, 4, 0);
    if (size == 348 || size == 540)
        big = 0;
    else if ((size = sm_load_int(b, 4, 1)) == 348 || size == 540)
        big = 1;
    else
        return sm_fail(SEGMAMBA_E_FORMAT,
                       "%s: not a NIfTI file (header size field %lld, expected 348 or 540)", path,
                       (long long)sm_load_int(b, 4, 0));
    if (size == 540) {
        if (got < 540)
            return sm_fail(SEGMAMBA_E_FORMAT, "%s: too short for a NIfTI-2 header (%zu bytes)",
                           path, got);
        h->version = 2;
        h->datatype = (int)sm_load_int(b + 12, 2, big);
        for (int i = 0; i < 8; i++) h->dim[i] = sm_load_int(b + 16 + 8 * i, 8, big);
    } else {
        h->version = 1;
        h->datatype = (int)sm_load_int(b + 70, 2, big);
        for (int i = 0; i < 8; i++) h->dim[i] = sm_load_int(b + 40 + 2 * i, 2, big);
    }
    const int64_t nd = h->dim[0];
    if (nd < 1 || nd > 7)
        return sm_fail(SEGMAMBA_E_FORMAT, "%s: invalid number of dimensions dim[0] = %lld", path,
                       (long long)nd);
    for (int i = 1; i <= nd; i++)
        if (h->dim[i] <= 0)
            return sm_fail(SEGMAMBA_E_FORMAT, "%s: dimension %d is %lld (must be at least 1)", path,
                           i, (long long)h->dim[i]);
    for (int i = 5; i <= nd; i++)
        if (h->dim[i] > 1)
            return sm_fail(SEGMAMBA_E_UNSUPPORTED,
                           "%s: %lldD image (dim[%d] = %lld); only 3D images and 4D channel "
                           "stacks are supported",
                           path, (long long)nd, i, (long long)h->dim[i]);
    int64_t total = 1;
    for (int i = 1; i <= nd && i <= 4; i++) {
        if (h->dim[i] > MAX_SIDE || (total *= h->dim[i]) > MAX_ELEMENTS)
            return sm_fail(SEGMAMBA_E_UNSUPPORTED,
                           "%s: absurd dimensions (dim[%d] = %lld, %lld elements so far; at most "
                           "%d per side and %lld in all)",
                           path, i, (long long)h->dim[i], (long long)total, MAX_SIDE,
                           (long long)MAX_ELEMENTS);
    }
    sm_dtype t;
    if (!datatype_supported(h->datatype, &t))
        return sm_fail(SEGMAMBA_E_UNSUPPORTED,
                       "%s: datatype %s (code %d) is not supported: only scalar integer "
                       "(8 to 64 bits) and float32/float64 images can be segmented",
                       path, nifti_datatype_string(h->datatype), h->datatype);
    return SEGMAMBA_OK;
}

/* ------------------------------------------------------------------------ */
/* Reading */

/* The data block as stored, in native byte order. */
static sm_status read_data(const char *path, const nifti_image *nim, unsigned char *buf,
                           size_t nbytes)
{
    const char *iname = nim->iname ? nim->iname : path;
    sm_status st = SEGMAMBA_OK;
    gzFile f = gz_open(iname, &st);
    if (!f) return st;
    if (nim->iname_offset < 0 || gzseek(f, (z_off_t)nim->iname_offset, SEEK_SET) < 0) {
        st = gz_failure(iname, f);
        gzclose(f);
        return st;
    }
    size_t got;
    st = gz_read_some(iname, f, buf, nbytes, &got);
    if (st == SEGMAMBA_OK && got < nbytes)
        st = sm_fail(SEGMAMBA_E_FORMAT, "%s: data truncated: %zu of the %zu data bytes are present",
                     iname, got, nbytes);
    if (st == SEGMAMBA_OK) {
        /* Reading past the data makes zlib check the gzip trailer (CRC, length). */
        unsigned char extra;
        st = gz_read_some(iname, f, &extra, 1, &got);
    }
    gzclose(f);
    if (st != SEGMAMBA_OK) return st;
    if (nim->byteorder != nifti_short_order() && nim->swapsize > 1)
        nifti_swap_Nbytes((int64_t)(nbytes / (size_t)nim->swapsize), nim->swapsize, buf);
    return SEGMAMBA_OK;
}

/* An uncompressed data file must hold all the data the header declares;
 * this is checked before anything is allocated for it. A gzip stream's
 * length is known only once decompressed: there the memory cap bounds the
 * allocation, and read_data finds the truncation. */
static sm_status check_data_length(const char *path, const nifti_image *nim, size_t nbytes)
{
    const char *iname = nim->iname ? nim->iname : path;
    sm_status st = SEGMAMBA_OK;
    gzFile f = gz_open(iname, &st);
    if (!f) return st;
    const int direct = gzdirect(f);
    gzclose(f);
    struct stat sb;
    if (!direct || stat(iname, &sb) != 0 || !S_ISREG(sb.st_mode) || nim->iname_offset < 0)
        return SEGMAMBA_OK;
    const uint64_t size = (uint64_t)sb.st_size, offset = (uint64_t)nim->iname_offset;
    const uint64_t have = size > offset ? size - offset : 0;
    if (have < nbytes)
        return sm_fail(SEGMAMBA_E_FORMAT,
                       "%s: data truncated: %llu of the %zu data bytes are present", iname,
                       (unsigned long long)have, nbytes);
    return SEGMAMBA_OK;
}

static double units_to_mm(int xyz_units)
{
    switch (xyz_units) {
    case NIFTI_UNITS_METER: return 1000.0;
    case NIFTI_UNITS_MICRON: return 0.001;
    default: return 1.0; /* mm, or unknown: mm by convention */
    }
}

static void fill_geometry(const nifti_image *nim, segmamba_geometry *g)
{
    const double mm = units_to_mm(nim->xyz_units);
    const double pix[3] = {nim->dz, nim->dy, nim->dx};
    for (int a = 0; a < 3; a++) {
        double s = fabs(pix[a]) * mm;
        g->spacing[a] = isfinite(s) && s > 0 ? s : 1.0;
    }
    memset(g->affine, 0, sizeof g->affine);
    if (nim->sform_code > 0 || nim->qform_code > 0) {
        const nifti_dmat44 *m = nim->sform_code > 0 ? &nim->sto_xyz : &nim->qto_xyz;
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 4; c++) g->affine[r][c] = m->m[r][c] * mm;
    } else {
        g->affine[0][0] = g->spacing[2];
        g->affine[1][1] = g->spacing[1];
        g->affine[2][2] = g->spacing[0];
    }
    g->affine[3][3] = 1.0;
}

sm_status segmamba_nifti_read(const char *path, segmamba_volume *out)
{
    memset(out, 0, sizeof *out);
    raw_header raw;
    SM_TRY(check_header(path, &raw));
    nifti_set_debug_level(0);
    nifti_image *nim = nifti_image_read(path, 0);
    if (!nim)
        return sm_fail(SEGMAMBA_E_FORMAT, "%s: nifticlib cannot parse the NIfTI-%d header", path,
                       raw.version);
    /* check_header saw the same fields; nifticlib's view is the one used. */
    int64_t dim[5] = {0, 1, 1, 1, 1};
    for (int i = 1; i <= 4 && i <= nim->dim[0]; i++) dim[i] = nim->dim[i];
    const size_t nvox = (size_t)dim[1] * (size_t)dim[2] * (size_t)dim[3];
    const size_t nel = nvox * (size_t)dim[4];
    sm_dtype dtype;
    if (!datatype_supported(nim->datatype, &dtype) || nim->nbyper != (int)sm_dtype_size(dtype) ||
        (int64_t)nel != nim->nvox) {
        nifti_image_free(nim);
        return sm_fail(SEGMAMBA_E_FORMAT, "%s: inconsistent NIfTI header", path);
    }
    const size_t nbytes = nel * (size_t)nim->nbyper;
    sm_status st = check_data_length(path, nim, nbytes);
    if (st == SEGMAMBA_OK)
        st = sm_memory_check((uint64_t)nbytes + (uint64_t)nel * sizeof(float), path,
                             "the image (as stored and as float32)");
    if (st != SEGMAMBA_OK) {
        nifti_image_free(nim);
        return st;
    }
    unsigned char *raw_data = malloc(nbytes);
    float *data = malloc(nel * sizeof *data);
    if (!raw_data || !data)
        st = sm_fail(SEGMAMBA_E_NOMEM, "%s: cannot allocate %zu bytes for the image", path,
                     nbytes + nel * sizeof *data);
    if (st == SEGMAMBA_OK) st = read_data(path, nim, raw_data, nbytes);
    if (st != SEGMAMBA_OK) {
        free(raw_data);
        free(data);
        nifti_image_free(nim);
        return st;
    }
    /* The standard: scl_slope 0 means the values are stored unscaled. */
    double slope = nim->scl_slope, inter = nim->scl_inter;
    if (slope == 0 || !isfinite(slope)) {
        slope = 1;
        inter = 0;
    } else if (!isfinite(inter)) {
        inter = 0;
    }
    /* read_data left the values in the host's byte order */
    const int big = !sm_host_is_little_endian();
    for (size_t i = 0; i < nel; i++) {
        const unsigned char *p = raw_data + i * (size_t)nim->nbyper;
        data[i] = (float)(sm_dtype_load_f64(dtype, big, p) * slope + inter);
    }
    free(raw_data);

    out->c = (int)dim[4];
    out->d = (int)dim[3];
    out->h = (int)dim[2];
    out->w = (int)dim[1];
    out->data = data;
    out->geom.d = out->d;
    out->geom.h = out->h;
    out->geom.w = out->w;
    fill_geometry(nim, &out->geom);
    nifti_image *copy = nifti_copy_nim_info(nim);
    nifti_image_free(nim);
    if (!copy) {
        segmamba_volume_free(out);
        return sm_fail(SEGMAMBA_E_NOMEM, "%s: out of memory copying the header", path);
    }
    /* Debian's nifticlib 3.0.1 reports one-file NIfTI-2 as NIfTI-1; the
     * writers keep the input's version. */
    if (raw.version == 2) copy->nifti_type = NIFTI_FTYPE_NIFTI2_1;
    out->geom.header = copy;
    return SEGMAMBA_OK;
}

sm_status segmamba_nifti_read_channels(const char *const *paths, int n, segmamba_volume *out)
{
    memset(out, 0, sizeof *out);
    if (n < 1) return sm_fail(SEGMAMBA_E_ARG, "no input files given");
    if (n == 1) return segmamba_nifti_read(paths[0], out);
    for (int i = 0; i < n; i++) {
        segmamba_volume v;
        sm_status st = segmamba_nifti_read(paths[i], &v);
        char why[256];
        if (st == SEGMAMBA_OK && v.c != 1)
            st = sm_fail(SEGMAMBA_E_UNSUPPORTED,
                         "%s: a 4D image (%d volumes) given as one of %d channel files; each "
                         "must be 3D",
                         paths[i], v.c, n);
        else if (st == SEGMAMBA_OK && i > 0 &&
                 segmamba_geometry_differs(&out->geom, &v.geom, why, sizeof why))
            st = sm_fail(SEGMAMBA_E_SHAPE, "%s and %s: %s", paths[0], paths[i], why);
        const size_t nvox = (size_t)v.d * v.h * v.w;
        if (st == SEGMAMBA_OK && i == 0)
            st = sm_memory_check((uint64_t)n * nvox * sizeof *out->data, paths[0],
                                 "the channels together as float32");
        if (st == SEGMAMBA_OK && i == 0) {
            *out = v; /* the first file's geometry and header */
            out->c = n;
            out->data = malloc((size_t)n * nvox * sizeof *out->data);
            if (!out->data)
                st = sm_fail(SEGMAMBA_E_NOMEM, "cannot allocate %d channels of %dx%dx%d", n, v.w,
                             v.h, v.d);
            v.geom.header = NULL;
        }
        if (st == SEGMAMBA_OK) memcpy(out->data + (size_t)i * nvox, v.data, nvox * sizeof *v.data);
        segmamba_volume_free(&v);
        if (st != SEGMAMBA_OK) {
            segmamba_volume_free(out);
            return st;
        }
    }
    return SEGMAMBA_OK;
}

/* ------------------------------------------------------------------------ */
/* Writing */

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    if (a < b) return 0;
    for (size_t i = 0; i < b; i++)
        if ((s[a - b + i] | 0x20) != (suffix[i] | 0x20)) return 0;
    return 1;
}

/* Sets the fields that describe the data; everything about space is kept. */
static void set_data_fields(nifti_image *nim, const segmamba_geometry *g, int c, int datatype)
{
    const int64_t dims[8] = {c > 1 ? 4 : 3, g->w, g->h, g->d, c, 1, 1, 1};
    for (int i = 0; i < 8; i++) nim->dim[i] = dims[i];
    nim->ndim = dims[0];
    nim->nx = g->w;
    nim->ny = g->h;
    nim->nz = g->d;
    nim->nt = c;
    nim->nu = nim->nv = nim->nw = 1;
    nim->nvox = (int64_t)g->w * g->h * g->d * c;
    nim->datatype = datatype;
    nifti_datatype_sizes(datatype, &nim->nbyper, &nim->swapsize);
    nim->byteorder = nifti_short_order();
    if (c > 1 && !(nim->dt > 0)) nim->dt = 1;
    nim->du = nim->dv = nim->dw = 1;
    for (int i = 4; i < 8; i++) nim->pixdim[i] = i == 4 ? nim->dt : 1;
    nim->scl_slope = 1;
    nim->scl_inter = 0;
    nim->intent_code = datatype == DT_UINT8 && c == 1 ? NIFTI_INTENT_LABEL : NIFTI_INTENT_NONE;
    nim->intent_p1 = nim->intent_p2 = nim->intent_p3 = 0;
    memset(nim->intent_name, 0, sizeof nim->intent_name);
    memset(nim->descrip, 0, sizeof nim->descrip);
    strcpy(nim->descrip, "segmamba");
    memset(nim->aux_file, 0, sizeof nim->aux_file);
    nifti_free_extensions(nim);
}

/* A header for a volume that was not read from a file: sform and qform
 * from the affine, both "aligned to an anatomy", in mm. pixdim is the
 * affine's column lengths (what the qform needs to reproduce it). */
static nifti_image *header_from_affine(const segmamba_geometry *g)
{
    const int64_t dims[8] = {3, g->w, g->h, g->d, 1, 1, 1, 1};
    nifti_image *nim = nifti_make_new_nim(dims, DT_UINT8, 0);
    if (!nim) return NULL;
    nifti_dmat44 m;
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++) m.m[r][c] = g->affine[r][c];
    nim->sto_xyz = m;
    nim->sform_code = NIFTI_XFORM_ALIGNED_ANAT;
    nifti_dmat44_to_quatern(m, &nim->quatern_b, &nim->quatern_c, &nim->quatern_d, &nim->qoffset_x,
                            &nim->qoffset_y, &nim->qoffset_z, &nim->dx, &nim->dy, &nim->dz,
                            &nim->qfac);
    nim->qform_code = NIFTI_XFORM_ALIGNED_ANAT;
    nim->pixdim[1] = nim->dx;
    nim->pixdim[2] = nim->dy;
    nim->pixdim[3] = nim->dz;
    nim->xyz_units = NIFTI_UNITS_MM;
    return nim;
}

static sm_status gzip_buffer(const char *path, const void *parts[], const size_t sizes[],
                             int nparts, int level, unsigned char **out, size_t *out_size)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return sm_fail(SEGMAMBA_E_NOMEM, "%s: cannot start gzip compression", path);
    size_t total = 0;
    for (int i = 0; i < nparts; i++) total += sizes[i];
    const size_t cap = deflateBound(&zs, total);
    unsigned char *buf = malloc(cap);
    if (!buf) {
        deflateEnd(&zs);
        return sm_fail(SEGMAMBA_E_NOMEM, "%s: cannot allocate %zu bytes to compress into", path,
                       cap);
    }
    /* zlib counts in 32 bits: feed and drain at most 1 GiB at a time. */
    const size_t step = (size_t)1 << 30;
    size_t produced = 0;
    int rc = Z_OK;
    for (int i = 0; i < nparts; i++) {
        const unsigned char *p = parts[i];
        size_t left = sizes[i];
        do {
            const size_t chunk = left < step ? left : step;
            zs.next_in = (unsigned char *)p;
            zs.avail_in = (uInt)chunk;
            p += chunk;
            left -= chunk;
            const int flush = i == nparts - 1 && left == 0 ? Z_FINISH : Z_NO_FLUSH;
            do {
                const size_t room = cap - produced < step ? cap - produced : step;
                zs.next_out = buf + produced;
                zs.avail_out = (uInt)room;
                rc = deflate(&zs, flush);
                produced += room - zs.avail_out;
            } while (rc == Z_OK && (zs.avail_out == 0 || flush == Z_FINISH) && produced < cap);
        } while (left > 0 && (rc == Z_OK || rc == Z_BUF_ERROR));
    }
    deflateEnd(&zs);
    if (rc != Z_STREAM_END) {
        free(buf);
        return sm_fail(SEGMAMBA_E_NOMEM, "%s: gzip compression failed (zlib status %d)", path, rc);
    }
    *out = buf;
    *out_size = produced;
    return SEGMAMBA_OK;
}

static sm_status write_volume(const char *path, const segmamba_geometry *g, const void *data,
                              int datatype, int c, double cal_min, double cal_max, int level)
{
    const int gz = ends_with(path, ".nii.gz");
    if (!gz && !ends_with(path, ".nii"))
        return sm_fail(SEGMAMBA_E_ARG, "%s: output name must end in .nii or .nii.gz", path);
    if (c < 1 || g->d < 1 || g->h < 1 || g->w < 1)
        return sm_fail(SEGMAMBA_E_ARG, "%s: nothing to write (%d channels of %dx%dx%d)", path, c,
                       g->w, g->h, g->d);
    nifti_set_debug_level(0);
    nifti_image *nim = g->header ? nifti_copy_nim_info(g->header) : header_from_affine(g);
    if (!nim) return sm_fail(SEGMAMBA_E_NOMEM, "%s: out of memory for the header", path);
    set_data_fields(nim, g, c, datatype);
    nim->cal_min = cal_min;
    nim->cal_max = cal_max;
    const int big = g->w > 32767 || g->h > 32767 || g->d > 32767 || c > 32767;
    const int v2 =
        big || nim->nifti_type == NIFTI_FTYPE_NIFTI2_1 || nim->nifti_type == NIFTI_FTYPE_NIFTI2_2;
    nim->nifti_type = v2 ? NIFTI_FTYPE_NIFTI2_1 : NIFTI_FTYPE_NIFTI1_1;
    /* Header, the 4-byte extension flag (no extensions), data: offsets 352
     * and 544 are already multiples of 16. Set here, as Debian's nifticlib
     * 3.0.1 does not know one-file NIfTI-2 in nifti_set_iname_offset. */
    nim->iname_offset = v2 ? 544 : 352;

    union {
        nifti_1_header n1;
        nifti_2_header n2;
    } hdr;
    const size_t hsize = v2 ? sizeof hdr.n2 : sizeof hdr.n1;
    const int bad =
        v2 ? nifti_convert_nim2n2hdr(nim, &hdr.n2) : nifti_convert_nim2n1hdr(nim, &hdr.n1);
    const int64_t offset = nim->iname_offset;
    const size_t nbytes = (size_t)nim->nvox * (size_t)nim->nbyper;
    nifti_image_free(nim);
    if (bad)
        return sm_fail(SEGMAMBA_E_ARG, "%s: the geometry cannot be expressed as a NIfTI header",
                       path);
    static const unsigned char zeros[4];
    const void *parts[3] = {&hdr, zeros, data};
    const size_t sizes[3] = {hsize, (size_t)offset - hsize, nbytes};
    if (!gz) return sm_file_write_atomic(path, parts, sizes, 3);
    unsigned char *z = NULL;
    size_t zsize = 0;
    SM_TRY(gzip_buffer(path, parts, sizes, 3, level, &z, &zsize));
    const void *zpart[1] = {z};
    const size_t zsizes[1] = {zsize};
    sm_status st = sm_file_write_atomic(path, zpart, zsizes, 1);
    free(z);
    return st;
}

sm_status segmamba_nifti_write_u8(const char *path, const segmamba_geometry *geom,
                                  const uint8_t *data, int c)
{
    const size_t n = (size_t)geom->d * geom->h * geom->w * (size_t)(c > 0 ? c : 0);
    uint8_t hi = 0;
    for (size_t i = 0; i < n; i++) hi = data[i] > hi ? data[i] : hi;
    return write_volume(path, geom, data, DT_UINT8, c, 0, hi, Z_DEFAULT_COMPRESSION);
}

sm_status segmamba_nifti_write_f32(const char *path, const segmamba_geometry *geom,
                                   const float *data, int c)
{
    const size_t n = (size_t)geom->d * geom->h * geom->w * (size_t)(c > 0 ? c : 0);
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (isfinite(data[i])) {
            lo = fmin(lo, data[i]);
            hi = fmax(hi, data[i]);
        }
    if (lo > hi) lo = hi = 0;
    /* Floats compress poorly; the fastest level keeps large maps quick. */
    return write_volume(path, geom, data, DT_FLOAT32, c, lo, hi, 1);
}

int segmamba_file_is_same(const char *a, const char *b)
{
    struct stat sa, sb;
    if (stat(a, &sa) == 0 && stat(b, &sb) == 0)
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    char *ra = realpath(a, NULL), *rb = realpath(b, NULL);
    const int same = ra && rb && strcmp(ra, rb) == 0;
    free(ra);
    free(rb);
    return same;
}
