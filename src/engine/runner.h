/* How a model's graph runs: one interface, which the CPU runner
 * (runner_cpu.c) and the CUDA one (cuda_optional/cuda_runner.c) implement.
 * The public API (src/api/) picks one when it opens a model and calls
 * nothing else to run it. */
#ifndef SM_RUNNER_H
#define SM_RUNNER_H

#include <stddef.h>

#include "core/error.h"
#include "engine/graph.h"
#include "simd/dispatch.h"

/* What a runner may need when it prepares a graph. */
typedef struct sm_runner_options {
    const sm_kernels *kernels; /* the model's kernel table (the CPU runner's ops) */
    int tf32;                  /* TF32 tensor-core GEMMs (the CUDA runner) */
} sm_runner_options;

typedef struct sm_runner {
    const char *name;
    /* Makes the runner's state for g (built for this runner: the CUDA one
     * needs the ref or blas convolution backend, fp32); g outlives it. */
    sm_status (*prepare)(const sm_graph *g, const sm_runner_options *opts, void **state);
    /* count inputs of the input value's channels x (d, h, w), NCDHW one
     * after another, to count outputs likewise. Sets g's per-kind and
     * per-node times and flops, summed over the inputs. */
    sm_status (*run)(void *state, sm_graph *g, int count, const float *inputs, int d, int h, int w,
                     float *outputs);
    /* Gives back the host memory a run keeps for the next one (the arena). */
    void (*release)(void *state, sm_graph *g);
    void (*free)(void *state); /* NULL-safe */
} sm_runner;

/* The graph on the CPU, through sm_graph_run. */
extern const sm_runner sm_cpu_runner;

#endif
