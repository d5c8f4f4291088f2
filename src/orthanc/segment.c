/* One job's work, on its worker thread: the series' instances read from
 * Orthanc into memory, decoded by the engine's DICOM reader, segmented, the
 * SEG encoded with UIDs that depend only on the inputs, stored back into
 * Orthanc and forwarded. Nothing is written to disk. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

/* Shares of the progress bar: fetching, the network's windows, storing. */
#define FETCH_SHARE 0.15f
#define PREDICT_SHARE 0.8f

typedef struct series_info {
    char *series_uid;
    int n;
    char **ids;  /* Orthanc instance IDs */
    char **sops; /* their SOP Instance UIDs */
} series_info;

static void series_info_free(series_info *s, int n)
{
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < s[i].n; k++) {
            free(s[i].ids[k]);
            free(s[i].sops[k]);
        }
        free(s[i].ids);
        free(s[i].sops);
        free(s[i].series_uid);
    }
    memset(s, 0, (size_t)n * sizeof *s);
}

/* The series' UID and its instances (Orthanc ID, SOP Instance UID). */
static int load_series(const char *id, series_info *s, char *why, size_t n)
{
    char uri[96];
    sm_json j;
    snprintf(uri, sizeof uri, "/series/%s", id);
    if (sm_orthanc_get_json(uri, &j)) return sm_why(why, n, "series %s does not exist", id);
    const char *uid = sm_json_string(sm_json_get(&j, "MainDicomTags"), "SeriesInstanceUID");
    s->series_uid = uid ? sm_strdup(uid) : NULL;
    sm_json_free(&j);
    if (!s->series_uid) return sm_why(why, n, "series %s has no Series Instance UID", id);
    snprintf(uri, sizeof uri, "/series/%s/instances", id);
    if (sm_orthanc_get_json(uri, &j) || j.type != SM_JSON_ARRAY)
        return sm_why(why, n, "cannot list the instances of series %s", id);
    s->ids = calloc(j.count + 1, sizeof *s->ids);
    s->sops = calloc(j.count + 1, sizeof *s->sops);
    int rc = s->ids && s->sops ? 0 : sm_why(why, n, "out of memory");
    for (size_t k = 0; k < j.count && rc == 0; k++) {
        const char *iid = sm_json_string(&j.items[k], "ID");
        const char *sop =
            sm_json_string(sm_json_get(&j.items[k], "MainDicomTags"), "SOPInstanceUID");
        if (!iid || !sop) {
            rc = sm_why(why, n, "series %s: an instance without ID or SOP Instance UID", id);
            break;
        }
        s->ids[s->n] = sm_strdup(iid);
        s->sops[s->n] = sm_strdup(sop);
        s->n++;
        if (!s->ids[s->n - 1] || !s->sops[s->n - 1]) rc = sm_why(why, n, "out of memory");
    }
    sm_json_free(&j);
    if (rc == 0 && s->n == 0) rc = sm_why(why, n, "series %s has no instances", id);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A 128-bit digest of the inputs (stable, not a secret): two 64-bit lanes,
 * FNV-1a and a multiply-xorshift variant, each byte into both. */
typedef struct digest {
    uint64_t a, b;
} digest;

static void hash_bytes(digest *h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h->a = (h->a ^ p[i]) * 0x100000001b3ULL;
        h->b = (h->b ^ p[i]) * 0xff51afd7ed558ccdULL;
        h->b ^= h->b >> 33;
    }
}

static void hash_str(digest *h, const char *s) { hash_bytes(h, s, strlen(s) + 1); }

