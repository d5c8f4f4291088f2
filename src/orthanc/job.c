/* The "SegMamba" Orthanc job. Orthanc calls Step() and Stop() only between
 * steps, and a segmentation is one long call (segmamba_predict), so the work
 * runs on a worker thread the first Step() starts; Step() then only looks
 * at it every STEP_WAIT_MS. Stop() (cancel, pause, shutdown) raises a flag
 * that the engine's progress callback returns, and joins the thread.
 *
 * Orthanc 1.10's plugin job SDK gives a job no way to set the ErrorDetails
 * of GET /jobs/ID: a failed job's message is in its Content
 * ({"Error": ..., "Status": ...}).
 *
 * Durability: GetSerialized() is what Orthanc saves in its database; the
 * unserializer rebuilds the job from it after a restart, and a restored job
 * that was running starts its work again. Its SEG has UIDs that depend only
 * on the inputs, so a SEG stored before the restart is not stored twice. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "plugin.h"

#define STEP_WAIT_MS 150

/* ConcurrentJobs: how many jobs compute at once. Orthanc may run more jobs
 * than that (its own ConcurrentJobs); the others wait here at progress 0. */
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t slots_free = PTHREAD_COND_INITIALIZER;
static int slots_used;

typedef struct sm_job {
    char *model_name;
    char **series;
    int n_series;
    int tta;
    const sm_plugin_model *model; /* NULL: not configured (a restored job) */
    char *restore_error;          /* a job that could not be restored fails with this */

    pthread_mutex_t lock;
    pthread_t thread;
    int started;  /* the worker thread exists (not yet joined) */
    int finished; /* the worker is done: status and content are its result */
    atomic_int cancel;
    segmamba_status status;
    double seconds;
    float progress;
    char *content; /* JSON text the job shows */
    /* Strings handed to Orthanc stay valid until the job is freed: Orthanc
     * reads them after the call returns, perhaps while the worker finishes. */
    char **retired;
    int n_retired;
    /* GetSerialized's answers: Orthanc saves its jobs on every change, so
     * only the last two are kept (it parses each before asking again). */
    char *serialized[2];
    int next_serialized;
} sm_job;

static void retire(sm_job *j, char *s)
{
    if (!s) return;
    char **r = realloc(j->retired, (size_t)(j->n_retired + 1) * sizeof *r);
    if (!r) return; /* leaks s rather than freeing what Orthanc may still read */
    j->retired = r;
    j->retired[j->n_retired++] = s;
}

static char *describe(const sm_job *j, const char *content)
{
    sm_json_out o = {0};
    sm_json_out_printf(&o, "{\"Model\": ");
    sm_json_out_string(&o, j->model_name, strlen(j->model_name));
    sm_json_out_printf(&o, ", \"Series\": [");
    for (int i = 0; i < j->n_series; i++) {
        if (i) sm_json_out_printf(&o, ", ");
        sm_json_out_string(&o, j->series[i], strlen(j->series[i]));
    }
    sm_json_out_printf(&o, "], \"TTA\": %s", j->tta ? "true" : "false");
    if (content) {
        sm_json_out_printf(&o, ", \"Content\": ");
        sm_json_out_string(&o, content, strlen(content));
    }
    sm_json_out_printf(&o, "}");
    if (o.failed) sm_json_out_free(&o);
    return o.text;
}

static void free_job(void *p)
{
    sm_job *j = p;
    if (j->started) {
        atomic_store(&j->cancel, 1);
        pthread_mutex_lock(&slots_lock);
        pthread_cond_broadcast(&slots_free);
        pthread_mutex_unlock(&slots_lock);
        pthread_join(j->thread, NULL);
    }
    for (int i = 0; i < j->n_series; i++) free(j->series[i]);
    for (int i = 0; i < j->n_retired; i++) free(j->retired[i]);
    free(j->retired);
    free(j->serialized[0]);
    free(j->serialized[1]);
    free(j->series);
    free(j->model_name);
    free(j->restore_error);
    free(j->content);
    pthread_mutex_destroy(&j->lock);
    free(j);
}

static float get_progress(void *p)
{
    sm_job *j = p;
    pthread_mutex_lock(&j->lock);
    float f = j->progress;
    pthread_mutex_unlock(&j->lock);
    return f;
}

static const char *get_content(void *p)
{
    sm_job *j = p;
    pthread_mutex_lock(&j->lock);
    const char *c = j->content ? j->content : "{}";
    pthread_mutex_unlock(&j->lock);
    return c;
}

