/* NumPy .npy: "\x93NUMPY", a version, a header length, a header that is a
 * Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), },
 * then the raw array. */
#include "io/npy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/binary.h"
#include "io/file.h"
#include "io/memory_cap.h"

static const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

typedef struct npy_header {
    sm_dtype dtype;
    int big_endian;
    int fortran_order;
    int ndim;
    int64_t shape[SM_MAX_DIMS];
} npy_header;

/* A cursor over the header text, for messages naming the file. */
typedef struct cursor {
    const char *path;
    const unsigned char *s;
    size_t len, pos;
} cursor;

static sm_status header_error(const cursor *c, const char *what)
{
    return sm_fail(SEGMAMBA_E_FORMAT, "%s: npy header, at character %zu: %s", c->path, c->pos,
                   what);
}

static void skip_spaces(cursor *c)
{
    while (c->pos < c->len && (c->s[c->pos] == ' ' || c->s[c->pos] == '\t')) c->pos++;
}

/* Consumes ch (after spaces) if it is next. */
static int accept(cursor *c, char ch)
{
    skip_spaces(c);
    if (c->pos < c->len && c->s[c->pos] == (unsigned char)ch) {
        c->pos++;
        return 1;
    }
    return 0;
}

/* A quoted string without escapes, which is all numpy writes for keys and
 * simple dtypes. */
static int read_quoted(cursor *c, const unsigned char **s, size_t *n)
{
    skip_spaces(c);
    if (c->pos >= c->len || (c->s[c->pos] != '\'' && c->s[c->pos] != '"')) return 0;
    unsigned char quote = c->s[c->pos];
    const unsigned char *start = c->s + c->pos + 1;
    const unsigned char *end = memchr(start, quote, c->len - c->pos - 1);
    if (!end || memchr(start, '\\', (size_t)(end - start))) return 0;
    *s = start;
    *n = (size_t)(end - start);
    c->pos = (size_t)(end + 1 - c->s);
    return 1;
}

static int word_is(const unsigned char *s, size_t n, const char *word)
{
    return strlen(word) == n && memcmp(s, word, n) == 0;
}

static sm_status read_descr(cursor *c, npy_header *h)
{
    static const struct {
        const char *code;
        sm_dtype dtype;
    } codes[] = {
        {"f8", SM_DT_F64}, {"f4", SM_DT_F32}, {"f2", SM_DT_F16}, {"i8", SM_DT_I64},
        {"i4", SM_DT_I32}, {"i2", SM_DT_I16}, {"i1", SM_DT_I8},  {"u8", SM_DT_U64},
        {"u4", SM_DT_U32}, {"u2", SM_DT_U16}, {"u1", SM_DT_U8},  {"b1", SM_DT_BOOL},
    };
    const unsigned char *s;
    size_t n;
    if (!read_quoted(c, &s, &n))
        return sm_fail(SEGMAMBA_E_UNSUPPORTED,
                       "%s: npy descr is not a plain dtype string "
                       "(structured arrays are not supported)",
                       c->path);
    if (n >= 1 && strchr("<>|=", s[0])) {
        for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
            if (!word_is(s + 1, n - 1, codes[i].code)) continue;
            h->dtype = codes[i].dtype;
            h->big_endian = s[0] == '>' || (s[0] == '=' && !sm_host_is_little_endian());
            return SEGMAMBA_OK;
        }
    }
    return sm_fail(SEGMAMBA_E_UNSUPPORTED,
                   "%s: npy dtype '%.*s' is not supported (float, integer "
                   "or bool arrays only)",
                   c->path, n > 32 ? 32 : (int)n, (const char *)s);
}

static sm_status read_bool(cursor *c, int *value)
{
    skip_spaces(c);
    const char *words[] = {"False", "True"};
    for (int v = 0; v < 2; v++) {
        size_t n = strlen(words[v]);
        if (c->len - c->pos >= n && memcmp(c->s + c->pos, words[v], n) == 0) {
            c->pos += n;
            *value = v;
            return SEGMAMBA_OK;
        }
    }
    return header_error(c, "fortran_order is neither True nor False");
}

static int read_dim(cursor *c, int64_t *dim)
{
    skip_spaces(c);
    size_t start = c->pos;
    int64_t v = 0;
    while (c->pos < c->len && c->s[c->pos] >= '0' && c->s[c->pos] <= '9') {
        int d = c->s[c->pos++] - '0';
        if (v > (INT64_MAX - d) / 10) return 0;
        v = v * 10 + d;
    }
    if (c->pos == start) return 0;
    if (c->pos < c->len && c->s[c->pos] == 'L') c->pos++; /* Python 2 long */
    *dim = v;
    return 1;
}

