/* libOrthancSegMamba: the SegMamba engine inside Orthanc (docs/orthanc.md).
 * Orthanc's entry points: the configuration read and the models opened at
 * start-up (a model that cannot be opened stops Orthanc's start), the REST
 * routes, the job unserializer, AutoSegment and the Prometheus metrics. */
#include <stdio.h>
#include <stdlib.h>

#include "plugin.h"

OrthancPluginContext *sm_orthanc;
sm_plugin_config sm_config;

static pthread_mutex_t metrics_lock = PTHREAD_MUTEX_INITIALIZER;
static double jobs_done, jobs_failed, seconds_sum, seconds_count, seconds_last;

static void publish_metrics(void)
{
    OrthancPluginSetMetricsValue(sm_orthanc, "segmamba_jobs_done", (float)jobs_done,
                                 OrthancPluginMetricsType_Default);
    OrthancPluginSetMetricsValue(sm_orthanc, "segmamba_jobs_failed", (float)jobs_failed,
                                 OrthancPluginMetricsType_Default);
    OrthancPluginSetMetricsValue(sm_orthanc, "segmamba_job_seconds_sum", (float)seconds_sum,
                                 OrthancPluginMetricsType_Default);
    OrthancPluginSetMetricsValue(sm_orthanc, "segmamba_job_seconds_count", (float)seconds_count,
                                 OrthancPluginMetricsType_Default);
    OrthancPluginSetMetricsValue(sm_orthanc, "segmamba_job_seconds_last", (float)seconds_last,
                                 OrthancPluginMetricsType_Default);
}

void sm_metrics_job_done(int success, double seconds)
{
    pthread_mutex_lock(&metrics_lock);
    if (success) {
        jobs_done += 1;
        seconds_sum += seconds;
        seconds_count += 1;
        seconds_last = seconds;
    } else {
        jobs_failed += 1;
    }
    publish_metrics();
    pthread_mutex_unlock(&metrics_lock);
}

ORTHANC_PLUGINS_API int32_t OrthancPluginInitialize(OrthancPluginContext *context)
{
    sm_orthanc = context;
    if (OrthancPluginCheckVersion(context) == 0) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "SegMamba: this Orthanc (%s) is older than the SDK the plugin was built with "
                 "(%d.%d.%d)",
                 context->orthancVersion, ORTHANC_PLUGINS_MINIMAL_MAJOR_NUMBER,
                 ORTHANC_PLUGINS_MINIMAL_MINOR_NUMBER, ORTHANC_PLUGINS_MINIMAL_REVISION_NUMBER);
        OrthancPluginLogError(context, msg);
        return -1;
    }
    OrthancPluginSetDescription(context, "SegMamba segmentation jobs (DICOM series in, SEG out)");
    char *json = OrthancPluginGetConfiguration(context);
    char why[2048];
    const int rc = json ? sm_config_load(json, &sm_config, why, sizeof why) : -1;
    if (json) OrthancPluginFreeString(context, json);
    if (rc != 0) {
        char msg[2200];
        snprintf(msg, sizeof msg, "SegMamba: %s", json ? why : "no configuration from Orthanc");
        OrthancPluginLogError(context, msg);
        return -1;
    }
    char msg[256];
    snprintf(
        msg, sizeof msg, "SegMamba %s: %d model(s), %d AutoSegment rule(s), %d concurrent job(s)",
        segmamba_get_version(), sm_config.n_models, sm_config.n_rules, sm_config.concurrent_jobs);
    OrthancPluginLogWarning(context, msg);
    publish_metrics();
    sm_rest_register();
    OrthancPluginRegisterJobsUnserializer(context, sm_job_unserialize);
    OrthancPluginRegisterOnChangeCallback(context, sm_on_change);
    sm_autosegment_start();
    return 0;
}

ORTHANC_PLUGINS_API void OrthancPluginFinalize(void)
{
    sm_autosegment_stop();
    sm_config_free(&sm_config);
}

ORTHANC_PLUGINS_API const char *OrthancPluginGetName(void) { return SM_PLUGIN_NAME; }

ORTHANC_PLUGINS_API const char *OrthancPluginGetVersion(void) { return SEGMAMBA_VERSION_STRING; }
