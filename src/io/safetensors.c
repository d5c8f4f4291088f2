/* safetensors: an 8-byte little-endian header length, a JSON header
 * {"name": {"dtype", "shape", "data_offsets": [begin, end]}, ...,
 * "__metadata__": {string: string}}, then the raw little-endian data, with
 * offsets relative to its start. */
#include "io/safetensors.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/binary.h"
#include "io/file.h"
#include "io/json.h"
#include "io/memory_cap.h"

/* The reference implementation refuses larger headers too; even a model
 * with thousands of tensors needs a few MiB at most. */
#define HEADER_LIMIT ((uint64_t)100 << 20)

static const struct {
    const char *name;
    sm_dtype dtype;
} dtypes[] = {
    {"F64", SM_DT_F64},   {"F32", SM_DT_F32}, {"F16", SM_DT_F16}, {"BF16", SM_DT_BF16},
    {"I64", SM_DT_I64},   {"I32", SM_DT_I32}, {"I16", SM_DT_I16}, {"I8", SM_DT_I8},
    {"U64", SM_DT_U64},   {"U32", SM_DT_U32}, {"U16", SM_DT_U16}, {"U8", SM_DT_U8},
    {"BOOL", SM_DT_BOOL},
};

static int has_nul(const char *s, size_t len) { return memchr(s, 0, len) != NULL; }

static sm_status read_metadata(const char *path, const sm_json *meta, sm_weights *out)
{
    if (meta->type != SM_JSON_OBJECT)
        return sm_fail(SEGMAMBA_E_FORMAT, "%s: __metadata__ is not an object", path);
    for (size_t i = 0; i < meta->count; i++) {
        const sm_json_member *m = &meta->members[i];
        if (m->value.type != SM_JSON_STRING)
            return sm_fail(SEGMAMBA_E_FORMAT, "%s: __metadata__ entry '%s' is not a string", path,
                           m->key);
        if (has_nul(m->key, m->key_length) || has_nul(m->value.string, m->value.length))
            return sm_fail(SEGMAMBA_E_UNSUPPORTED,
                           "%s: __metadata__ entry '%s' contains a NUL "
                           "character",
                           path, m->key);
        sm_status st = sm_weights_set_meta(out, m->key, m->value.string);
        if (st != SEGMAMBA_OK) return sm_fail_wrap(st, "%s", path);
    }
    return SEGMAMBA_OK;
}

/* Reads a JSON array of n non-negative integers into dims (room for max). */
static int read_int_array(const sm_json *a, int64_t *dims, int max, int *n)
{
    if (!a || a->type != SM_JSON_ARRAY || a->count > (size_t)max) return 0;
    for (size_t i = 0; i < a->count; i++) {
        const sm_json *v = &a->items[i];
        if (v->type != SM_JSON_NUMBER || !v->is_integer || v->integer < 0) return 0;
        dims[i] = v->integer;
    }
    *n = (int)a->count;
    return 1;
}

static sm_status find_dtype(const char *path, const char *name, const sm_json *d, sm_dtype *dtype)
{
    if (!d || d->type != SM_JSON_STRING)
        return sm_fail(SEGMAMBA_E_FORMAT, "%s: tensor '%s' has no dtype string", path, name);
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++) {
        if (strcmp(d->string, dtypes[i].name) == 0) {
            *dtype = dtypes[i].dtype;
            return SEGMAMBA_OK;
        }
    }
    return sm_fail(SEGMAMBA_E_UNSUPPORTED, "%s: tensor '%s' has dtype '%s', which is not supported",
                   path, name, d->string);
}

/* A tensor is converted to float32, which for 1- and 2-byte dtypes takes
 * more memory than its bytes in the file. */
static sm_status check_tensor_memory(const char *path, const char *name, uint64_t numel)
{
    char what[96];
    snprintf(what, sizeof what, "tensor '%.60s' as float32", name);
    return sm_memory_check(numel * sizeof(float), path, what);
}