/* A tuple of non-negative ints: (), (3,), (2, 3). */
static sm_status read_shape(cursor *c, npy_header *h)
{
    if (!accept(c, '(')) return header_error(c, "shape is not a tuple");
    h->ndim = 0;
    while (!accept(c, ')')) {
        if (h->ndim == SM_MAX_DIMS)
            return sm_fail(SEGMAMBA_E_UNSUPPORTED, "%s: npy array has more than %d dimensions",
                           c->path, SM_MAX_DIMS);
        if (!read_dim(c, &h->shape[h->ndim])) return header_error(c, "bad dimension in shape");
        h->ndim++;
        if (!accept(c, ',')) {
            if (!accept(c, ')')) return header_error(c, "expected ',' or ')' in shape");
            break;
        }
    }
    return SEGMAMBA_OK;
}

static sm_status parse_header(const char *path, const unsigned char *text, size_t len,
                              npy_header *h)
{
    cursor c = {path, text, len, 0};
    int seen[3] = {0, 0, 0}; /* descr, fortran_order, shape */
    if (!accept(&c, '{')) return header_error(&c, "expected '{'");
    while (!accept(&c, '}')) {
        const unsigned char *key;
        size_t n;
        if (!read_quoted(&c, &key, &n)) return header_error(&c, "expected a quoted key");
        if (!accept(&c, ':')) return header_error(&c, "expected ':' after key");
        int which = word_is(key, n, "descr")           ? 0
                    : word_is(key, n, "fortran_order") ? 1
                    : word_is(key, n, "shape")         ? 2
                                                       : -1;
        if (which < 0 || seen[which]) return header_error(&c, "unexpected or repeated key");
        seen[which] = 1;
        if (which == 0) SM_TRY(read_descr(&c, h));
        if (which == 1) SM_TRY(read_bool(&c, &h->fortran_order));
        if (which == 2) SM_TRY(read_shape(&c, h));
        if (!accept(&c, ',')) {
            if (!accept(&c, '}')) return header_error(&c, "expected ',' or '}'");
            break;
        }
    }
    if (!seen[0] || !seen[1] || !seen[2])
        return header_error(&c, "header lacks one of 'descr', 'fortran_order', 'shape'");
    return SEGMAMBA_OK;
}

/* Finds the header text and where the data starts, per format version. */
static sm_status locate_header(const char *path, const unsigned char *file, size_t size,
                               size_t *header, size_t *header_len)
{
    if (size < 10 || memcmp(file, magic, sizeof magic) != 0)
        return sm_fail(SEGMAMBA_E_FORMAT, "%s: not an .npy file (no \\x93NUMPY magic)", path);
    unsigned major = file[6], minor = file[7];
    if (major == 1) {
        *header = 10;
        *header_len = sm_le16(file + 8);
    } else if (major == 2 || major == 3) {
        if (size < 12) return sm_fail(SEGMAMBA_E_FORMAT, "%s: npy file is truncated", path);
        *header = 12;
        *header_len = sm_le32(file + 8);
    } else {
        return sm_fail(SEGMAMBA_E_UNSUPPORTED, "%s: npy format version %u.%u is not supported",
                       path, major, minor);
    }
    if (!sm_range_ok(size, *header, *header_len))
        return sm_fail(SEGMAMBA_E_FORMAT,
                       "%s: npy header length %zu runs past the end of the "
                       "file (%zu bytes)",
                       path, *header_len, size);
    return SEGMAMBA_OK;
}

static sm_status read_array(const char *path, const unsigned char *file, size_t size,
                            segmamba_array *out)
{
    size_t header = 0, header_len = 0;
    SM_TRY(locate_header(path, file, size, &header, &header_len));
    npy_header h = {0};
    SM_TRY(parse_header(path, file + header, header_len, &h));
    int64_t numel;
    uint64_t bytes;
    if (!sm_numel_ok(h.ndim, h.shape, &numel) ||
        !sm_mul_ok((uint64_t)numel, sm_dtype_size(h.dtype), &bytes))
        return sm_fail(SEGMAMBA_E_FORMAT, "%s: npy shape is too large", path);
    size_t data = header + header_len;
    if (bytes != size - data)
        return sm_fail(SEGMAMBA_E_FORMAT,
                       "%s: npy data is %zu bytes but the shape and dtype need "
                       "%llu (truncated?)",
                       path, size - data, (unsigned long long)bytes);
    SM_TRY(sm_memory_check((uint64_t)numel * sizeof(float), path, "the array as float32"));
    float *values = malloc(numel ? (size_t)numel * sizeof *values : 1);
    if (!values)
        return sm_fail(SEGMAMBA_E_NOMEM, "%s: out of memory for %lld values", path,
                       (long long)numel);
    if (numel) {
        /* Fortran order is C order of the reversed shape; reading it through
         * column-major strides yields the C-order array. No product below
         * exceeds numel, so none overflows. */
        int64_t stride[SM_MAX_DIMS];
        for (int k = 0; k < h.ndim; k++) {
            int i = h.fortran_order ? k : h.ndim - 1 - k;
            int prev = h.fortran_order ? i - 1 : i + 1;
            stride[i] = k ? stride[prev] * h.shape[prev] : 1;
        }
        sm_dtype_gather(h.dtype, h.big_endian, file + data, h.ndim, h.shape, stride, values);
    }
    out->ndim = h.ndim;
    memcpy(out->shape, h.shape, sizeof h.shape);
    out->numel = numel;
    out->data = values;
    return SEGMAMBA_OK;
}

