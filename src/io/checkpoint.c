#include "io/checkpoint.h"

#include <stdlib.h>
#include <string.h>

#include "io/binary.h"
#include "io/file.h"
#include "io/pt.h"
#include "io/safetensors.h"

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
