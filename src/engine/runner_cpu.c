/* The CPU runner (runner.h): sm_graph_run once per input, on the kernel
 * table the model was opened with. */
#include <stdlib.h>
#include <string.h>

#include "engine/runner.h"

typedef struct cpu_state {
    const sm_kernels *kernels;
} cpu_state;

static sm_status cpu_prepare(const sm_graph *g, const sm_runner_options *opts, void **state)
{
    (void)g;
    cpu_state *s = malloc(sizeof *s);
    if (!s) return sm_fail(SEGMAMBA_E_NOMEM, "CPU runner: out of memory");
    s->kernels = opts->kernels;
    *state = s;
    return SEGMAMBA_OK;
}

static sm_status cpu_run(void *state, sm_graph *g, int count, const float *inputs, int d, int h,
                         int w, float *outputs)
{
    const cpu_state *s = state;
    const size_t vox = (size_t)d * h * w;
    const size_t in_floats = (size_t)sm_graph_channels(g, g->input) * vox,
                 out_floats = (size_t)sm_graph_channels(g, g->output) * vox;
    double seconds[SM_KIND_COUNT] = {0}, flops = 0.0;
    for (int k = 0; k < count; k++) {
        SM_TRY(sm_graph_run(g, s->kernels, inputs + (size_t)k * in_floats, d, h, w,
                            outputs + (size_t)k * out_floats));
        for (int i = 0; i < SM_KIND_COUNT; i++) seconds[i] += g->seconds[i];
        flops += g->flops;
    }
    memcpy(g->seconds, seconds, sizeof seconds);
    g->flops = flops;
    return SEGMAMBA_OK;
}

static void cpu_release(void *state, sm_graph *g)
{
    (void)state;
    sm_graph_release_arena(g);
}

const sm_runner sm_cpu_runner = {
    .name = "cpu",
    .prepare = cpu_prepare,
    .run = cpu_run,
    .release = cpu_release,
    .free = free,
};
