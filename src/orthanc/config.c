/* The "SegMamba" section of Orthanc's configuration: every key checked, the
 * models opened once. Anything wrong stops Orthanc's start with a message
 * naming the key, so a typo never runs with a silent default. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "plugin.h"

static int check_keys(const sm_json *obj, const char *where, const char *const *allowed, char *why,
                      size_t n)
{
    for (size_t i = 0; i < obj->count; i++) {
        int known = 0;
        for (const char *const *a = allowed; *a; a++) known |= strcmp(obj->members[i].key, *a) == 0;
        if (!known) return sm_why(why, n, "%s: unknown key \"%s\"", where, obj->members[i].key);
    }
    return 0;
}

static int get_string(const sm_json *obj, const char *key, const char *where, int required,
                      char **out, char *why, size_t n)
{
    const sm_json *v = sm_json_get(obj, key);
    *out = NULL;
    if (!v) return required ? sm_why(why, n, "%s: \"%s\" is missing", where, key) : 0;
    if (v->type != SM_JSON_STRING || v->length == 0 || strlen(v->string) != v->length)
        return sm_why(why, n, "%s: \"%s\" must be a non-empty string", where, key);
    *out = sm_strdup(v->string);
    return *out ? 0 : sm_why(why, n, "out of memory");
}

static int get_int(const sm_json *obj, const char *key, const char *where, int lo, int hi, int *out,
                   char *why, size_t n)
{
    const sm_json *v = sm_json_get(obj, key);
    if (!v) return 0;
    if (v->type != SM_JSON_NUMBER || !v->is_integer || v->integer < lo || v->integer > hi)
        return sm_why(why, n, "%s: \"%s\" must be an integer from %d to %d", where, key, lo, hi);
    *out = (int)v->integer;
    return 0;
}

static int valid_name(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++)
        if (!(('a' <= *s && *s <= 'z') || ('A' <= *s && *s <= 'Z') || ('0' <= *s && *s <= '9') ||
              *s == '_' || *s == '-' || *s == '.'))
            return 0;
    return 1;
}

static int open_model(const char *name, const sm_json *spec, sm_plugin_model *m, char *why,
                      size_t n)
{
    char where[160];
    snprintf(where, sizeof where, "SegMamba.Models.%s", name);
    static const char *const keys[] = {"Path", "Card", "TTA", NULL};
    if (!valid_name(name))
        return sm_why(why, n, "%s: a model name is letters, digits, '_', '-' and '.'", where);
    if (spec->type != SM_JSON_OBJECT) return sm_why(why, n, "%s: must be an object", where);
    if (check_keys(spec, where, keys, why, n)) return -1;
    m->name = sm_strdup(name);
    m->tta = 1;
    if (!m->name || get_string(spec, "Path", where, 1, &m->path, why, n) ||
        get_string(spec, "Card", where, 0, &m->card_path, why, n))
        return -1;
    const sm_json *tta = sm_json_get(spec, "TTA");
    if (tta && tta->type != SM_JSON_BOOL)
        return sm_why(why, n, "%s: \"TTA\" must be true or false", where);
    if (tta) m->tta = tta->boolean;
    struct stat st;
    if (stat(m->path, &st) != 0) return sm_why(why, n, "%s: cannot open %s", where, m->path);
    m->file_size = (int64_t)st.st_size;
    m->file_mtime = (int64_t)st.st_mtime;
    segmamba_status s =
        segmamba_open_with_card(m->path, m->card_path, NULL, &m->model, &m->card, NULL);
    if (s != SEGMAMBA_OK) return sm_why(why, n, "%s: %s", where, segmamba_get_last_error());
    return 0;
}

static int parse_channel(const sm_json *spec, const char *where, sm_plugin_channel_rule *c,
                         char *why, size_t n)
{
    static const char *const keys[] = {"SeriesDescription", "Modality", NULL};
    if (spec->type != SM_JSON_OBJECT) return sm_why(why, n, "%s: must be an object", where);
    if (check_keys(spec, where, keys, why, n) ||
        get_string(spec, "SeriesDescription", where, 1, &c->description, why, n))
        return -1;
    int err = regcomp(&c->re, c->description, REG_EXTENDED | REG_NOSUB);
    if (err) {
        char msg[128];
        regerror(err, &c->re, msg, sizeof msg);
        free(c->description);
        c->description = NULL;
        return sm_why(why, n, "%s: \"SeriesDescription\" is not a POSIX extended regex: %s", where,
                      msg);
    }
    return get_string(spec, "Modality", where, 0, &c->modality, why, n);
}

static int parse_rule(const sm_plugin_config *cfg, const sm_json *spec, int index,
                      sm_plugin_rule *r, char *why, size_t n)
{
    char where[96];
    snprintf(where, sizeof where, "SegMamba.AutoSegment[%d]", index);
    static const char *const keys[] = {"Model", "Channels", NULL};
    if (spec->type != SM_JSON_OBJECT) return sm_why(why, n, "%s: must be an object", where);
    if (check_keys(spec, where, keys, why, n)) return -1;
    const char *model = sm_json_string(spec, "Model");
    if (!model) return sm_why(why, n, "%s: \"Model\" must be a string", where);
    r->model = sm_config_find_model(cfg, model);
    if (!r->model)
        return sm_why(why, n, "%s: no model named \"%s\" in SegMamba.Models", where, model);
    const sm_json *ch = sm_json_get(spec, "Channels");
    if (!ch || ch->type != SM_JSON_ARRAY)
        return sm_why(why, n, "%s: \"Channels\" must be a list", where);
    if ((int)ch->count != r->model->card.n_channels)
        return sm_why(why, n, "%s: %zu channels for model \"%s\", whose card has %d", where,
                      ch->count, model, r->model->card.n_channels);
    for (size_t i = 0; i < ch->count; i++) {
        char w[128];
        snprintf(w, sizeof w, "%s.Channels[%zu]", where, i);
        if (parse_channel(&ch->items[i], w, &r->channels[i], why, n)) return -1;
        r->n_channels++;
    }
    return 0;
}

int sm_config_load(const char *orthanc_json, sm_plugin_config *cfg, char *why, size_t n)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->concurrent_jobs = 1;
    sm_json root;
    if (sm_json_parse(orthanc_json, strlen(orthanc_json), "Orthanc's configuration", &root) !=
        SEGMAMBA_OK)
        return sm_why(why, n, "cannot read Orthanc's configuration");
    int rc = -1;
    const sm_json *sec = sm_json_get(&root, "SegMamba");
    static const char *const keys[] = {"Models",      "Threads",   "ConcurrentJobs",
                                       "AutoSegment", "ForwardTo", NULL};
    if (!sec) {
        rc = 0;
        goto done;
    }
    if (sec->type != SM_JSON_OBJECT) {
        sm_why(why, n, "SegMamba: must be an object");
        goto done;
    }
    if (check_keys(sec, "SegMamba", keys, why, n) ||
        get_int(sec, "Threads", "SegMamba", 0, 4096, &cfg->threads, why, n) ||
        get_int(sec, "ConcurrentJobs", "SegMamba", 1, 256, &cfg->concurrent_jobs, why, n) ||
        get_string(sec, "ForwardTo", "SegMamba", 0, &cfg->forward_to, why, n))
        goto done;
    /* A ForwardTo that names no modality would fail every job after its work:
     * refused at start, unless Orthanc keeps its modalities in its database. */
    const sm_json *in_db = sm_json_get(&root, "DicomModalitiesInDatabase");
    const sm_json *modalities = sm_json_get(&root, "DicomModalities");
    if (cfg->forward_to && !(in_db && in_db->type == SM_JSON_BOOL && in_db->boolean) &&
        !sm_json_get(modalities, cfg->forward_to)) {
        sm_why(why, n, "SegMamba.ForwardTo: no modality \"%s\" in Orthanc's DicomModalities",
               cfg->forward_to);
        goto done;
    }
    if (cfg->threads > 0) segmamba_set_threads(cfg->threads);
    const sm_json *models = sm_json_get(sec, "Models");
    if (models && models->type != SM_JSON_OBJECT) {
        sm_why(why, n, "SegMamba.Models: must be an object of name: {\"Path\": ...}");
        goto done;
    }
    if (models && models->count) {
        cfg->models = calloc(models->count, sizeof *cfg->models);
        if (!cfg->models) {
            sm_why(why, n, "out of memory");
            goto done;
        }
        for (size_t i = 0; i < models->count; i++) {
            const char *name = models->members[i].key;
            if (sm_config_find_model(cfg, name)) {
                sm_why(why, n, "SegMamba.Models: \"%s\" twice", name);
                goto done;
            }
            cfg->n_models++;
            if (open_model(name, &models->members[i].value, &cfg->models[i], why, n)) goto done;
        }
    }
    const sm_json *rules = sm_json_get(sec, "AutoSegment");
    if (rules && rules->type != SM_JSON_ARRAY) {
        sm_why(why, n, "SegMamba.AutoSegment: must be a list of rules");
        goto done;
    }
    if (rules && rules->count) {
        cfg->rules = calloc(rules->count, sizeof *cfg->rules);
        if (!cfg->rules) {
            sm_why(why, n, "out of memory");
            goto done;
        }
        for (size_t i = 0; i < rules->count; i++) {
            cfg->n_rules++;
            if (parse_rule(cfg, &rules->items[i], (int)i, &cfg->rules[i], why, n)) goto done;
        }
    }
    rc = 0;
done:
    sm_json_free(&root);
    if (rc) sm_config_free(cfg);
    return rc;
}

void sm_config_free(sm_plugin_config *cfg)
{
    for (int i = 0; i < cfg->n_models; i++) {
        sm_plugin_model *m = &cfg->models[i];
        if (m->model) segmamba_close(m->model);
        free(m->name);
        free(m->path);
        free(m->card_path);
    }
    for (int i = 0; i < cfg->n_rules; i++)
        for (int c = 0; c < SEGMAMBA_CARD_MAX_CHANNELS; c++) {
            sm_plugin_channel_rule *ch = &cfg->rules[i].channels[c];
            if (ch->description) regfree(&ch->re);
            free(ch->description);
            free(ch->modality);
        }
    free(cfg->models);
    free(cfg->rules);
    free(cfg->forward_to);
    memset(cfg, 0, sizeof *cfg);
}

const sm_plugin_model *sm_config_find_model(const sm_plugin_config *cfg, const char *name)
{
    for (int i = 0; i < cfg->n_models; i++)
        if (cfg->models[i].name && strcmp(cfg->models[i].name, name) == 0) return &cfg->models[i];
    return NULL;
}
