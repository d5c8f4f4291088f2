/* The public API (include/segmamba.h): a model is its weights, its
 * configuration, the graph models/ builds from them and the runner
 * (src/engine/runner.h) that runs it, the CPU's or the CUDA backend's. */
#include <pthread.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "api/model_internal.h"
#include "blas_backends/gemm.h"
#include "core/parallel.h"
#include "cuda_optional/cuda_runner.h"
#include "engine/graph.h"
#include "engine/runner.h"
#include "io/checkpoint.h"
#include "io/checkpoint_meta.h"
#include "io/memory_cap.h"
#include "io/weights.h"
#include "models/segmamba_model.h"
#include "segmamba.h"
#include "simd/dispatch.h"
#include "sm_config.h"

struct segmamba_model {
    sm_weights weights;
    segmamba_config cfg;
    sm_graph *graph;
    /* The kernel table when the model was opened: its forwards keep it
     * whatever segmamba_set_isa chooses later. */
    const sm_kernels *kernels;
    const sm_runner *runner; /* the CPU's, or the CUDA backend's with --backend cuda */
    void *run_state;         /* the runner's (the graph's device copy for CUDA) */
    /* Forwards on one model take turns: the graph's arena, the convolution
     * backends' per-size plans and the profile are the model's. */
    pthread_mutex_t lock;
};

const char *segmamba_get_version(void) { return SEGMAMBA_VERSION_STRING; }

/* The count segmamba_set_threads gave, 0 before any call. OpenMP's own
 * setting belongs to the thread that makes it, so every entry point that
 * starts parallel work applies this one on the calling thread. */
#if SM_HAVE_OPENMP
static atomic_int requested_threads;
#endif

static void apply_threads(void)
{
#if SM_HAVE_OPENMP
    const int n = atomic_load(&requested_threads);
    if (n > 0 && omp_get_max_threads() != n) omp_set_num_threads(n);
#endif
}

void segmamba_set_threads(int n)
{
#if SM_HAVE_OPENMP
    if (n <= 0) n = omp_get_num_procs();
    atomic_store(&requested_threads, n);
    omp_set_num_threads(n);
#else
    n = 1;
#endif
    /* oneDNN runs on the OpenMP runtime; OpenBLAS has its own pool. */
    sm_blas_set_threads(n);
}

int segmamba_get_threads(void)
{
    apply_threads();
    return sm_num_threads();
}

const char *segmamba_get_isa(void) { return sm_isa_name(sm_kernels_get()->isa); }

void segmamba_get_build_info(segmamba_build_info *b)
{
    b->onednn = SM_HAVE_ONEDNN;
    b->openmp = SM_HAVE_OPENMP;
    b->cuda = sm_cuda_build_kind();
}

const char *segmamba_set_isa(const char *name)
{
    const int isa = sm_isa_parse(name);
    if (isa < 0) return NULL;
    return sm_isa_name(sm_kernels_select((sm_isa)isa));
}

/* The direct backend for the layers Winograd does not run, and where
 * Winograd runs. */
static sm_status choose_conv(segmamba_conv_backend want, sm_conv_kind *kind, sm_wino_use *wino)
{
    *wino = SM_WINO_OFF;
    switch (want) {
    case SEGMAMBA_CONV_AUTO:
    case SEGMAMBA_CONV_WINOGRAD:
        *kind = sm_conv_available(SM_CONV_ONEDNN) ? SM_CONV_ONEDNN : SM_CONV_BLAS;
        *wino = want == SEGMAMBA_CONV_AUTO ? SM_WINO_AUTO : SM_WINO_ALL;
        return SEGMAMBA_OK;
    case SEGMAMBA_CONV_ONEDNN: *kind = SM_CONV_ONEDNN; break;
    case SEGMAMBA_CONV_BLAS: *kind = SM_CONV_BLAS; break;
    case SEGMAMBA_CONV_REF: *kind = SM_CONV_REF; break;
    default: return sm_fail(SEGMAMBA_E_ARG, "unknown convolution backend %d", (int)want);
    }
    if (!sm_conv_available(*kind))
        return sm_fail(SEGMAMBA_E_UNSUPPORTED,
                       "convolution backend '%s' is not built into this engine",
                       sm_conv_kind_name(*kind));
    return SEGMAMBA_OK;
}

int segmamba_get_cuda_device(char *info, size_t cap) { return sm_cuda_device_info(info, cap); }

