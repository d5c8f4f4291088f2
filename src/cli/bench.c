/* segmamba bench: the time of a forward pass and where it goes, against
 * this machine's FP32 FMA peak measured in the same run. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli.h"
#include "engine_internal.h"
#include "io/file.h"
#include "io/json.h"
#include "parallel.h"
#include "simd/dispatch.h"
#include "sm_config.h"

void usage_bench(FILE *f)
{
    fprintf(f,
            "usage: segmamba bench --model M [options]\n"
            "\n"
            "Times forward passes on a random (1, C, n, n, n) input and prints the median\n"
            "time, the time per kind of work (conv, scan, norm, other), the achieved\n"
            "GFLOP/s and its fraction of this machine's FP32 FMA peak (measured by a probe\n"
            "in the same run, with the same threads), voxels/s and the peak RSS.\n"
            "\n"
            "  --model M           checkpoint (.pt or .safetensors)\n"
            "  --size n            cube side, a multiple of 16 (default 128)\n"
            "  --threads N         threads (default: all cores)\n"
            "  --repeat R          timed forwards after one warm-up (default 3)\n"
            "  --conv KIND         onednn, blas or ref\n"
            "  --scan LEVEL        kernel level: scalar, avx2, avx512 or neon\n"
            "  --precision P       fp32 (default) or bf16 convolutions\n"
            "  --nslices a,b,c,d   default n/2,n/4,n/8,n/16 (the official 64,32,16,8 at 128)\n"
            "  --json FILE         also write the figures as JSON\n"
            "  --nodes N           also list the N slowest graph nodes of the median run\n");
}

/* Written by every probe so that its FMAs cannot be optimised away. */
static volatile float probe_sink;

/* Seconds for nt threads to run the probe iters rounds each; adds the flops. */
static double probe_once(const sm_kernels *k, int nt, int64_t iters, double *flops)
{
    double t0 = cli_now(), done = 0.0;
#pragma omp parallel num_threads(nt) reduction(+ : done)
    {
        float s = 0.0f;
        done += k->fma_probe(iters, &s);
        probe_sink = s;
    }
    *flops = done;
    return cli_now() - t0;
}

/* FP32 FMA peak of nt threads at the active kernel level, in GFLOP/s: the
 * work is doubled until one run takes 0.1 s, then the best of 5 runs. */
static double fma_peak_gflops(int nt)
{
    const sm_kernels *k = sm_kernels_get();
    int64_t iters = 1 << 12;
    double flops;
    while (probe_once(k, nt, iters, &flops) < 0.1 && iters < ((int64_t)1 << 40)) iters *= 2;
    double best = 0.0;
    for (int i = 0; i < 5; i++) {
        double dt = probe_once(k, nt, iters, &flops), g = flops / dt * 1e-9;
        if (g > best) best = g;
    }
    return best;
}

/* The n slowest nodes of one run, for finding where time goes. */
static void print_nodes(const sm_graph *g, const double *seconds, int n)
{
    int *order = malloc((size_t)g->n_nodes * sizeof *order);
    if (!order) return;
    for (int i = 0; i < g->n_nodes; i++) order[i] = i;
    for (int i = 1; i < g->n_nodes; i++)
        for (int j = i; j > 0 && seconds[order[j]] > seconds[order[j - 1]]; j--) {
            int tmp = order[j];
            order[j] = order[j - 1];
            order[j - 1] = tmp;
        }
    printf("slowest nodes (of %d):\n", g->n_nodes);
    for (int k = 0; k < n && k < g->n_nodes; k++) {
        const sm_node *nd = &g->nodes[order[k]];
        printf("  #%-4d %-6s level %d  %4d -> %4d channels  %8.4f s\n", order[k],
               sm_opcode_name(nd->op), sm_graph_level(g, nd->in0), sm_graph_channels(g, nd->in0),
               sm_graph_channels(g, nd->out), seconds[order[k]]);
    }
    free(order);
}

static double median(double *v, int n)
{
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Peak resident memory of this process. Linux's VmHWM belongs to the
 * current address space; getrusage's ru_maxrss survives exec and so would
 * count the memory of whatever process started the bench. */
static double peak_rss_mib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (f) {
        char line[256];
        long kib = -1;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "VmHWM: %ld kB", &kib) == 1) break;
        fclose(f);
        if (kib >= 0) return (double)kib / 1024.0;
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0.0;
    return (double)ru.ru_maxrss / 1024.0;
}