static const char *get_serialized(void *p)
{
    sm_job *j = p;
    pthread_mutex_lock(&j->lock);
    char *s = describe(j, j->finished ? j->content : NULL);
    free(j->serialized[j->next_serialized]);
    j->serialized[j->next_serialized] = s;
    j->next_serialized ^= 1;
    pthread_mutex_unlock(&j->lock);
    return s;
}

static int on_progress(void *user, float progress)
{
    sm_job *j = user;
    pthread_mutex_lock(&j->lock);
    j->progress = progress;
    pthread_mutex_unlock(&j->lock);
    return atomic_load(&j->cancel);
}

static int take_slot(sm_job *j)
{
    pthread_mutex_lock(&slots_lock);
    while (slots_used >= sm_config.concurrent_jobs && !atomic_load(&j->cancel))
        pthread_cond_wait(&slots_free, &slots_lock);
    const int got = !atomic_load(&j->cancel);
    slots_used += got;
    pthread_mutex_unlock(&slots_lock);
    return got;
}

static void give_slot(void)
{
    pthread_mutex_lock(&slots_lock);
    slots_used--;
    pthread_cond_broadcast(&slots_free);
    pthread_mutex_unlock(&slots_lock);
}

static void *worker(void *p)
{
    sm_job *j = p;
    double t0 = sm_now();
    char *content = NULL;
    segmamba_status st = SEGMAMBA_E_CANCELLED;
    if (take_slot(j)) {
        t0 = sm_now(); /* the job's seconds count from its turn */
        const sm_segment_request req = {j->model, j->model_name, (const char *const *)j->series,
                                        j->n_series, j->tta};
        st = sm_segment_run(&req, on_progress, j, &content);
        give_slot();
    }
    pthread_mutex_lock(&j->lock);
    retire(j, j->content);
    j->content = content;
    j->status = st;
    j->seconds = sm_now() - t0;
    if (st == SEGMAMBA_OK) j->progress = 1.f;
    j->finished = 1;
    pthread_mutex_unlock(&j->lock);
    return NULL;
}

static void fail_now(sm_job *j, const char *msg)
{
    sm_json_out o = {0};
    sm_json_out_printf(&o, "{\"Error\": ");
    sm_json_out_string(&o, msg, strlen(msg));
    sm_json_out_printf(&o, ", \"Status\": \"E_ARG\"}");
    retire(j, j->content);
    j->content = o.failed ? NULL : o.text;
    j->status = SEGMAMBA_E_ARG;
    j->finished = 1;
}

static OrthancPluginJobStepStatus step(void *p)
{
    sm_job *j = p;
    pthread_mutex_lock(&j->lock);
    if (!j->started && !j->finished) {
        if (j->restore_error) {
            fail_now(j, j->restore_error);
        } else if (!j->model) {
            char msg[256];
            snprintf(msg, sizeof msg, "model \"%s\" is not in this Orthanc's SegMamba.Models",
                     j->model_name);
            fail_now(j, msg);
        } else {
            atomic_store(&j->cancel, 0);
            j->progress = 0.f;
            if (pthread_create(&j->thread, NULL, worker, j) == 0)
                j->started = 1;
            else
                fail_now(j, "cannot start the job's thread");
        }
    }
    const int finished = j->finished;
    pthread_mutex_unlock(&j->lock);
    if (!finished) {
        const struct timespec wait = {0, STEP_WAIT_MS * 1000000L};
        nanosleep(&wait, NULL);
        return OrthancPluginJobStepStatus_Continue;
    }
    pthread_mutex_lock(&j->lock);
    const int joined = j->started;
    pthread_mutex_unlock(&j->lock);
    if (joined) pthread_join(j->thread, NULL);
    pthread_mutex_lock(&j->lock);
    j->started = 0;
    const segmamba_status st = j->status;
    const double seconds = j->seconds;
    pthread_mutex_unlock(&j->lock);
    sm_metrics_job_done(st == SEGMAMBA_OK, seconds);
    return st == SEGMAMBA_OK ? OrthancPluginJobStepStatus_Success
                             : OrthancPluginJobStepStatus_Failure;
}

/* Leaves the job ready to run from the start (after a pause, a cancel or
 * Orthanc's Reset before a resubmission). */
