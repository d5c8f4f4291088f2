/* torch.save(state_dict) files: a zip holding <prefix>/data.pkl, a pickle
 * that describes the dict, and <prefix>/data/<key>, one raw little-endian
 * storage per key. The pickle is evaluated by the restricted machine of
 * pt_pickle.c; here, the archive around it and the dict it builds, turned
 * into weights. */
#include "io/pt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/binary.h"
#include "io/file.h"
#include "io/memory_cap.h"
#include "io/pt_pickle.h"
#include "io/zip.h"

/* ---- from the pickled dict to weights ---- */

static const pk_value *dict_get(const pk_value *dict, const char *key)
{
    for (size_t i = 0; i + 1 < dict->u.seq.count; i += 2)
        if (sm_pk_is_string(dict->u.seq.items[i], key)) return dict->u.seq.items[i + 1];
    return NULL;
}

static int all_values_are_tensors(const pk_value *dict)
{
    for (size_t i = 1; i < dict->u.seq.count; i += 2)
        if (dict->u.seq.items[i]->kind != PK_TENSOR) return 0;
    return 1;
}

/* The state_dict itself, or the one a training script saved beside its
 * other state (optimizers, epochs, settings: parsed as data, never used):
 * under "network_weights" (nnU-Net), "state_dict" (Lightning), "model" or
 * "module", the first of them present whose value is a dict. */
static sm_status find_state_dict(const vm *m, const pk_value *root, const pk_value **sd)
{
    if (root->kind != PK_DICT)
        return sm_fail(SEGMAMBA_E_FORMAT,
                       "%s: the pickled object is %s, not a dict of tensors "
                       "(state_dict)",
                       m->path, sm_pk_kind_name(root->kind));
    *sd = root;
    if (all_values_are_tensors(root)) return SEGMAMBA_OK;
    static const char *const wrappers[] = {"network_weights", "state_dict", "model", "module"};
    for (size_t i = 0; i < sizeof wrappers / sizeof wrappers[0]; i++) {
        const pk_value *inner = dict_get(root, wrappers[i]);
        if (inner && inner->kind == PK_DICT) {
            *sd = inner;
            return SEGMAMBA_OK;
        }
    }
    return SEGMAMBA_OK; /* the caller names the first entry that is not a tensor */
}

static sm_status add_tensor(const vm *m, const char *name, const pk_tensor *t, uint64_t *budget,
                            sm_weights *out)
{
    int64_t numel = 0;
    sm_numel_ok(t->ndim, t->shape, &numel); /* checked when the tensor was built */
    uint64_t bytes = (uint64_t)numel * sizeof(float);
    if (bytes > *budget)
        return sm_fail(SEGMAMBA_E_NOMEM,
                       "%s: tensors share storages so often that they would need "
                       "more than 16 times the file's size in memory (at '%s')",
                       m->path, name);
    *budget -= bytes;
    char what[96];
    snprintf(what, sizeof what, "tensor '%.60s' as float32", name);
    SM_TRY(sm_memory_check(bytes, m->path, what));
    float *data = malloc(bytes ? (size_t)bytes : 1);
    if (!data) return sm_fail(SEGMAMBA_E_NOMEM, "%s: out of memory for tensor '%s'", m->path, name);
    const pk_value *s = t->storage;
    if (numel > 0)
        sm_dtype_gather(s->u.storage.dtype, 0,
                        s->u.storage.bytes + (size_t)t->offset * sm_dtype_size(s->u.storage.dtype),
                        t->ndim, t->shape, t->stride, data);
    sm_status st = sm_check_finite_tensor(m->path, name, data, numel);
    if (st != SEGMAMBA_OK) {
        free(data);
        return st;
    }
    st = sm_weights_add(out, name, t->ndim, t->shape, data);
    if (st != SEGMAMBA_OK) return sm_fail_wrap(st, "%s", m->path);
    return SEGMAMBA_OK;
}

static sm_status add_state_dict(const vm *m, const pk_value *sd, size_t file_size, sm_weights *out)
{
    uint64_t budget = (uint64_t)file_size * 16;
    for (size_t i = 0; i + 1 < sd->u.seq.count; i += 2) {
        const pk_value *key = sd->u.seq.items[i], *value = sd->u.seq.items[i + 1];
        if (key->kind != PK_STRING || strlen(key->u.str.bytes) != key->u.str.len)
            return sm_fail(
                SEGMAMBA_E_FORMAT, "%s: state_dict has a key that is %s, not a name", m->path,
                key->kind == PK_STRING ? "a string with a NUL byte" : sm_pk_kind_name(key->kind));
        if (value->kind != PK_TENSOR)
            return sm_fail(SEGMAMBA_E_FORMAT, "%s: state_dict entry '%s' is %s, not a tensor",
                           m->path, key->u.str.bytes, sm_pk_kind_name(value->kind));
        SM_TRY(add_tensor(m, key->u.str.bytes, value->u.tensor, &budget, out));
    }
    return SEGMAMBA_OK;
}