static sm_status read_tensor(const char *path, const sm_json_member *m, const unsigned char *data,
                             uint64_t data_size, sm_weights *out)
{
    const char *name = m->key;
    if (has_nul(m->key, m->key_length))
        return sm_fail(SEGMAMBA_E_FORMAT, "%s: a tensor name contains a NUL character", path);
    if (m->value.type != SM_JSON_OBJECT)
        return sm_fail(SEGMAMBA_E_FORMAT, "%s: header entry '%s' is not an object", path, name);
    sm_dtype dtype = SM_DT_F32;
    SM_TRY(find_dtype(path, name, sm_json_get(&m->value, "dtype"), &dtype));
    int64_t shape[SM_MAX_DIMS], offsets[2];
    int ndim, noffsets;
    const sm_json *shape_json = sm_json_get(&m->value, "shape");
    if (shape_json && shape_json->type == SM_JSON_ARRAY && shape_json->count > SM_MAX_DIMS)
        return sm_fail(SEGMAMBA_E_UNSUPPORTED, "%s: tensor '%s' has %zu dimensions (at most %d)",
                       path, name, shape_json->count, SM_MAX_DIMS);
    if (!read_int_array(shape_json, shape, SM_MAX_DIMS, &ndim))
        return sm_fail(SEGMAMBA_E_FORMAT, "%s: tensor '%s' has no shape of non-negative integers",
                       path, name);
    if (!read_int_array(sm_json_get(&m->value, "data_offsets"), offsets, 2, &noffsets) ||
        noffsets != 2)
        return sm_fail(SEGMAMBA_E_FORMAT, "%s: tensor '%s' has no data_offsets [begin, end]", path,
                       name);

    int64_t numel;
    uint64_t bytes;
    if (!sm_numel_ok(ndim, shape, &numel) ||
        !sm_mul_ok((uint64_t)numel, sm_dtype_size(dtype), &bytes))
        return sm_fail(SEGMAMBA_E_FORMAT, "%s: tensor '%s' has a shape whose size overflows", path,
                       name);
    uint64_t begin = (uint64_t)offsets[0], end = (uint64_t)offsets[1];
    if (begin > end || end > data_size)
        return sm_fail(SEGMAMBA_E_FORMAT,
                       "%s: tensor '%s' has data_offsets [%llu, %llu] outside the "
                       "%llu bytes of data (truncated?)",
                       path, name, (unsigned long long)begin, (unsigned long long)end,
                       (unsigned long long)data_size);
    if (end - begin != bytes)
        return sm_fail(SEGMAMBA_E_FORMAT,
                       "%s: tensor '%s' spans %llu bytes but its shape and dtype "
                       "need %llu",
                       path, name, (unsigned long long)(end - begin), (unsigned long long)bytes);
    SM_TRY(check_tensor_memory(path, name, (uint64_t)numel));
    float *values = malloc(numel ? (size_t)numel * sizeof *values : 1);
    if (!values) return sm_fail(SEGMAMBA_E_NOMEM, "%s: out of memory for tensor '%s'", path, name);
    sm_dtype_convert_row(dtype, 0, data + begin, 1, numel, values);
    sm_status st = sm_check_finite_tensor(path, name, values, numel);
    if (st != SEGMAMBA_OK) {
        free(values);
        return st;
    }
    st = sm_weights_add(out, name, ndim, shape, values);
    if (st != SEGMAMBA_OK) return sm_fail_wrap(st, "%s", path);
    return SEGMAMBA_OK;
}

