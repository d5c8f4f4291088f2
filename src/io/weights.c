#include "io/weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/binary.h"
#include "io/file.h"

static char *dup_string(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

const sm_tensor_entry *sm_weights_find(const sm_weights *w, const char *name)
{
    for (size_t i = 0; i < w->count; i++)
        if (strcmp(w->items[i].name, name) == 0) return &w->items[i];
    return NULL;
}

sm_status sm_weights_add(sm_weights *w, const char *name, int ndim,
                         const int64_t *shape, float *data)
{
    if (ndim < 0 || ndim > SM_MAX_DIMS) {
        free(data);
        return sm_fail(SEGMAMBA_E_UNSUPPORTED, "tensor '%s' has %d dimensions (at most %d)",
                       name, ndim, SM_MAX_DIMS);
    }
    if (sm_weights_find(w, name)) {
        free(data);
        return sm_fail(SEGMAMBA_E_FORMAT, "tensor '%s' appears twice", name);
    }
    if (w->count == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        sm_tensor_entry *items = realloc(w->items, cap * sizeof *items);
        if (!items) {
            free(data);
            return sm_fail(SEGMAMBA_E_NOMEM, "out of memory adding tensor '%s'", name);
        }
        w->items = items;
        w->cap = cap;
    }
    sm_tensor_entry *e = &w->items[w->count];
    memset(e, 0, sizeof *e);
    e->name = dup_string(name);
    if (!e->name) {
        free(data);
        return sm_fail(SEGMAMBA_E_NOMEM, "out of memory adding tensor '%s'", name);
    }
    e->ndim = ndim;
    e->numel = 1;
    for (int i = 0; i < ndim; i++) {
        e->shape[i] = shape[i];
        e->numel *= shape[i];
    }
    e->data = data;
    w->count++;
    return SEGMAMBA_OK;
}

void sm_weights_release(sm_weights *w, const char *name)
{
    sm_tensor_entry *e = (sm_tensor_entry *)sm_weights_find(w, name);
    if (!e) return;
    free(e->data);
    e->data = NULL;
}

const char *sm_weights_meta(const sm_weights *w, const char *key)
{
    for (size_t i = 0; i < w->nmeta; i++)
        if (strcmp(w->meta[i].key, key) == 0) return w->meta[i].value;
    return NULL;
}

sm_status sm_weights_set_meta(sm_weights *w, const char *key, const char *value)
{
    char *v = dup_string(value);
    if (!v) return sm_fail(SEGMAMBA_E_NOMEM, "out of memory storing metadata '%s'", key);
    for (size_t i = 0; i < w->nmeta; i++) {
        if (strcmp(w->meta[i].key, key) == 0) {
            free(w->meta[i].value);
            w->meta[i].value = v;
            return SEGMAMBA_OK;
        }
    }
    if (w->nmeta == w->meta_cap) {
        size_t cap = w->meta_cap ? w->meta_cap * 2 : 8;
        sm_meta_entry *m = realloc(w->meta, cap * sizeof *m);
        if (!m) {
            free(v);
            return sm_fail(SEGMAMBA_E_NOMEM, "out of memory storing metadata '%s'", key);
        }
        w->meta = m;
        w->meta_cap = cap;
    }
    char *k = dup_string(key);
    if (!k) {
        free(v);
        return sm_fail(SEGMAMBA_E_NOMEM, "out of memory storing metadata '%s'", key);
    }
    w->meta[w->nmeta].key = k;
    w->meta[w->nmeta].value = v;
    w->nmeta++;
    return SEGMAMBA_OK;
}

void sm_weights_free(sm_weights *w)
{
    for (size_t i = 0; i < w->count; i++) {
        free(w->items[i].name);
        free(w->items[i].data);
    }
    for (size_t i = 0; i < w->nmeta; i++) {
        free(w->meta[i].key);
        free(w->meta[i].value);
    }
    for (size_t i = 0; i < w->nignored; i++) free(w->ignored[i]);
    free(w->items);
    free(w->meta);
    free(w->ignored);
    memset(w, 0, sizeof *w);
}

void sm_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t used = 0;
    int n = snprintf(buf, cap, "(");
    used = n > 0 ? (size_t)n : 0;
    for (int i = 0; i < ndim && used < cap; i++) {
        n = snprintf(buf + used, cap - used, "%s%lld", i ? ", " : "", (long long)shape[i]);
        if (n < 0) break;
        used += (size_t)n;
    }
    if (used < cap) snprintf(buf + used, cap - used, ")");
}

