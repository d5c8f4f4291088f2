#include "io/weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

sm_status sm_weights_add(sm_weights *w, const char *name, int ndim, const int64_t *shape,
                         float *data)
{
    if (ndim < 0 || ndim > SM_MAX_DIMS) {
        free(data);
        return sm_fail(SEGMAMBA_E_UNSUPPORTED, "tensor '%s' has %d dimensions (at most %d)", name,
                       ndim, SM_MAX_DIMS);
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

size_t sm_weights_resident_bytes(const sm_weights *w)
{
    size_t bytes = 0;
    for (size_t i = 0; i < w->count; i++)
        if (w->items[i].data) bytes += (size_t)w->items[i].numel * sizeof(float);
    return bytes;
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