int cmd_bench(int argc, char **argv)
{
    const char *model = NULL, *json = NULL;
    int size = 128, threads = 0, repeat = 3, top_nodes = 0;
    segmamba_options opts = {0};
    int custom_nslices = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage_bench(stdout);
            return 0;
        }
        if (a[0] == '-' && !v) return cli_usage_error("bench: %s needs a value", a);
        i++;
        if (strcmp(a, "--model") == 0) model = v;
        else if (strcmp(a, "--json") == 0) json = v;
        else if (strcmp(a, "--size") == 0) {
            if (!cli_parse_int(v, 16, 4096, &size) || size % 16)
                return cli_usage_error("bench: --size wants a multiple of 16, not '%s'", v);
        } else if (strcmp(a, "--threads") == 0) {
            if (!cli_parse_int(v, 1, 4096, &threads))
                return cli_usage_error("bench: --threads wants a positive integer, not '%s'", v);
        } else if (strcmp(a, "--nodes") == 0) {
            if (!cli_parse_int(v, 1, 100000, &top_nodes))
                return cli_usage_error("bench: --nodes wants a positive integer, not '%s'", v);
        } else if (strcmp(a, "--repeat") == 0) {
            if (!cli_parse_int(v, 1, 1000, &repeat))
                return cli_usage_error("bench: --repeat wants a positive integer, not '%s'", v);
        } else if (strcmp(a, "--conv") == 0) {
            if (!cli_parse_conv(v, &opts.conv))
                return cli_usage_error("bench: --conv wants onednn, blas or ref, not '%s'", v);
        } else if (strcmp(a, "--precision") == 0) {
            if (!cli_parse_precision(v, &opts.bf16))
                return cli_usage_error("bench: --precision wants fp32 or bf16, not '%s'", v);
        } else if (strcmp(a, "--scan") == 0) {
            if (!segmamba_select_isa(v))
                return cli_usage_error("bench: --scan wants scalar, avx2, avx512 or neon, not '%s'",
                                       v);
        } else if (strcmp(a, "--nslices") == 0) {
            if (!cli_parse_nslices(v, opts.nslices))
                return cli_usage_error("bench: --nslices wants a,b,c,d, not '%s'", v);
            custom_nslices = 1;
        } else {
            return cli_usage_error("bench: unknown argument '%s'", a);
        }
    }
    if (!model) return cli_usage_error("bench: %s", "--model is required");
    if (!custom_nslices)
        for (int i = 0; i < SEGMAMBA_STAGES; i++) opts.nslices[i] = size >> (i + 1);
    segmamba_set_threads(threads);
    const int nt = sm_num_threads();

    fprintf(stderr, "bench: measuring the FP32 FMA peak (%s, %d threads)...\n",
            sm_isa_name(sm_kernels_get()->isa), nt);
    const double peak = fma_peak_gflops(nt);

    segmamba_model *m = NULL;
    segmamba_status st = segmamba_open(model, &opts, &m);
    if (st != SEGMAMBA_OK) return cli_fail(st);
    segmamba_config c;
    segmamba_get_config(m, &c);
    cli_precision_notice(&opts, &c);
    const int64_t vox = (int64_t)size * size * size;
    float *x = malloc((size_t)(c.in_chans * vox) * sizeof *x);
    float *y = malloc((size_t)(c.out_chans * vox) * sizeof *y);
    const size_t nrep = (size_t)(repeat > 0 ? repeat : 1);
    double *times = malloc(nrep * sizeof *times);
    segmamba_profile *profs = malloc(nrep * sizeof *profs);
    double **node_times = calloc(nrep, sizeof *node_times);
    const sm_graph *graph = sm_engine_graph(m);
    if (!x || !y || !times || !profs || !node_times) {
        free(x), free(y), free(times), free(profs), free(node_times);
        segmamba_close(m);
        fprintf(stderr, "segmamba: error: out of memory for a %d^3 input\n", size);
        return SEGMAMBA_E_NOMEM;
    }
    uint64_t r = 0x2545f4914f6cdd1dull;
    for (int64_t i = 0; i < c.in_chans * vox; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        x[i] = (float)((double)(r >> 11) / 9007199254740992.0 * 4.0 - 2.0);
    }
    for (int run = -1; run < repeat && st == SEGMAMBA_OK; run++) {
        fprintf(stderr, "bench: %s %d/%d...\n", run < 0 ? "warm-up" : "forward", run + 1, repeat);
        double t0 = cli_now();
        st = segmamba_forward(m, x, size, size, size, y);
        double dt = cli_now() - t0;
        if (run < 0) continue;
        times[run] = dt;
        segmamba_get_profile(m, &profs[run]);
        node_times[run] = malloc((size_t)graph->n_nodes * sizeof **node_times);
        for (int i = 0; node_times[run] && i < graph->n_nodes; i++)
            node_times[run][i] = graph->nodes[i].seconds;
    }
    free(x), free(y);
    /* The breakdown is the median run's, so that its parts add up to the time shown. */
    int med = 0;
    if (st == SEGMAMBA_OK) {
        double *sorted = malloc(nrep * sizeof *sorted);
        if (sorted) {
            memcpy(sorted, times, nrep * sizeof *sorted);
            const double mt = median(sorted, repeat);
            for (int r = 0; r < repeat; r++)
                if (fabs(times[r] - mt) < fabs(times[med] - mt)) med = r;
            free(sorted);
        }
    }
    const double t = st == SEGMAMBA_OK ? times[med] : 0.0;
    const segmamba_profile prof = st == SEGMAMBA_OK ? profs[med] : (segmamba_profile){0};
    if (st == SEGMAMBA_OK && top_nodes > 0 && node_times[med]) print_nodes(graph, node_times[med], top_nodes);
    segmamba_close(m);
    for (int r = 0; r < repeat; r++) free(node_times[r]);
    free(node_times), free(profs), free(times);
    if (st != SEGMAMBA_OK) return cli_fail(st);
    const double sum[5] = {prof.seconds_conv, prof.seconds_scan, prof.seconds_norm,
                           prof.seconds_other, prof.flops};
    const double kinds[4] = {sum[0], sum[1], sum[2], sum[3]};
    static const char *const kind_names[4] = {"conv", "scan", "norm", "other"};
    const double gflops = sum[4] / t * 1e-9, rss = peak_rss_mib();
    printf("model      %s: %d->%d channels, features %d,%d,%d,%d, %lld parameters\n", model,
           c.in_chans, c.out_chans, c.feat[0], c.feat[1], c.feat[2], c.feat[3],
           (long long)c.n_params);
    printf("input      1x%dx%d^3, %s convolutions, %d threads, scan %s\n", c.in_chans, size,
           c.bf16 ? "bf16" : "fp32", nt, sm_isa_name(sm_kernels_get()->isa));
    printf("forward    %.3f s (the median of %d runs; its breakdown:)\n", t, repeat);
    for (int k = 0; k < 4; k++)
        printf("  %-6s   %8.3f s  %5.1f%%\n", kind_names[k], kinds[k], 100.0 * kinds[k] / t);
    printf("arithmetic %.1f GFLOP per forward, %.1f GFLOP/s\n", sum[4] * 1e-9, gflops);
    printf("FMA peak   %.1f GFLOP/s measured (%s, %d threads): forward at %.1f%% of peak\n", peak,
           sm_isa_name(sm_kernels_get()->isa), nt, 100.0 * gflops / peak);
    printf("throughput %.0f voxels/s\n", (double)vox / t);
    printf("peak RSS   %.0f MiB\n", rss);
    if (json) {
        sm_json_out o = {0};
        sm_json_out_printf(&o, "{\"model\": ");
        sm_json_out_string(&o, model, strlen(model));
        sm_json_out_printf(
            &o,
            ", \"size\": %d, \"precision\": \"%s\", \"threads\": %d, \"scan_isa\": \"%s\", "
            "\"seconds\": %.6f, "
            "\"repeat\": %d, \"seconds_conv\": %.6f, \"seconds_scan\": %.6f, "
            "\"seconds_norm\": %.6f, \"seconds_other\": %.6f, \"gflop\": %.3f, "
            "\"gflops\": %.3f, \"peak_gflops\": %.3f, \"fraction_of_peak\": %.4f, "
            "\"voxels_per_second\": %.1f, \"peak_rss_mib\": %.1f}\n",
            size, c.bf16 ? "bf16" : "fp32", nt, sm_isa_name(sm_kernels_get()->isa), t, repeat, kinds[0], kinds[1],
            kinds[2], kinds[3], sum[4] * 1e-9, gflops, peak, gflops / peak, (double)vox / t, rss);
        const void *parts[1] = {o.text};
        const size_t sizes[1] = {o.len};
        st = o.failed ? sm_fail(SEGMAMBA_E_NOMEM, "%s: out of memory", json)
                      : sm_file_write_atomic(json, parts, sizes, 1);
        sm_json_out_free(&o);
        if (st != SEGMAMBA_OK) return cli_fail(st);
    }
    return 0;
}