static void rewind_job(sm_job *j)
{
    pthread_mutex_lock(&j->lock);
    const int running = j->started;
    pthread_mutex_unlock(&j->lock);
    if (running) {
        atomic_store(&j->cancel, 1);
        pthread_mutex_lock(&slots_lock);
        pthread_cond_broadcast(&slots_free);
        pthread_mutex_unlock(&slots_lock);
        pthread_join(j->thread, NULL);
    }
    pthread_mutex_lock(&j->lock);
    j->started = 0;
    j->finished = 0;
    j->progress = 0.f;
    retire(j, j->content);
    j->content = describe(j, NULL);
    pthread_mutex_unlock(&j->lock);
}

static OrthancPluginErrorCode stop(void *p, OrthancPluginJobStopReason reason)
{
    sm_job *j = p;
    if (reason == OrthancPluginJobStopReason_Paused ||
        reason == OrthancPluginJobStopReason_Canceled)
        rewind_job(j);
    return OrthancPluginErrorCode_Success;
}

static OrthancPluginErrorCode reset(void *p)
{
    rewind_job(p);
    return OrthancPluginErrorCode_Success;
}

static sm_job *new_job(const char *model_name, const char *const *series, int n_series, int tta)
{
    sm_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    pthread_mutex_init(&j->lock, NULL);
    atomic_init(&j->cancel, 0);
    j->model_name = sm_strdup(model_name);
    j->series = calloc((size_t)n_series + 1, sizeof *j->series);
    j->tta = tta;
    j->model = sm_config_find_model(&sm_config, model_name);
    int ok = j->model_name && j->series;
    for (int i = 0; ok && i < n_series; i++) {
        j->series[i] = sm_strdup(series[i]);
        ok = j->series[i] != NULL;
        j->n_series += ok;
    }
    if (ok) j->content = describe(j, NULL);
    if (!ok || !j->content) {
        free_job(j);
        return NULL;
    }
    return j;
}

static OrthancPluginJob *wrap(sm_job *j)
{
    if (!j) return NULL;
    OrthancPluginJob *job =
        OrthancPluginCreateJob(sm_orthanc, j, free_job, SM_JOB_TYPE, get_progress, get_content,
                               get_serialized, step, stop, reset);
    if (!job) free_job(j);
    return job;
}

OrthancPluginJob *sm_job_create(const char *model_name, const char *const *series, int n_series,
                                int tta)
{
    return wrap(new_job(model_name, series, n_series, tta));
}

/* A job saved by GetSerialized. Whatever is wrong with it (an edited
 * database, a model removed from the configuration) gives a job that fails
 * with a message when it runs, never a crash. */
OrthancPluginJob *sm_job_unserialize(const char *type, const char *serialized)
{
    if (!type || strcmp(type, SM_JOB_TYPE) != 0 || !serialized) return NULL;
    sm_json v;
    const char *error = NULL;
    const char *series[SEGMAMBA_CARD_MAX_CHANNELS] = {NULL};
    int n = 0;
    const char *model = "?";
    int tta = 1;
    if (sm_json_parse(serialized, strlen(serialized), "a saved SegMamba job", &v) != SEGMAMBA_OK) {
        error = "the saved job is not JSON";
    } else {
        const sm_json *s = sm_json_get(&v, "Series");
        const sm_json *t = sm_json_get(&v, "TTA");
        model = sm_json_string(&v, "Model") ? sm_json_string(&v, "Model") : "?";
        if (t && t->type == SM_JSON_BOOL) tta = t->boolean;
        if (!s || s->type != SM_JSON_ARRAY || s->count > SEGMAMBA_CARD_MAX_CHANNELS)
            error = "the saved job has no valid \"Series\"";
        for (size_t i = 0; !error && i < s->count; i++) {
            series[n] = s->items[i].type == SM_JSON_STRING ? s->items[i].string : "";
            if (!sm_orthanc_is_id(series[n++])) error = "the saved job names an invalid series";
        }
        if (!sm_json_string(&v, "Model")) error = "the saved job has no \"Model\"";
    }
    sm_job *j = new_job(model, series, error ? 0 : n, tta);
    const char *content = error ? NULL : sm_json_string(&v, "Content");
    if (j && error) j->restore_error = sm_strdup(error);
    if (j && content) {
        /* A job saved after its work ended shows its result again. */
        char *c = sm_strdup(content);
        if (c) {
            retire(j, j->content);
            j->content = c;
            j->progress = strstr(c, "\"SegInstance\"") ? 1.f : 0.f;
        }
    }
    sm_json_free(&v);
    return wrap(j);
}