/* ---- the archive ---- */

/* torch.save puts everything under one folder named after the file (or
 * "archive"); its data.pkl identifies it. */
static sm_status find_prefix(const char *path, const sm_zip *zip, char **prefix,
                             const sm_zip_entry **pkl)
{
    static const char suffix[] = "/data.pkl";
    const size_t n = sizeof suffix - 1;
    for (size_t i = 0; i < zip->count; i++) {
        const char *name = zip->entries[i].name;
        size_t len = strlen(name);
        const char *slash = strchr(name, '/');
        if (len > n && slash == name + len - n && strcmp(slash, suffix) == 0) {
            *prefix = malloc(len - n + 1);
            if (!*prefix) return sm_fail(SEGMAMBA_E_NOMEM, "%s: out of memory", path);
            memcpy(*prefix, name, len - n);
            (*prefix)[len - n] = 0;
            *pkl = &zip->entries[i];
            return SEGMAMBA_OK;
        }
    }
    return sm_fail(SEGMAMBA_E_FORMAT,
                   "%s: zip archive has no <folder>/data.pkl entry, so it is not "
                   "a torch.save file",
                   path);
}

/* Newer torch versions record the byte order of the storages; older ones
 * wrote little-endian only. */
static sm_status check_archive(const char *path, const sm_zip *zip, const char *prefix)
{
    if (sm_pk_find_member(zip, prefix, "", "constants.pkl"))
        return sm_fail(SEGMAMBA_E_UNSUPPORTED,
                       "%s: this is a TorchScript archive (torch.jit.save); "
                       "save model.state_dict() with torch.save instead",
                       path);
    const sm_zip_entry *e = sm_pk_find_member(zip, prefix, "", "byteorder");
    if (!e) return SEGMAMBA_OK;
    const unsigned char *bytes;
    size_t size;
    SM_TRY(sm_zip_entry_data(zip, e, &bytes, &size));
    if (size == 6 && memcmp(bytes, "little", 6) == 0) return SEGMAMBA_OK;
    if (size == 3 && memcmp(bytes, "big", 3) == 0)
        return sm_fail(SEGMAMBA_E_UNSUPPORTED,
                       "%s: storages were saved big-endian (byteorder "
                       "'big'); re-save the checkpoint on a little-endian machine",
                       path);
    return sm_fail(SEGMAMBA_E_FORMAT, "%s: %s/byteorder is neither 'little' nor 'big'", path,
                   prefix);
}

static sm_status load_archive(const char *path, const sm_zip *zip, size_t file_size,
                              sm_weights *out)
{
    char *prefix = NULL;
    const sm_zip_entry *pkl = NULL;
    SM_TRY(find_prefix(path, zip, &prefix, &pkl));
    vm m = {.path = path, .zip = zip, .prefix = prefix};
    m.none.kind = PK_NONE;
    m.yes.kind = m.no.kind = PK_BOOL;
    m.yes.u.integer = 1;
    m.empty_tuple.kind = PK_TUPLE;
    sm_status st = check_archive(path, zip, prefix);
    if (st == SEGMAMBA_OK) {
        size_t len;
        st = sm_zip_entry_data(zip, pkl, &m.code, &len);
        m.len = len;
    }
    pk_value *root = NULL;
    const pk_value *sd = NULL;
    if (st == SEGMAMBA_OK) st = sm_pk_run(&m, &root);
    if (st == SEGMAMBA_OK) st = find_state_dict(&m, root, &sd);
    if (st == SEGMAMBA_OK) st = add_state_dict(&m, sd, file_size, out);
    sm_pk_free(&m);
    free(prefix);
    return st;
}

sm_status sm_load_pt_memory(const unsigned char *data, size_t size, const char *origin,
                            sm_weights *out)
{
    sm_zip zip;
    SM_TRY(sm_zip_open(&zip, data, size, origin));
    sm_status st = load_archive(origin, &zip, size, out);
    sm_zip_close(&zip);
    return st;
}

sm_status sm_load_pt(const char *path, sm_weights *out)
{
    unsigned char *file;
    size_t size;
    SM_TRY(segmamba_file_read(path, &file, &size));
    sm_status st = sm_load_pt_memory(file, size, path, out);
    free(file);
    return st;
}