static sm_status read_header(const char *path, const unsigned char *file, size_t size,
                             uint64_t *len)
{
    if (size < 8)
        return sm_fail(SEGMAMBA_E_FORMAT,
                       "%s: file is too short (%zu bytes) for a safetensors "
                       "header",
                       path, size);
    *len = sm_le64(file);
    if (*len > size - 8)
        return sm_fail(SEGMAMBA_E_FORMAT,
                       "%s: safetensors header length %llu is larger than the "
                       "file (%zu bytes)%s",
                       path, (unsigned long long)*len, size,
                       file[0] == 0x80 ? "; this looks like a pickle, i.e. a legacy (pre-1.6) "
                                         "torch.save file: re-save it with a current PyTorch"
                                       : "");
    if (*len > HEADER_LIMIT)
        return sm_fail(SEGMAMBA_E_FORMAT,
                       "%s: safetensors header length %llu exceeds the %llu-byte "
                       "limit",
                       path, (unsigned long long)*len, (unsigned long long)HEADER_LIMIT);
    return SEGMAMBA_OK;
}

/* The JSON header of the size bytes at file (the whole file, or at least
 * its header), parsed into *header, an object; *header_len is its length. */
static sm_status parse_header(const char *path, const unsigned char *file, size_t size,
                              sm_json *header, uint64_t *header_len)
{
    SM_TRY(read_header(path, file, size, header_len));
    size_t n = strlen(path) + sizeof " header";
    char *origin = malloc(n);
    if (!origin) return sm_fail(SEGMAMBA_E_NOMEM, "%s: out of memory", path);
    snprintf(origin, n, "%s header", path);
    sm_status st = sm_json_parse((const char *)file + 8, (size_t)*header_len, origin, header);
    free(origin);
    SM_TRY(st);
    if (header->type != SM_JSON_OBJECT) {
        sm_json_free(header);
        return sm_fail(SEGMAMBA_E_FORMAT, "%s: safetensors header is not a JSON object", path);
    }
    return SEGMAMBA_OK;
}

static sm_status parse_file(const char *path, const unsigned char *file, size_t size,
                            sm_weights *out)
{
    uint64_t header_len = 0;
    sm_json header;
    SM_TRY(parse_header(path, file, size, &header, &header_len));
    sm_status st = SEGMAMBA_OK;
    const unsigned char *data = file + 8 + header_len;
    uint64_t data_size = size - 8 - header_len;
    for (size_t i = 0; i < header.count && st == SEGMAMBA_OK; i++) {
        const sm_json_member *m = &header.members[i];
        if (strcmp(m->key, "__metadata__") == 0)
            st = read_metadata(path, &m->value, out);
        else
            st = read_tensor(path, m, data, data_size, out);
    }
    sm_json_free(&header);
    return st;
}

sm_status sm_load_safetensors_memory(const unsigned char *data, size_t size, const char *origin,
                                     sm_weights *out)
{
    return parse_file(origin, data, size, out);
}

sm_status sm_load_safetensors(const char *path, sm_weights *out)
{
    unsigned char *file;
    size_t size;
    SM_TRY(segmamba_file_read(path, &file, &size));
    sm_status st = parse_file(path, file, size, out);
    free(file);
    return st;
}

sm_status sm_safetensors_metadata(const char *path, sm_weights *out)
{
    /* The header length is checked against the file's size, as the loader
     * checks it, so that both refuse a file with the same message. */
    struct stat sb;
    const size_t size = stat(path, &sb) == 0 && S_ISREG(sb.st_mode) ? (size_t)sb.st_size : SIZE_MAX;
    unsigned char head[8] = {0};
    if (size >= sizeof head) SM_TRY(sm_file_peek(path, head, sizeof head));
    uint64_t len;
    SM_TRY(read_header(path, head, size, &len));
    unsigned char *file = malloc((size_t)len + 8);
    if (!file) return sm_fail(SEGMAMBA_E_NOMEM, "%s: out of memory for the header", path);
    sm_json header;
    sm_status st = sm_file_peek(path, file, (size_t)len + 8);
    if (st == SEGMAMBA_OK) st = parse_header(path, file, (size_t)len + 8, &header, &len);
    free(file);
    SM_TRY(st);
    const sm_json *meta = sm_json_get(&header, "__metadata__");
    if (meta) st = read_metadata(path, meta, out);
    sm_json_free(&header);
    return st;
}

