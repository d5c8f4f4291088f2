/* What a model's forwards cost, for benchmarks (include/segmamba.h): the
 * layers with their times, and the machine's FMA peak to compare with. */
#include <stdio.h>
#include <string.h>

#include "api/model_internal.h"
#include "core/parallel.h"
#include "engine/conv.h"
#include "engine/graph.h"
#include "engine/ops.h"
#include "segmamba.h"
#include "simd/dispatch.h"

int segmamba_get_layer_count(const segmamba_model *m) { return m ? sm_model_graph(m)->n_nodes : 0; }

segmamba_status segmamba_get_layer(const segmamba_model *m, int i, segmamba_layer *out)
{
    const sm_graph *g = m ? sm_model_graph(m) : NULL;
    if (!g || !out || i < 0 || i >= g->n_nodes)
        return sm_fail(SEGMAMBA_E_ARG, "segmamba_get_layer: layer %d of %d", i, g ? g->n_nodes : 0);
    const sm_node *nd = &g->nodes[i];
    memset(out, 0, sizeof *out);
    snprintf(out->op, sizeof out->op, "%s", sm_opcode_name(nd->op));
    if (nd->op == SM_OP_CONV || nd->op == SM_OP_POINTWISE || nd->op == SM_OP_CONV_SLABS) {
        /* In slabs, the 3x3x3 convolution's (its projection's time, if
         * any, counts with it). */
        const sm_conv *c =
            nd->op == SM_OP_CONV_SLABS ? ((const sm_slab_conv *)nd->obj)->conv : nd->obj;
        const sm_conv_params *p = sm_conv_get_params(c);
        const sm_conv_kind kind = sm_conv_get_kind(c);
        if (kind == SM_CONV_WINOGRAD)
            snprintf(out->backend, sizeof out->backend, "winograd%d", p->tile);
        else
            snprintf(out->backend, sizeof out->backend, "%s", sm_conv_kind_name(kind));
        out->kernel = p->k;
        out->conv3x3x3 = nd->op != SM_OP_POINTWISE && p->k == 3 && p->stride == 1 && p->pad == 1;
    }
    out->level = sm_graph_level(g, nd->in0);
    out->in_channels = sm_graph_channels(g, nd->in0);
    out->out_channels = sm_graph_channels(g, nd->out);
    out->seconds = nd->seconds;
    return SEGMAMBA_OK;
}

/* Written by every probe so that its FMAs cannot be optimised away. */
static volatile float probe_sink;

/* Seconds for nt threads to run the probe iters rounds each; adds the flops. */
static double probe_once(const sm_kernels *k, int nt, int64_t iters, double *flops)
{
    (void)nt; /* only the OpenMP pragma reads it */
    const double t0 = sm_now_seconds();
    double done = 0.0;
#pragma omp parallel num_threads(nt) reduction(+ : done)
    {
        float s = 0.0f;
        done += k->fma_probe(iters, &s);
        probe_sink = s;
    }
    *flops = done;
    return sm_now_seconds() - t0;
}

double segmamba_measure_fma_peak(int threads)
{
    const sm_kernels *k = sm_kernels_get();
    const int nt = threads > 0 ? threads : 1;
    int64_t iters = 1 << 12;
    double flops;
    while (probe_once(k, nt, iters, &flops) < 0.1 && iters < ((int64_t)1 << 40)) iters *= 2;
    double best = 0.0;
    for (int i = 0; i < 5; i++) {
        const double dt = probe_once(k, nt, iters, &flops), g = flops / dt * 1e-9;
        if (g > best) best = g;
    }
    return best;
}
