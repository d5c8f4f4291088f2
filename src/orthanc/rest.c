/* The plugin's REST routes (on Orthanc's HTTP server, under its
 * authentication) and AutoSegment (a job per stable study whose series
 * match a rule). A request names a configured model and Orthanc series IDs,
 * never a path. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

static void answer_json(OrthancPluginRestOutput *out, sm_json_out *o)
{
    if (o->failed) {
        OrthancPluginSendHttpStatusCode(sm_orthanc, out, 500);
    } else {
        OrthancPluginAnswerBuffer(sm_orthanc, out, o->text, (uint32_t)o->len, "application/json");
    }
    sm_json_out_free(o);
}

static void bad_request(OrthancPluginRestOutput *out, const char *fmt, ...) SM_PRINTF(2, 3);

static void bad_request(OrthancPluginRestOutput *out, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sm_json_out o = {0};
    sm_json_out_printf(&o, "{\"Error\": ");
    sm_json_out_string(&o, msg, strlen(msg));
    sm_json_out_printf(&o, "}\n");
    if (o.failed)
        OrthancPluginSendHttpStatusCode(sm_orthanc, out, 400);
    else
        OrthancPluginSendHttpStatus(sm_orthanc, out, 400, o.text, (uint32_t)o.len);
    sm_json_out_free(&o);
}

static void out_names(sm_json_out *o, const char names[][SEGMAMBA_CARD_NAME_MAX], int n)
{
    sm_json_out_printf(o, "[");
    for (int i = 0; i < n; i++) {
        if (i) sm_json_out_printf(o, ", ");
        sm_json_out_string(o, names[i], strlen(names[i]));
    }
    sm_json_out_printf(o, "]");
}

static OrthancPluginErrorCode get_models(OrthancPluginRestOutput *out, const char *url,
                                         const OrthancPluginHttpRequest *req)
{
    (void)url;
    if (req->method != OrthancPluginHttpMethod_Get) {
        OrthancPluginSendMethodNotAllowed(sm_orthanc, out, "GET");
        return OrthancPluginErrorCode_Success;
    }
    sm_json_out o = {0};
    sm_json_out_printf(&o, "[");
    for (int i = 0; i < sm_config.n_models; i++) {
        const sm_plugin_model *m = &sm_config.models[i];
        segmamba_config c;
        const char *family = "", *mamba = "";
        segmamba_get_config(m->model, &c);
        segmamba_get_config_names(&c, &family, &mamba);
        sm_json_out_printf(&o, "%s{\"Name\": ", i ? ", " : "");
        sm_json_out_string(&o, m->name, strlen(m->name));
        sm_json_out_printf(&o, ", \"Family\": ");
        sm_json_out_string(&o, family, strlen(family));
        sm_json_out_printf(&o, ", \"MambaType\": ");
        sm_json_out_string(&o, mamba, strlen(mamba));
        sm_json_out_printf(&o, ", \"Channels\": ");
        out_names(&o, m->card.channels, m->card.n_channels);
        sm_json_out_printf(&o, ", \"Labels\": ");
        out_names(&o, m->card.labels, m->card.n_labels);
        sm_json_out_printf(&o, ", \"TTA\": %s}", m->tta ? "true" : "false");
    }
    sm_json_out_printf(&o, "]\n");
    answer_json(out, &o);
    return OrthancPluginErrorCode_Success;
}

static int series_exists(const char *id)
{
    char uri[64];
    snprintf(uri, sizeof uri, "/series/%s", id);
    sm_json j;
    if (sm_orthanc_get_json(uri, &j)) return 0;
    sm_json_free(&j);
    return 1;
}

/* Creates and submits the job; its ID (freed with OrthancPluginFreeString)
 * or NULL. */
static char *submit(const char *model, const char *const *series, int n, int tta)
{
    OrthancPluginJob *job = sm_job_create(model, series, n, tta);
    if (!job) return NULL;
    char *id = OrthancPluginSubmitJob(sm_orthanc, job, 0);
    if (!id) OrthancPluginFreeJob(sm_orthanc, job);
    return id;
}

