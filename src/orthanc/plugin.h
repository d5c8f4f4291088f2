/* The Orthanc plugin's shared state and the functions its files call in each
 * other: for the files of src/orthanc/ only. The plugin sees the engine
 * through include/ (the public API of the shared library) and uses the
 * project's JSON reader (src/io/json.c, compiled into the plugin). */
#ifndef SM_ORTHANC_PLUGIN_H
#define SM_ORTHANC_PLUGIN_H

#include <orthanc/OrthancCPlugin.h>
#include <pthread.h>
#include <regex.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "io/json.h"
#include "segmamba_pipeline.h"

#define SM_PLUGIN_NAME "segmamba"
#define SM_JOB_TYPE "SegMamba"

/* One configured model, opened at start-up and shared by the jobs (its
 * forwards take turns, segmamba_forward says so). */
typedef struct sm_plugin_model {
    char *name;
    char *path;
    char *card_path;
    int tta;
    int64_t file_size;
    int64_t file_mtime; /* with name, path and size: part of the SEG's UIDs */
    segmamba_model *model;
    segmamba_card card;
} sm_plugin_model;

typedef struct sm_plugin_channel_rule {
    char *description; /* the POSIX extended regex as written, for messages */
    regex_t re;
    char *modality; /* NULL: any */
} sm_plugin_channel_rule;

typedef struct sm_plugin_rule {
    const sm_plugin_model *model;
    int n_channels;
    sm_plugin_channel_rule channels[SEGMAMBA_CARD_MAX_CHANNELS];
} sm_plugin_rule;

typedef struct sm_plugin_config {
    int n_models;
    sm_plugin_model *models;
    int threads;         /* 0: the engine's default */
    int concurrent_jobs; /* segmentations computed at once */
    int n_rules;
    sm_plugin_rule *rules;
    char *forward_to; /* NULL: no forwarding */
} sm_plugin_config;

/* The plugin's one global state: Orthanc's context and the configuration,
 * both set in OrthancPluginInitialize and read-only afterwards. */
extern OrthancPluginContext *sm_orthanc;
extern sm_plugin_config sm_config;

/* config.c: parses the "SegMamba" section of Orthanc's configuration text
 * and opens the models; on failure writes the reason to why. */
int sm_config_load(const char *orthanc_json, sm_plugin_config *cfg, char *why, size_t n);
void sm_config_free(sm_plugin_config *cfg);
const sm_plugin_model *sm_config_find_model(const sm_plugin_config *cfg, const char *name);

/* orthanc_io.c: Orthanc's REST API read as JSON, and small helpers. */
int sm_orthanc_get_json(const char *uri, sm_json *out);
int sm_orthanc_is_id(const char *s); /* an Orthanc resource ID: hex groups and '-' */
char *sm_strdup(const char *s);
/* Writes a message to why (n bytes) and returns -1. */
int sm_why(char *why, size_t n, const char *fmt, ...) SM_PRINTF(3, 4);
double sm_now(void);

/* job.c: the "SegMamba" job (model_name and series copied), ready for
 * OrthancPluginSubmitJob; NULL when out of memory. */
OrthancPluginJob *sm_job_create(const char *model_name, const char *const *series, int n_series,
                                int tta);
OrthancPluginJob *sm_job_unserialize(const char *type, const char *serialized);

/* segment.c: the work of one job, on the job's worker thread. */
typedef struct sm_segment_request {
    const sm_plugin_model *model;
    const char *model_name;
    const char *const *series; /* Orthanc series IDs, one per card channel */
    int n_series;
    int tta;
} sm_segment_request;

/* Called by the work with its progress (0..1); returns nonzero to cancel. */
typedef int (*sm_segment_progress_fn)(void *user, float progress);

/* Runs the request. On success *content is the job's content (JSON text,
 * malloc'd); on failure *content is {"Error", "Status"} and the status is
 * returned. */
segmamba_status sm_segment_run(const sm_segment_request *req, sm_segment_progress_fn progress,
                               void *user, char **content);

/* The SEG's UIDs (each "2.25." and a decimal, at most 64 bytes with the
 * terminator) for the request's inputs, from what Orthanc knows of its
 * series; 0 on success, else nonzero with why. */
int sm_segment_uids(const sm_segment_request *req, char *series_uid, char *instance_uid, char *why,
                    size_t n);

/* rest.c: the REST routes and AutoSegment. */
void sm_rest_register(void);
void sm_autosegment_start(void);
void sm_autosegment_stop(void);
OrthancPluginErrorCode sm_on_change(OrthancPluginChangeType change, OrthancPluginResourceType type,
                                    const char *id);

/* plugin.c: the metrics, after each job. */
void sm_metrics_job_done(int success, double seconds);

/* The message of the last sm_json_parse that failed on this thread: the
 * plugin's own copy of src/core/error.c, renamed (src/orthanc/meson.build). */
const char *sm_orthanc_json_error(void);

/* JSON readers of the parser's tree. */
const char *sm_json_string(const sm_json *object, const char *key);

#endif