sm_status sm_npy_parse(const unsigned char *data, size_t size, const char *origin,
                       segmamba_array *out)
{
    memset(out, 0, sizeof *out);
    return read_array(origin, data, size, out);
}

sm_status segmamba_array_check_finite(const segmamba_array *a, const char *origin)
{
    size_t first;
    const size_t bad = sm_count_nonfinite(a->data, (size_t)a->numel, &first);
    if (!bad) return SEGMAMBA_OK;
    /* The element's index in each dimension, for the message. */
    char where[SM_MAX_DIMS * 24 + 4];
    size_t rest = first, used = 0;
    int64_t index[SM_MAX_DIMS] = {0};
    for (int d = a->ndim - 1; d >= 0; d--) {
        index[d] = (int64_t)(rest % (size_t)a->shape[d]);
        rest /= (size_t)a->shape[d];
    }
    where[used++] = '[';
    for (int d = 0; d < a->ndim; d++)
        used += (size_t)snprintf(where + used, sizeof where - used, "%s%lld", d ? ", " : "",
                                 (long long)index[d]);
    snprintf(where + used, sizeof where - used, "]");
    const float v = a->data[first];
    return sm_fail(SEGMAMBA_E_UNSUPPORTED,
                   "%s: element %s is %s (%zu of %lld values are not "
                   "finite); replace NaN and infinite values before running the model",
                   origin, where,
                   isnan(v) ? "NaN"
                   : v > 0  ? "+inf"
                            : "-inf",
                   bad, (long long)a->numel);
}

sm_status segmamba_npy_read(const char *path, segmamba_array *out)
{
    memset(out, 0, sizeof *out);
    unsigned char *file;
    size_t size;
    SM_TRY(segmamba_file_read(path, &file, &size));
    sm_status st = read_array(path, file, size, out);
    free(file);
    return st;
}

sm_status segmamba_npy_write(const char *path, int ndim, const int64_t *shape, const float *data)
{
    int64_t numel;
    if (ndim < 0 || ndim > SM_MAX_DIMS || !sm_numel_ok(ndim, shape, &numel))
        return sm_fail(SEGMAMBA_E_ARG, "%s: cannot write an array of %d dimensions with this shape",
                       path, ndim);
    if (!sm_host_is_little_endian())
        return sm_fail(SEGMAMBA_E_UNSUPPORTED, "%s: writing .npy needs a little-endian host", path);
    /* Bounded by the text below plus SM_MAX_DIMS numbers of 20 digits. */
    char header[64 * 6];
    memcpy(header, magic, sizeof magic);
    header[6] = 1; /* version 1.0 */
    header[7] = 0;
    int n = 10;
    n += snprintf(header + n, sizeof header - (size_t)n,
                  "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (int i = 0; i < ndim; i++)
        n += snprintf(header + n, sizeof header - (size_t)n, "%s%lld", i ? ", " : "",
                      (long long)shape[i]);
    n += snprintf(header + n, sizeof header - (size_t)n, "%s), }", ndim == 1 ? "," : "");
    /* Spaces then a newline, so that the data starts 64-byte aligned as
     * numpy's own writer aligns it. */
    while ((n + 1) % 64 != 0) header[n++] = ' ';
    header[n++] = '\n';
    header[8] = (char)((n - 10) & 0xff);
    header[9] = (char)((n - 10) >> 8);
    const void *parts[2] = {header, data};
    size_t sizes[2] = {(size_t)n, (size_t)numel * sizeof(float)};
    return sm_file_write_atomic(path, parts, sizes, 2);
}

void segmamba_array_free(segmamba_array *a)
{
    free(a->data);
    memset(a, 0, sizeof *a);
}