/* ---- writing ---- */

static int by_name(const void *a, const void *b)
{
    const sm_tensor_entry *x = *(const sm_tensor_entry *const *)a;
    const sm_tensor_entry *y = *(const sm_tensor_entry *const *)b;
    return strcmp(x->name, y->name);
}

/* Builds the JSON header for the tensors in the given order, padded with
 * spaces so that the data starts 8-byte aligned, as the reference writer
 * does. */
static sm_status build_header(const char *path, const sm_weights *w,
                              const sm_tensor_entry *const *order, sm_json_out *o)
{
    sm_json_out_printf(o, "{");
    if (w->nmeta) {
        sm_json_out_printf(o, "\"__metadata__\":{");
        for (size_t i = 0; i < w->nmeta; i++) {
            if (i) sm_json_out_printf(o, ",");
            sm_json_out_string(o, w->meta[i].key, strlen(w->meta[i].key));
            sm_json_out_printf(o, ":");
            sm_json_out_string(o, w->meta[i].value, strlen(w->meta[i].value));
        }
        sm_json_out_printf(o, "}");
    }
    uint64_t offset = 0;
    for (size_t k = 0; k < w->count; k++) {
        const sm_tensor_entry *t = order[k];
        if (strcmp(t->name, "__metadata__") == 0)
            return sm_fail(SEGMAMBA_E_ARG, "%s: a tensor cannot be named __metadata__", path);
        if (k || w->nmeta) sm_json_out_printf(o, ",");
        sm_json_out_string(o, t->name, strlen(t->name));
        sm_json_out_printf(o, ":{\"dtype\":\"F32\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++)
            sm_json_out_printf(o, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        uint64_t bytes = (uint64_t)t->numel * sizeof(float);
        sm_json_out_printf(o, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset,
                           (unsigned long long)(offset + bytes));
        offset += bytes;
    }
    sm_json_out_printf(o, "}");
    while (!o->failed && (8 + o->len) % 8 != 0) sm_json_out_printf(o, " ");
    if (o->failed) return sm_fail(SEGMAMBA_E_NOMEM, "%s: out of memory building the header", path);
    return SEGMAMBA_OK;
}

sm_status sm_save_safetensors(const char *path, const sm_weights *w)
{
    if (!sm_host_is_little_endian())
        return sm_fail(SEGMAMBA_E_UNSUPPORTED, "%s: writing safetensors needs a little-endian host",
                       path);
    if (w->count > (size_t)INT_MAX - 2)
        return sm_fail(SEGMAMBA_E_ARG, "%s: too many tensors to write", path);
    const sm_tensor_entry **order = malloc((w->count + 1) * sizeof *order);
    const void **parts = malloc((w->count + 2) * sizeof *parts);
    size_t *sizes = malloc((w->count + 2) * sizeof *sizes);
    sm_json_out header = {0};
    sm_status st = SEGMAMBA_OK;
    if (!order || !parts || !sizes) st = sm_fail(SEGMAMBA_E_NOMEM, "%s: out of memory", path);
    if (st == SEGMAMBA_OK) {
        for (size_t i = 0; i < w->count; i++) order[i] = &w->items[i];
        qsort(order, w->count, sizeof *order, by_name);
        st = build_header(path, w, order, &header);
    }
    if (st == SEGMAMBA_OK) {
        unsigned char len[8];
        for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)header.len >> (8 * i));
        parts[0] = len;
        sizes[0] = 8;
        parts[1] = header.text;
        sizes[1] = header.len;
        for (size_t k = 0; k < w->count; k++) {
            parts[k + 2] = order[k]->data;
            sizes[k + 2] = (size_t)order[k]->numel * sizeof(float);
        }
        st = sm_file_write_atomic(path, parts, sizes, (int)w->count + 2);
    }
    sm_json_out_free(&header);
    free(order);
    free(parts);
    free(sizes);
    return st;
}