/* The runner, before loading: a missing backend fails at once. */
static sm_status pick_runner(segmamba_backend backend, const sm_runner **out)
{
    switch (backend) {
    case SEGMAMBA_BACKEND_CPU: *out = &sm_cpu_runner; return SEGMAMBA_OK;
    case SEGMAMBA_BACKEND_CUDA: return sm_cuda_runner(out);
    }
    return sm_fail(SEGMAMBA_E_ARG, "unknown backend %d", (int)backend);
}

static sm_status open_model(const char *path, const segmamba_options *opts, segmamba_model *m)
{
    const segmamba_backend backend = opts ? opts->backend : SEGMAMBA_BACKEND_CPU;
    SM_TRY(pick_runner(backend, &m->runner));
    sm_conv_kind kind = SM_CONV_REF;
    sm_wino_use wino = SM_WINO_OFF;
    /* The CUDA backend uploads the packed weights that the reference
     * convolution keeps; no convolution runs on the CPU then. */
    if (backend == SEGMAMBA_BACKEND_CPU)
        SM_TRY(choose_conv(opts ? opts->conv : SEGMAMBA_CONV_AUTO, &kind, &wino));
    const int tile = opts && wino == SM_WINO_ALL ? opts->winograd_tile : 0;
    if (tile != 0 && (tile < 2 || tile > 4))
        return sm_fail(SEGMAMBA_E_ARG, "winograd_tile must be 0, 2, 3 or 4, not %d", tile);
    SM_TRY(sm_load_weights(path, &m->weights));
    sm_status st = sm_segmamba_infer_config(&m->weights, &m->cfg);
    if (st == SEGMAMBA_OK) st = sm_segmamba_check_weights(&m->weights, &m->cfg);
    if (st != SEGMAMBA_OK) return sm_fail_wrap(st, "%s", path);
    /* nslices and FUE are not in the weights: the caller's, else the ones
     * the checkpoint's metadata carries, else the official 64,32,16,8
     * without FUE. (A card in a side file is the clinical layer's: it
     * reaches here through the options, segmamba_open_with_card.) */
    int nslices[SEGMAMBA_STAGES] = {64, 32, 16, 8}, fue = 0;
    SM_TRY(sm_meta_mamba(&m->weights, path, nslices, &fue));
    int custom = 0;
    for (int i = 0; opts && i < SEGMAMBA_STAGES; i++) custom |= opts->nslices[i] != 0;
    for (int i = 0; i < SEGMAMBA_STAGES; i++) {
        m->cfg.nslices[i] = custom ? opts->nslices[i] : nslices[i];
        if (m->cfg.nslices[i] <= 0)
            return sm_fail(SEGMAMBA_E_ARG, "nslices must be positive (stage %d: %d)", i,
                           m->cfg.nslices[i]);
    }
    const int fue_opt = opts ? opts->fue : SEGMAMBA_FUE_CARD;
    if (fue_opt != SEGMAMBA_FUE_CARD && fue_opt != SEGMAMBA_FUE_ON && fue_opt != SEGMAMBA_FUE_OFF)
        return sm_fail(SEGMAMBA_E_ARG, "fue must be SEGMAMBA_FUE_CARD, _ON or _OFF, not %d",
                       fue_opt);
    m->cfg.fue = fue_opt == SEGMAMBA_FUE_CARD ? fue : fue_opt == SEGMAMBA_FUE_ON;
    /* Winograd runs in float only: bf16 puts every layer on oneDNN under
     * auto, and is declined when Winograd is asked for. */
    m->cfg.bf16 = opts && opts->bf16 && kind == SM_CONV_ONEDNN && wino != SM_WINO_ALL &&
                  sm_conv_bf16_supported();
    if (m->cfg.bf16) wino = SM_WINO_OFF;
    m->cfg.backend = backend;
    m->cfg.tf32 = backend == SEGMAMBA_BACKEND_CUDA && opts->tf32;
    m->kernels = sm_kernels_get();
    SM_TRY(sm_segmamba_build(&m->weights, &m->cfg, m->kernels, kind, wino, tile, &m->graph));
    const sm_runner_options run_opts = {.kernels = m->kernels, .tf32 = m->cfg.tf32};
    return m->runner->prepare(m->graph, &run_opts, &m->run_state);
}

segmamba_status segmamba_open(const char *path, const segmamba_options *opts, segmamba_model **out)
{
    if (!path || !out) return sm_fail(SEGMAMBA_E_ARG, "segmamba_open: path and out are required");
    *out = NULL;
    segmamba_model *m = calloc(1, sizeof *m);
    if (!m) return sm_fail(SEGMAMBA_E_NOMEM, "out of memory opening %s", path);
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        return sm_fail(SEGMAMBA_E_NOMEM, "cannot create a lock opening %s", path);
    }
    apply_threads();
    sm_status st = open_model(path, opts, m);
    if (st != SEGMAMBA_OK) {
        segmamba_close(m);
        return st;
    }
    *out = m;
    return SEGMAMBA_OK;
}