/* splitmix64's finaliser. */
static uint64_t mix(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* "2.25." and the digest as one 128-bit number in decimal: a UID without a
 * registered root (PS3.5 B.2), at most 44 characters. */
static void uid_from_hash(digest h, char *uid)
{
    const uint64_t hi = mix(h.a ^ mix(h.b)), lo = mix(h.b ^ hi);
    uint32_t limb[4] = {(uint32_t)(hi >> 32), (uint32_t)hi, (uint32_t)(lo >> 32), (uint32_t)lo};
    char digits[48];
    int n = 0;
    for (int nonzero = 1; nonzero;) {
        uint64_t rem = 0;
        nonzero = 0;
        for (int i = 0; i < 4; i++) { /* limb /= 10, most significant first */
            const uint64_t cur = (rem << 32) | limb[i];
            limb[i] = (uint32_t)(cur / 10);
            rem = cur % 10;
            nonzero |= limb[i] != 0;
        }
        digits[n++] = (char)('0' + (int)rem);
    }
    int k = sprintf(uid, "2.25.");
    while (n) uid[k++] = digits[--n];
    uid[k] = '\0';
}

static void make_uids(const sm_segment_request *req, series_info *s, char *series_uid,
                      char *instance_uid)
{
    digest h = {0xcbf29ce484222325ULL, 0x6c62272e07bb0142ULL};
    char num[64];
    hash_str(&h, "segmamba-orthanc-seg-1");
    hash_str(&h, req->model_name);
    hash_str(&h, req->model->path);
    snprintf(num, sizeof num, "%lld %lld %d", (long long)req->model->file_size,
             (long long)req->model->file_mtime, req->tta);
    hash_str(&h, num);
    for (int i = 0; i < req->n_series; i++) {
        char **sorted = malloc((size_t)s[i].n * sizeof *sorted);
        hash_str(&h, s[i].series_uid);
        if (sorted) {
            memcpy(sorted, s[i].sops, (size_t)s[i].n * sizeof *sorted);
            qsort(sorted, (size_t)s[i].n, sizeof *sorted, cmp_str);
        }
        for (int k = 0; k < s[i].n; k++) hash_str(&h, sorted ? sorted[k] : s[i].sops[k]);
        free(sorted);
    }
    digest hs = h, hi = h;
    hash_str(&hs, "series");
    hash_str(&hi, "instance");
    uid_from_hash(hs, series_uid);
    uid_from_hash(hi, instance_uid);
}

static int load_all(const sm_segment_request *req, series_info *s, char *why, size_t n)
{
    if (req->n_series < 1 || req->n_series > SEGMAMBA_CARD_MAX_CHANNELS)
        return sm_why(why, n, "%d series: 1 to %d are possible", req->n_series,
                      SEGMAMBA_CARD_MAX_CHANNELS);
    for (int i = 0; i < req->n_series; i++)
        if (load_series(req->series[i], &s[i], why, n)) return -1;
    return 0;
}

int sm_segment_uids(const sm_segment_request *req, char *series_uid, char *instance_uid, char *why,
                    size_t n)
{
    series_info s[SEGMAMBA_CARD_MAX_CHANNELS] = {{0}};
    int rc = load_all(req, s, why, n);
    if (rc == 0) make_uids(req, s, series_uid, instance_uid);
    series_info_free(s, SEGMAMBA_CARD_MAX_CHANNELS);
    return rc;
}

typedef struct run_state {
    sm_segment_progress_fn progress;
    void *user;
} run_state;

static int on_windows(void *user, int done, int total)
{
    run_state *rs = user;
    float f = total > 0 ? (float)done / (float)total : 0.f;
    return rs->progress(rs->user, FETCH_SHARE + PREDICT_SHARE * f);
}

/* The job's content on failure. */
static char *error_content(segmamba_status st, const char *msg)
{
    sm_json_out o = {0};
    sm_json_out_printf(&o, "{\"Error\": ");
    sm_json_out_string(&o, msg, strlen(msg));
    sm_json_out_printf(&o, ", \"Status\": \"%s\"}", segmamba_get_status_name(st));
    if (o.failed) {
        sm_json_out_free(&o);
        return NULL;
    }
    return o.text;
}

/* A non-negative number with three decimals, written without printf's
 * locale-dependent decimal point (Orthanc sets a locale). */
static void out_fixed3(sm_json_out *o, double x)
{
    long long micro = (long long)(x * 1000.0 + 0.5);
    sm_json_out_printf(o, "%lld.%03lld", micro / 1000, micro % 1000);
}

static char *success_content(const sm_segment_request *req, const segmamba_volume *vol,
                             const segmamba_prediction *p, const char *seg_instance,
                             const char *seg_series, const char *store_status, double seconds)
{
    const segmamba_card *card = &req->model->card;
    const size_t nvox = (size_t)p->d * (size_t)p->h * (size_t)p->w;
    const double voxel_ml =
        vol->geom.spacing[0] * vol->geom.spacing[1] * vol->geom.spacing[2] / 1000.0;
    sm_json_out o = {0};
    sm_json_out_printf(&o, "{\"Model\": ");
    sm_json_out_string(&o, req->model_name, strlen(req->model_name));
    sm_json_out_printf(&o, ", \"Series\": [");
    for (int i = 0; i < req->n_series; i++) {
        if (i) sm_json_out_printf(&o, ", ");
        sm_json_out_string(&o, req->series[i], strlen(req->series[i]));
    }
    sm_json_out_printf(&o, "], \"TTA\": %s, \"SegInstance\": \"%s\", \"SegSeries\": \"%s\", ",
                       req->tta ? "true" : "false", seg_instance, seg_series);
    sm_json_out_printf(&o, "\"StoreStatus\": \"%s\", \"Labels\": {", store_status);
    const int masks = p->n_masks > 0 && p->masks && segmamba_card_get_writes_masks(card);
    for (int l = 1; l < card->n_labels; l++) {
        size_t count = 0;
        if (masks) {
            const uint8_t *m = p->masks + (size_t)(l - 1) * nvox;
            for (size_t v = 0; l - 1 < p->n_masks && v < nvox; v++) count += m[v] != 0;
        } else {
            for (size_t v = 0; v < nvox; v++) count += p->labels[v] == l;
        }
        if (l > 1) sm_json_out_printf(&o, ", ");
        sm_json_out_string(&o, card->labels[l], strlen(card->labels[l]));
        sm_json_out_printf(&o, ": {\"Voxels\": %zu, \"VolumeML\": ", count);
        out_fixed3(&o, (double)count * voxel_ml);
        sm_json_out_printf(&o, "}");
    }
    sm_json_out_printf(&o, "}, \"Seconds\": ");
    out_fixed3(&o, seconds);
    sm_json_out_printf(&o, "}");
    if (o.failed) {
        sm_json_out_free(&o);
        return NULL;
    }
    return o.text;
}

/* Reads every instance into memory and decodes the channels. */
static segmamba_status read_volume(const sm_segment_request *req, series_info *s, run_state *rs,
                                   segmamba_volume *vol, segmamba_dicom_source **src, char *why,
                                   size_t n)
{
    int total = 0, done = 0;
    for (int i = 0; i < req->n_series; i++) total += s[i].n;
    OrthancPluginMemoryBuffer *bufs = calloc((size_t)total, sizeof *bufs);
    segmamba_dicom_object *objs = calloc((size_t)total, sizeof *objs);
    const segmamba_dicom_object *chan[SEGMAMBA_CARD_MAX_CHANNELS];
    int counts[SEGMAMBA_CARD_MAX_CHANNELS];
    segmamba_status st = SEGMAMBA_OK;
    if (!bufs || !objs) {
        sm_why(why, n, "out of memory");
        st = SEGMAMBA_E_NOMEM;
    }
    for (int i = 0; i < req->n_series && st == SEGMAMBA_OK; i++) {
        chan[i] = objs + done;
        counts[i] = s[i].n;
        for (int k = 0; k < s[i].n && st == SEGMAMBA_OK; k++, done++) {
            if (OrthancPluginGetDicomForInstance(sm_orthanc, &bufs[done], s[i].ids[k]) !=
                OrthancPluginErrorCode_Success) {
                sm_why(why, n, "cannot read instance %s from Orthanc", s[i].ids[k]);
                st = SEGMAMBA_E_IO;
                break;
            }
            objs[done] = (segmamba_dicom_object){bufs[done].data, bufs[done].size, s[i].ids[k]};
            if (rs->progress(rs->user, FETCH_SHARE * (float)(done + 1) / (float)total)) {
                sm_why(why, n, "cancelled");
                st = SEGMAMBA_E_CANCELLED;
            }
        }
    }
    if (st == SEGMAMBA_OK) {
        st = segmamba_dicom_read_memory(chan, counts, req->n_series, vol, src);
        if (st != SEGMAMBA_OK) sm_why(why, n, "%s", segmamba_get_last_error());
    }
    for (int k = 0; bufs && k < total; k++)
        if (bufs[k].data) OrthancPluginFreeMemoryBuffer(sm_orthanc, &bufs[k]);
    free(bufs);
    free(objs);
    return st;
}

/* Stores the SEG; Orthanc answers "Success", or "AlreadyStored" for a SEG
 * with the same UIDs from an earlier run of the same inputs. */
static segmamba_status store_seg(const unsigned char *seg, size_t size, char *instance,
                                 char *series, char *status, char *why, size_t n)
{
    OrthancPluginMemoryBuffer buf = {0};
    if (OrthancPluginRestApiPost(sm_orthanc, &buf, "/instances", seg, (uint32_t)size) !=
        OrthancPluginErrorCode_Success) {
        sm_why(why, n, "Orthanc refused to store the SEG");
        return SEGMAMBA_E_IO;
    }
    sm_json j;
    segmamba_status st = sm_json_parse(buf.data, buf.size, "POST /instances", &j);
    OrthancPluginFreeMemoryBuffer(sm_orthanc, &buf);
    if (st != SEGMAMBA_OK) {
        sm_why(why, n, "%s", sm_orthanc_json_error());
        return SEGMAMBA_E_IO;
    }
    const char *id = sm_json_string(&j, "ID"), *ps = sm_json_string(&j, "ParentSeries");
    const char *stat = sm_json_string(&j, "Status");
    st = SEGMAMBA_E_IO;
    if (!id || !ps || !stat || !sm_orthanc_is_id(id) || !sm_orthanc_is_id(ps) || strlen(stat) > 31)
        sm_why(why, n, "unexpected answer from POST /instances");
    else if (strcmp(stat, "Success") != 0 && strcmp(stat, "AlreadyStored") != 0)
        sm_why(why, n, "storing the SEG: Orthanc says %s", stat);
    else {
        strcpy(instance, id);
        strcpy(series, ps);
        strcpy(status, stat);
        st = SEGMAMBA_OK;
    }
    sm_json_free(&j);
    return st;
}

static segmamba_status forward_seg(const char *instance, char *why, size_t n)
{
    char uri[512];
    snprintf(uri, sizeof uri, "/modalities/%s/store", sm_config.forward_to);
    OrthancPluginMemoryBuffer buf = {0};
    OrthancPluginErrorCode e =
        OrthancPluginRestApiPost(sm_orthanc, &buf, uri, instance, (uint32_t)strlen(instance));
    if (buf.data) OrthancPluginFreeMemoryBuffer(sm_orthanc, &buf);
    if (e != OrthancPluginErrorCode_Success) {
        sm_why(why, n, "forwarding the SEG to modality \"%s\" failed: %s", sm_config.forward_to,
               OrthancPluginGetErrorDescription(sm_orthanc, e));
        return SEGMAMBA_E_IO;
    }
    return SEGMAMBA_OK;
}

segmamba_status sm_segment_run(const sm_segment_request *req, sm_segment_progress_fn progress,
                               void *user, char **content)
{
    const double t0 = sm_now();
    char why[4096] = "";
    series_info s[SEGMAMBA_CARD_MAX_CHANNELS] = {{0}};
    segmamba_volume vol = {0};
    segmamba_dicom_source *src = NULL;
    segmamba_prediction p = {0};
    unsigned char *seg = NULL;
    size_t seg_size = 0;
    run_state rs = {progress, user};
    char series_uid[64], instance_uid[64], seg_instance[64] = "", seg_series[64] = "",
                                           store_status[32] = "";
    *content = NULL;
    segmamba_status st = SEGMAMBA_E_ARG;
    if (req->n_series != req->model->card.n_channels) {
        sm_why(why, sizeof why, "model \"%s\" takes %d series (%d given)", req->model_name,
               req->model->card.n_channels, req->n_series);
        goto done;
    }
    st = SEGMAMBA_E_IO;
    if (load_all(req, s, why, sizeof why)) goto done;
    make_uids(req, s, series_uid, instance_uid);
    st = read_volume(req, s, &rs, &vol, &src, why, sizeof why);
    if (st != SEGMAMBA_OK) goto done;
    segmamba_predict_options po = {0};
    po.no_tta = !req->tta;
    po.progress = on_windows;
    po.progress_user = &rs;
    st = segmamba_predict(req->model->model, &req->model->card, &vol, &po, &p);
    if (st != SEGMAMBA_OK) {
        sm_why(why, sizeof why, "%s", segmamba_get_last_error());
        goto done;
    }
    const segmamba_dicom_seg_options so = {series_uid, instance_uid, NULL};
    st = segmamba_dicom_encode_seg(src, &req->model->card, &p, &so, &seg, &seg_size);
    if (st != SEGMAMBA_OK) {
        sm_why(why, sizeof why, "%s", segmamba_get_last_error());
        goto done;
    }
    if (progress(user, FETCH_SHARE + PREDICT_SHARE)) {
        st = SEGMAMBA_E_CANCELLED;
        sm_why(why, sizeof why, "cancelled");
        goto done;
    }
    st = store_seg(seg, seg_size, seg_instance, seg_series, store_status, why, sizeof why);
    if (st == SEGMAMBA_OK && sm_config.forward_to) st = forward_seg(seg_instance, why, sizeof why);
    if (st == SEGMAMBA_OK) {
        *content =
            success_content(req, &vol, &p, seg_instance, seg_series, store_status, sm_now() - t0);
        if (!*content) {
            st = SEGMAMBA_E_NOMEM;
            sm_why(why, sizeof why, "out of memory");
        }
    }
done:
    if (st != SEGMAMBA_OK) *content = error_content(st, why);
    free(seg);
    segmamba_prediction_free(&p);
    segmamba_dicom_source_free(src);
    segmamba_volume_free(&vol);
    series_info_free(s, SEGMAMBA_CARD_MAX_CHANNELS);
    return st;
}
