#include "io/checkpoint_meta.h"

#include <stdio.h>
#include <string.h>

sm_status sm_meta_mamba_keys(const sm_json *obj, const char *origin, int nslices[SEGMAMBA_STAGES],
                             int *fue, int *found)
{
    const sm_json *ns = sm_json_get(obj, "nslices"), *f = sm_json_get(obj, "fue");
    if (found) *found = ns || f;
    if (ns) {
        int v[SEGMAMBA_STAGES];
        int ok = ns->type == SM_JSON_ARRAY && ns->count == SEGMAMBA_STAGES;
        for (int i = 0; ok && i < SEGMAMBA_STAGES; i++) {
            const sm_json *x = &ns->items[i];
            ok = x->type == SM_JSON_NUMBER && x->is_integer && x->integer >= 1 &&
                 x->integer <= (1 << 30);
            v[i] = ok ? (int)x->integer : 0;
        }
        if (!ok)
            return sm_fail(SEGMAMBA_E_FORMAT,
                           "%s: \"nslices\" must be an array of %d integers in [1, %d]", origin,
                           SEGMAMBA_STAGES, 1 << 30);
        memcpy(nslices, v, sizeof v);
    }
    if (f) {
        if (f->type != SM_JSON_BOOL)
            return sm_fail(SEGMAMBA_E_FORMAT, "%s: \"fue\" must be true or false", origin);
        *fue = f->boolean;
    }
    return SEGMAMBA_OK;
}

sm_status sm_meta_mamba(const sm_weights *w, const char *path, int nslices[SEGMAMBA_STAGES],
                        int *fue)
{
    const char *key = "card";
    const char *text = sm_weights_meta(w, key);
    if (!text) text = sm_weights_meta(w, key = "config");
    if (!text) return SEGMAMBA_OK;
    char origin[600];
    snprintf(origin, sizeof origin, "%.500s: __metadata__[\"%s\"]", path, key);
    sm_json root;
    SM_TRY(sm_json_parse(text, strlen(text), origin, &root));
    const sm_status st = sm_meta_mamba_keys(&root, origin, nslices, fue, NULL);
    sm_json_free(&root);
    return st;
}