void segmamba_get_config(const segmamba_model *m, segmamba_config *cfg)
{
    *cfg = m->cfg;
    cfg->arena_bytes = (int64_t)(m->graph->planned_floats * sizeof(float));
    cfg->weight_bytes =
        (int64_t)(sm_weights_resident_bytes(&m->weights) + sm_graph_weight_bytes(m->graph));
}

void segmamba_get_config_names(const segmamba_config *cfg, const char **family,
                               const char **mamba_type)
{
    if (family) *family = sm_family_name(cfg->family);
    if (mamba_type) *mamba_type = sm_mamba_type_name(cfg->mamba_type);
}

int segmamba_get_ignored_count(const segmamba_model *m) { return m ? (int)m->weights.nignored : 0; }

const char *segmamba_get_ignored_name(const segmamba_model *m, int i)
{
    if (!m || i < 0 || (size_t)i >= m->weights.nignored) return NULL;
    return m->weights.ignored[i];
}

segmamba_status segmamba_check_shape(const segmamba_model *m, int d, int h, int w)
{
    return sm_segmamba_check_shape(&m->cfg, d, h, w);
}

/* On the CPU, what a forward of a d x h x w input holds (the activations'
 * arena the plan makes for it and the weights) against the memory cap
 * (io/memory_cap.h): over it, a clear E_NOMEM before anything is allocated,
 * rather than an allocation failure or the system's OOM killer midway. */
static sm_status check_memory(segmamba_model *m, int d, int h, int w)
{
    if (m->cfg.backend != SEGMAMBA_BACKEND_CPU) return SEGMAMBA_OK;
    size_t floats = 0;
    SM_TRY(sm_graph_place(m->graph, d, h, w, &floats));
    const uint64_t arena = (uint64_t)floats * sizeof(float),
                   weights =
                       sm_weights_resident_bytes(&m->weights) + sm_graph_weight_bytes(m->graph);
    char what[160];
    snprintf(what, sizeof what, "a %dx%dx%d input (activations %.1f MiB, weights %.1f MiB)", w, h,
             d, arena / 1048576.0, weights / 1048576.0);
    return sm_memory_check(arena + weights, "forward", what);
}

segmamba_status segmamba_forward(segmamba_model *m, const float *input, int d, int h, int w,
                                 float *logits)
{
    if (!m || !input || !logits)
        return sm_fail(SEGMAMBA_E_ARG, "segmamba_forward: model, input and logits are required");
    return segmamba_forward_batch(m, 1, input, d, h, w, logits);
}

segmamba_status segmamba_forward_batch(segmamba_model *m, int count, const float *inputs, int d,
                                       int h, int w, float *logits)
{
    if (!m || !inputs || !logits || count < 1)
        return sm_fail(SEGMAMBA_E_ARG, "segmamba_forward: model, inputs and logits are required");
    SM_TRY(sm_segmamba_check_shape(&m->cfg, d, h, w));
    apply_threads();
    pthread_mutex_lock(&m->lock);
    sm_status st = check_memory(m, d, h, w);
    if (st == SEGMAMBA_OK)
        st = m->runner->run(m->run_state, m->graph, count, inputs, d, h, w, logits);
    pthread_mutex_unlock(&m->lock);
    return st;
}

void segmamba_release_arena(segmamba_model *m)
{
    if (!m) return;
    pthread_mutex_lock(&m->lock);
    m->runner->release(m->run_state, m->graph);
    pthread_mutex_unlock(&m->lock);
}

void segmamba_get_profile(const segmamba_model *m, segmamba_profile *p)
{
    const sm_graph *g = m->graph;
    pthread_mutex_lock((pthread_mutex_t *)&m->lock);
    *p = (segmamba_profile){.seconds_conv = g->seconds[SM_KIND_CONV],
                            .seconds_scan = g->seconds[SM_KIND_SCAN],
                            .seconds_norm = g->seconds[SM_KIND_NORM],
                            .seconds_other = g->seconds[SM_KIND_OTHER],
                            .flops = g->flops};
    pthread_mutex_unlock((pthread_mutex_t *)&m->lock);
}

const sm_graph *sm_model_graph(const segmamba_model *m) { return m->graph; }

void segmamba_close(segmamba_model *m)
{
    if (!m) return;
    if (m->runner) m->runner->free(m->run_state);
    sm_graph_free(m->graph);
    sm_weights_free(&m->weights);
    pthread_mutex_destroy(&m->lock);
    free(m);
}