static OrthancPluginErrorCode post_segment(OrthancPluginRestOutput *out, const char *url,
                                           const OrthancPluginHttpRequest *req)
{
    (void)url;
    if (req->method != OrthancPluginHttpMethod_Post) {
        OrthancPluginSendMethodNotAllowed(sm_orthanc, out, "POST");
        return OrthancPluginErrorCode_Success;
    }
    sm_json body;
    if (sm_json_parse(req->body, req->bodySize, "the request", &body) != SEGMAMBA_OK) {
        bad_request(out, "%s", sm_orthanc_json_error());
        return OrthancPluginErrorCode_Success;
    }
    const sm_json *series = sm_json_get(&body, "Series"), *tta = sm_json_get(&body, "TTA");
    const char *name = sm_json_string(&body, "Model");
    const sm_plugin_model *m = name ? sm_config_find_model(&sm_config, name) : NULL;
    const char *ids[SEGMAMBA_CARD_MAX_CHANNELS];
    int bad = 1;
    for (size_t i = 0; body.type == SM_JSON_OBJECT && i < body.count; i++) {
        const char *k = body.members[i].key;
        if (strcmp(k, "Model") && strcmp(k, "Series") && strcmp(k, "TTA")) {
            bad_request(out, "unknown key \"%s\" (Model, Series, TTA)", k);
            goto done;
        }
    }
    if (body.type != SM_JSON_OBJECT || !name) {
        bad_request(out, "the body must be {\"Model\": name, \"Series\": [series IDs]}");
    } else if (!m) {
        bad_request(out, "unknown model \"%s\" (GET /segmamba/models lists them)", name);
    } else if (!series || series->type != SM_JSON_ARRAY) {
        bad_request(out, "\"Series\" must be a list of Orthanc series IDs");
    } else if ((int)series->count != m->card.n_channels) {
        bad_request(out, "model \"%s\" takes %d series, one per channel (%s...); %zu given", name,
                    m->card.n_channels, m->card.channels[0], series->count);
    } else if (tta && tta->type != SM_JSON_BOOL) {
        bad_request(out, "\"TTA\" must be true or false");
    } else {
        bad = 0;
    }
    for (size_t i = 0; !bad && i < series->count; i++) {
        const sm_json *s = &series->items[i];
        if (s->type != SM_JSON_STRING || !sm_orthanc_is_id(s->string)) {
            bad_request(out, "\"Series\"[%zu] is not an Orthanc series ID", i);
            bad = 1;
        } else if (!series_exists(s->string)) {
            bad_request(out, "series %s does not exist", s->string);
            bad = 1;
        }
        ids[i] = s->string;
    }
    if (!bad) {
        char *id = submit(name, ids, (int)series->count, tta ? tta->boolean : m->tta);
        if (!id) {
            OrthancPluginSendHttpStatusCode(sm_orthanc, out, 500);
        } else {
            sm_json_out o = {0};
            sm_json_out_printf(&o, "{\"ID\": \"%s\", \"Path\": \"/jobs/%s\"}\n", id, id);
            answer_json(out, &o);
            OrthancPluginFreeString(sm_orthanc, id);
        }
    }
done:
    sm_json_free(&body);
    return OrthancPluginErrorCode_Success;
}

void sm_rest_register(void)
{
    OrthancPluginRegisterRestCallback(sm_orthanc, "/segmamba/models", get_models);
    OrthancPluginRegisterRestCallback(sm_orthanc, "/segmamba/segment", post_segment);
}

/* ---- AutoSegment ----
 * Orthanc's change callback must not call its REST API, so stable studies
 * go through a queue to a thread of the plugin's own. */

typedef struct study_item {
    struct study_item *next;
    char id[48];
} study_item;

static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queue_cond = PTHREAD_COND_INITIALIZER;
static study_item *queue_head, *queue_tail;
static int queue_stop;
static pthread_t queue_thread;
static int queue_running;
/* SEG SOP Instance UIDs of the jobs submitted: a study that is stable again
 * while its job runs is not submitted twice. */
static char **submitted;
static size_t n_submitted;

static int was_submitted(const char *uid)
{
    for (size_t i = 0; i < n_submitted; i++)
        if (strcmp(submitted[i], uid) == 0) return 1;
    return 0;
}

static void remember(const char *uid)
{
    char **s = realloc(submitted, (n_submitted + 1) * sizeof *s);
    if (!s) return;
    submitted = s;
    submitted[n_submitted] = sm_strdup(uid);
    n_submitted += submitted[n_submitted] != NULL;
}

static void log_info(const char *fmt, ...) SM_PRINTF(1, 2);

static void log_info(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    OrthancPluginLogInfo(sm_orthanc, msg);
}