static int starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int all_start_with(const sm_weights *w, const char *prefix)
{
    for (size_t i = 0; i < w->count; i++)
        if (!starts_with(w->items[i].name, prefix)) return 0;
    return w->count > 0;
}

/* Training scripts that wrap the model in DataParallel save every key with a
 * "module." prefix, and torch.compile's wrapper adds "_orig_mod."; strip
 * them only while every key has one, so that a model whose own names begin
 * that way is left alone. Removing a prefix all keys share keeps distinct
 * names distinct. */
static void strip_wrapper_prefixes(sm_weights *w)
{
    static const char *const prefixes[] = {"module.", "_orig_mod."};
    for (int changed = 1; changed;) {
        changed = 0;
        for (size_t p = 0; p < sizeof prefixes / sizeof prefixes[0]; p++) {
            if (!all_start_with(w, prefixes[p])) continue;
            const size_t n = strlen(prefixes[p]);
            for (size_t i = 0; i < w->count; i++) {
                char *s = w->items[i].name;
                memmove(s, s + n, strlen(s + n) + 1);
            }
            changed = 1;
        }
    }
}

/* nnU-Net's deep-supervision heads: trained, never used at inference. */
static const char ds_head_prefix[] = "ds_seg_from_dec";

/* Moves the tensors inference ignores from items to the ignored names, in
 * file order. */
static sm_status set_aside_ignored(sm_weights *w)
{
    size_t kept = 0;
    for (size_t i = 0; i < w->count; i++) {
        sm_tensor_entry *e = &w->items[i];
        if (!starts_with(e->name, ds_head_prefix)) {
            w->items[kept++] = *e;
            continue;
        }
        char **names = sm_grow(w->ignored, &w->ignored_cap, w->nignored + 1, sizeof *names);
        if (!names) {
            /* Keep the store consistent: the entries not yet looked at stay. */
            memmove(&w->items[kept], e, (w->count - i) * sizeof *e);
            w->count = kept + (w->count - i);
            return sm_fail(SEGMAMBA_E_NOMEM, "out of memory listing tensor '%s'", e->name);
        }
        w->ignored = names;
        w->ignored[w->nignored++] = e->name;
        free(e->data);
    }
    w->count = kept;
    return SEGMAMBA_OK;
}

/* nnU-Net's SegMamba calls the head out_main_seg; the official code out. */
static void rename_head(sm_weights *w)
{
    static const char from[] = "out_main_seg.", to[] = "out.";
    int any = 0;
    for (size_t i = 0; i < w->count; i++) {
        if (starts_with(w->items[i].name, to)) return;
        any |= starts_with(w->items[i].name, from);
    }
    if (!any) return;
    for (size_t i = 0; i < w->count; i++) {
        char *s = w->items[i].name;
        if (!starts_with(s, from)) continue;
        const size_t skip = sizeof from - 1, keep = sizeof to - 1;
        memcpy(s, to, keep);
        memmove(s + keep, s + skip, strlen(s + skip) + 1);
    }
}

sm_status sm_weights_normalise(sm_weights *w)
{
    strip_wrapper_prefixes(w);
    SM_TRY(set_aside_ignored(w));
    rename_head(w);
    return SEGMAMBA_OK;
}

/* A zip, i.e. a torch.save file; anything else is taken for safetensors. */
static sm_status is_torch_zip(const char *path, int *zip)
{
    unsigned char magic[4] = {0};
    SM_TRY(sm_file_peek(path, magic, sizeof magic));
    *zip = magic[0] == 'P' && magic[1] == 'K';
    return SEGMAMBA_OK;
}

sm_status sm_load_metadata(const char *path, sm_weights *out)
{
    int zip;
    SM_TRY(is_torch_zip(path, &zip));
    return zip ? SEGMAMBA_OK : sm_safetensors_metadata(path, out);
}

sm_status sm_load_weights(const char *path, sm_weights *out)
{
    int zip;
    SM_TRY(is_torch_zip(path, &zip));
    sm_status st;
    if (zip)
        st = sm_load_pt(path, out);
    else
        st = sm_load_safetensors(path, out);
    if (st != SEGMAMBA_OK) return st;
    return sm_weights_normalise(out);
}