static void apply_rule(const char *study, const sm_json *all, int r)
{
    const sm_plugin_rule *rule = &sm_config.rules[r];
    const char *ids[SEGMAMBA_CARD_MAX_CHANNELS];
    for (int c = 0; c < rule->n_channels; c++) {
        const sm_plugin_channel_rule *ch = &rule->channels[c];
        int found = 0;
        for (size_t i = 0; i < all->count; i++) {
            const sm_json *tags = sm_json_get(&all->items[i], "MainDicomTags");
            const char *desc = sm_json_string(tags, "SeriesDescription");
            const char *mod = sm_json_string(tags, "Modality");
            const char *id = sm_json_string(&all->items[i], "ID");
            if (!id || !sm_orthanc_is_id(id) || (mod && strcmp(mod, "SEG") == 0)) continue;
            if (ch->modality && (!mod || strcmp(mod, ch->modality) != 0)) continue;
            if (regexec(&ch->re, desc ? desc : "", 0, NULL, 0) != 0) continue;
            ids[c] = id;
            found++;
        }
        if (found != 1) {
            log_info("SegMamba AutoSegment: study %s, rule %d (model %s): %d series match "
                     "channel %d (\"%s\") where one is needed; not segmented",
                     study, r, rule->model->name, found, c + 1, ch->description);
            return;
        }
    }
    const int tta = rule->model->tta;
    sm_segment_request req = {rule->model, rule->model->name, ids, rule->n_channels, tta};
    char series_uid[64], sop[64], why[512];
    if (sm_segment_uids(&req, series_uid, sop, why, sizeof why)) {
        log_info("SegMamba AutoSegment: study %s: %s", study, why);
        return;
    }
    char *existing = OrthancPluginLookupInstance(sm_orthanc, sop);
    if (existing || was_submitted(sop)) {
        log_info("SegMamba AutoSegment: study %s already has its SEG (%s) for model %s", study, sop,
                 rule->model->name);
        if (existing) OrthancPluginFreeString(sm_orthanc, existing);
        return;
    }
    char *job = submit(rule->model->name, ids, rule->n_channels, tta);
    if (!job) {
        OrthancPluginLogError(sm_orthanc, "SegMamba AutoSegment: cannot submit a job");
        return;
    }
    remember(sop);
    log_info("SegMamba AutoSegment: study %s: job %s (model %s)", study, job, rule->model->name);
    OrthancPluginFreeString(sm_orthanc, job);
}

static void autosegment_study(const char *study)
{
    char uri[96];
    snprintf(uri, sizeof uri, "/studies/%s/series", study);
    sm_json all;
    if (sm_orthanc_get_json(uri, &all)) return; /* deleted meanwhile */
    if (all.type == SM_JSON_ARRAY)
        for (int r = 0; r < sm_config.n_rules; r++) apply_rule(study, &all, r);
    sm_json_free(&all);
}

static void *queue_worker(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&queue_lock);
    for (;;) {
        while (!queue_head && !queue_stop) pthread_cond_wait(&queue_cond, &queue_lock);
        if (queue_stop) break;
        study_item *it = queue_head;
        queue_head = it->next;
        if (!queue_head) queue_tail = NULL;
        pthread_mutex_unlock(&queue_lock);
        autosegment_study(it->id);
        free(it);
        pthread_mutex_lock(&queue_lock);
    }
    pthread_mutex_unlock(&queue_lock);
    return NULL;
}

OrthancPluginErrorCode sm_on_change(OrthancPluginChangeType change, OrthancPluginResourceType type,
                                    const char *id)
{
    if (change != OrthancPluginChangeType_StableStudy || type != OrthancPluginResourceType_Study ||
        !queue_running || !id || !sm_orthanc_is_id(id))
        return OrthancPluginErrorCode_Success;
    study_item *it = calloc(1, sizeof *it);
    if (!it) return OrthancPluginErrorCode_NotEnoughMemory;
    strcpy(it->id, id);
    pthread_mutex_lock(&queue_lock);
    if (queue_tail)
        queue_tail->next = it;
    else
        queue_head = it;
    queue_tail = it;
    pthread_cond_signal(&queue_cond);
    pthread_mutex_unlock(&queue_lock);
    return OrthancPluginErrorCode_Success;
}

void sm_autosegment_start(void)
{
    if (sm_config.n_rules == 0) return;
    queue_stop = 0;
    queue_running = pthread_create(&queue_thread, NULL, queue_worker, NULL) == 0;
    if (!queue_running)
        OrthancPluginLogError(sm_orthanc, "SegMamba: cannot start the AutoSegment thread");
}

void sm_autosegment_stop(void)
{
    if (!queue_running) return;
    pthread_mutex_lock(&queue_lock);
    queue_stop = 1;
    pthread_cond_signal(&queue_cond);
    pthread_mutex_unlock(&queue_lock);
    pthread_join(queue_thread, NULL);
    queue_running = 0;
    while (queue_head) {
        study_item *it = queue_head;
        queue_head = it->next;
        free(it);
    }
    queue_tail = NULL;
    for (size_t i = 0; i < n_submitted; i++) free(submitted[i]);
    free(submitted);
    submitted = NULL;
    n_submitted = 0;
}
