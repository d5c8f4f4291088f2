/* segmamba bench: the time of a forward pass and where it goes, against
 * this machine's FP32 FMA peak measured in the same run. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#if defined(__GLIBC__)
#include <malloc.h> /* malloc_trim */
#endif

#include "cli.h"

void usage_bench(FILE *f)
{
    fprintf(f,
            "usage: segmamba bench --model M [--model M2 ...] [options]\n"
            "\n"
            "Times forward passes on a random (1, C, n, n, n) input and prints the median\n"
            "time, the time per kind of work (conv, of which the 3x3x3 stride-1 layers;\n"
            "scan, norm, other), the achieved\n"
            "GFLOP/s and, on the CPU, its fraction of this machine's FP32 FMA peak\n"
            "(measured by a probe in the same run, with the same threads), voxels/s, the\n"
            "size of the activations' arena, the weights held (every copy and layout the\n"
            "backends keep) and the peak RSS. In an engine built with CUDA, on a machine\n"
            "with a GPU, it runs on the CPU and on the GPU and prints both side by side\n"
            "(voxels/s and milliseconds per 128^3 window).\n"
            "\n"
            "  --model M           checkpoint (.pt or .safetensors); given more than once\n"
            "                      (up to 8 rows in all with --conv), each model in turn\n"
            "                      (its own load, peak RSS and rows; the CPU alone unless\n"
            "                      --backend cuda) and a table of each model against the\n"
            "                      first: SegMamba-V2 against v1 in one run\n"
            "  --size n            cube side, a multiple of 16 (default 128)\n"
            "  --backend B         cpu or cuda alone (default: the CPU, and the GPU too when\n"
            "                      there is one)\n"
            "  --threads N         threads (default: all cores)\n"
            "  --repeat R          timed forwards after one warm-up (default 3)\n"
            "  --conv K1,K2,...    convolution backends, each as 'segmamba help forward'\n"
            "                      lists them (default auto): the same weights and input on\n"
            "                      each in turn (load, warm-up, timed runs), every row\n"
            "                      printed and a table of each kind of work's time against\n"
            "                      the first's\n"
            "  --scan LEVEL        kernel level: scalar, avx2, avx512 or neon\n"
            "  --precision P       fp32 (default), bf16 (CPU convolutions) or tf32 (CUDA GEMMs)\n"
            "  --nslices a,b,c,d   default n/2,n/4,n/8,n/16 (the official 64,32,16,8 at 128)\n"
            "  --json FILE         also write the figures as JSON: those of the first run\n"
            "                      (\"backend\" says which), with several rows (models,\n"
            "                      --conv) all of them under \"runs\", and with both\n"
            "                      backends the GPU's\n"
            "                      under \"cuda\"\n"
            "  --nodes N           also list the N slowest graph nodes of each median run\n");
}

/* "conv k3 winograd4", "mamba", ...: a layer's op and, for a convolution,
 * what runs it. */
static void layer_label(const segmamba_layer *l, char *buf, size_t cap)
{
    if (l->backend[0])
        snprintf(buf, cap, "%s k%d %s", l->op, l->kernel, l->backend);
    else
        snprintf(buf, cap, "%s", l->op);
}

/* The n slowest layers of one run, for finding where time goes. */
static void print_layers(const segmamba_layer *layers, int count, int n)
{
    int *order = malloc((size_t)count * sizeof *order);
    if (!order) return;
    for (int i = 0; i < count; i++) order[i] = i;
    for (int i = 1; i < count; i++)
        for (int j = i; j > 0 && layers[order[j]].seconds > layers[order[j - 1]].seconds; j--) {
            int tmp = order[j];
            order[j] = order[j - 1];
            order[j - 1] = tmp;
        }
    printf("slowest nodes (of %d):\n", count);
    for (int k = 0; k < n && k < count; k++) {
        const segmamba_layer *l = &layers[order[k]];
        char label[64];
        layer_label(l, label, sizeof label);
        printf("  #%-4d %-24s level %d  %4d -> %4d channels  %8.4f s\n", order[k], label, l->level,
               l->in_channels, l->out_channels, l->seconds);
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

/* Starts a new peak for peak_rss_mib (Linux: VmHWM is reset by writing 5
 * to clear_refs); 0 where that cannot be done, and the peak then stays the
 * process's. */
static int reset_peak_rss(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return 0;
    const int ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}

/* One backend's timed runs. */
typedef struct bench_run {
    const char *model; /* its checkpoint */
    char label[40];    /* its column: the conv, "model k", or both */
    segmamba_backend backend;
    segmamba_options conv; /* its conv and winograd_tile */
    const char *conv_name; /* as given to --conv */
    segmamba_config cfg;
    double load_seconds;   /* segmamba_open: reading, checking, building the graph */
    double seconds;        /* the median forward */
    segmamba_profile prof; /* of the median run, so that its parts add up to seconds */
    double seconds_conv3;  /* of prof.seconds_conv, the 3x3x3 stride-1 layers' */
    double peak_rss_mib;   /* from its loading to its closing (or the process's) */
    int own_peak;          /* 1 when peak_rss_mib is this run's alone */
    double peak_gflops;    /* CPU only: the FMA probe's */
    double arena_mib;      /* CPU only: the activations' arena for this size */
    double weights_mib;    /* CPU only: the weights held, every copy */
    char device[256];      /* CUDA only: the GPU */
} bench_run;

/* Warm-up and repeat timed forwards of model on r->backend; returns the
 * exit code. */
static int run_backend(segmamba_options opts, int size, int repeat, int top_nodes, bench_run *r)
{
    const char *model = r->model;
    opts.backend = r->backend;
    opts.conv = r->conv.conv;
    opts.winograd_tile = r->conv.winograd_tile;
    segmamba_model *m = NULL;
    r->own_peak = reset_peak_rss();
    const double t_open = cli_now();
    segmamba_status st = cli_open_model(model, &opts, NULL, &m);
    if (st != SEGMAMBA_OK) return cli_fail(st);
    r->load_seconds = cli_now() - t_open;
    segmamba_get_config(m, &r->cfg);
    cli_precision_notice(&opts, &r->cfg);
    const segmamba_config c = r->cfg;
    const int64_t vox = (int64_t)size * size * size;
    float *x = malloc((size_t)(c.in_chans * vox) * sizeof *x);
    float *y = malloc((size_t)(c.out_chans * vox) * sizeof *y);
    const size_t nrep = (size_t)(repeat > 0 ? repeat : 1);
    double *times = malloc(nrep * sizeof *times);
    segmamba_profile *profs = malloc(nrep * sizeof *profs);
    segmamba_layer **layers = calloc(nrep, sizeof *layers);
    const int n_layers = segmamba_get_layer_count(m);
    if (!x || !y || !times || !profs || !layers) {
        free(x), free(y), free(times), free(profs), free(layers);
        segmamba_close(m);
        fprintf(stderr, "segmamba: error: out of memory for a %d^3 input\n", size);
        return SEGMAMBA_E_NOMEM;
    }
    uint64_t rnd = 0x2545f4914f6cdd1dull;
    for (int64_t i = 0; i < c.in_chans * vox; i++) {
        rnd ^= rnd << 13, rnd ^= rnd >> 7, rnd ^= rnd << 17;
        x[i] = (float)((double)(rnd >> 11) / 9007199254740992.0 * 4.0 - 2.0);
    }
    const char *name = r->label;
    for (int run = -1; run < repeat && st == SEGMAMBA_OK; run++) {
        fprintf(stderr, "bench: %s %s %d/%d...\n", name, run < 0 ? "warm-up" : "forward", run + 1,
                repeat);
        double t0 = cli_now();
        st = segmamba_forward(m, x, size, size, size, y);
        double dt = cli_now() - t0;
        if (run < 0) continue;
        times[run] = dt;
        segmamba_get_profile(m, &profs[run]);
        layers[run] = malloc((size_t)n_layers * sizeof **layers);
        for (int i = 0; layers[run] && i < n_layers; i++) segmamba_get_layer(m, i, &layers[run][i]);
    }
    free(x), free(y);
    int med = 0;
    if (st == SEGMAMBA_OK) {
        double *sorted = malloc(nrep * sizeof *sorted);
        if (sorted) {
            memcpy(sorted, times, nrep * sizeof *sorted);
            const double mt = median(sorted, repeat);
            for (int k = 0; k < repeat; k++)
                if (fabs(times[k] - mt) < fabs(times[med] - mt)) med = k;
            free(sorted);
        }
        r->seconds = times[med];
        segmamba_get_config(m, &r->cfg);
        r->arena_mib = (double)r->cfg.arena_bytes / (1024.0 * 1024.0);
        r->weights_mib = (double)r->cfg.weight_bytes / (1024.0 * 1024.0);
        r->prof = profs[med];
        r->seconds_conv3 = 0.0;
        for (int i = 0; layers[med] && i < n_layers; i++)
            if (layers[med][i].conv3x3x3) r->seconds_conv3 += layers[med][i].seconds;
        if (top_nodes > 0 && layers[med]) print_layers(layers[med], n_layers, top_nodes);
    }
    segmamba_close(m);
    r->peak_rss_mib = peak_rss_mib();
#if defined(__GLIBC__)
    /* What glibc keeps of this model's memory would count in the next
     * row's peak. */
    malloc_trim(0);
#endif
    for (int k = 0; k < repeat; k++) free(layers[k]);
    free(layers), free(profs), free(times);
    return st == SEGMAMBA_OK ? 0 : cli_fail(st);
}

static void print_run(const bench_run *r, int size, int nt, int with_model)
{
    const char *model = r->model;
    const segmamba_config c = r->cfg;
    const double t = r->seconds;
    const double kinds[4] = {r->prof.seconds_conv, r->prof.seconds_scan, r->prof.seconds_norm,
                             r->prof.seconds_other};
    static const char *const kind_names[4] = {"conv", "scan", "norm", "other"};
    const double gflops = r->prof.flops / t * 1e-9;
    const char *family, *mamba_type;
    segmamba_get_config_names(&c, &family, &mamba_type);
    if (with_model)
        printf("model      %s: %s (Mamba %s), %d->%d channels, features %d,%d,%d,%d, "
               "%lld parameters\n",
               model, family, mamba_type, c.in_chans, c.out_chans, c.feat[0], c.feat[1], c.feat[2],
               c.feat[3], (long long)c.n_params);
    if (r->backend == SEGMAMBA_BACKEND_CUDA)
        printf("input      1x%dx%d^3 on CUDA (%s), %s GEMMs\n", c.in_chans, size, r->device,
               c.tf32 ? "tf32" : "fp32");
    else
        printf("input      1x%dx%d^3, --conv %s, %s convolutions, %d threads, scan %s\n",
               c.in_chans, size, r->conv_name, c.bf16 ? "bf16" : "fp32", nt, segmamba_get_isa());
    printf("load       %.3f s (reading, checking, preparing the weights)\n", r->load_seconds);
    printf("forward    %.3f s (the median of the runs; its breakdown:)\n", t);
    for (int k = 0; k < 4; k++) {
        printf("  %-6s   %8.3f s  %5.1f%%\n", kind_names[k], kinds[k], 100.0 * kinds[k] / t);
        if (k == 0 && r->backend == SEGMAMBA_BACKEND_CPU)
            printf("    3x3x3  %8.3f s  %5.1f%%  (of conv: the 3x3x3 stride-1 layers)\n",
                   r->seconds_conv3, 100.0 * r->seconds_conv3 / t);
    }
    printf("arithmetic %.1f GFLOP per forward, %.1f GFLOP/s\n", r->prof.flops * 1e-9, gflops);
    if (r->backend == SEGMAMBA_BACKEND_CPU)
        printf("FMA peak   %.1f GFLOP/s measured (%s, %d threads): forward at %.1f%% of peak\n",
               r->peak_gflops, segmamba_get_isa(), nt, 100.0 * gflops / r->peak_gflops);
    printf("throughput %.0f voxels/s\n", (double)size * size * size / t);
    if (r->backend == SEGMAMBA_BACKEND_CPU) {
        printf("activations %.0f MiB (the arena the memory plan made for this size)\n",
               r->arena_mib);
        printf("weights    %.0f MiB (resident: %lld parameters in the layouts the backends keep)\n",
               r->weights_mib, (long long)r->cfg.n_params);
    }
    printf("peak RSS   %.0f MiB (%s)\n", r->peak_rss_mib,
           r->own_peak ? "from loading to closing this model" : "of the whole process");
}

/* Each kind of work of every CPU row next to the first row's, and the ratio. */
static void print_comparison(const bench_run *runs, int n)
{
    printf("\nside by side (median forwards; ratio = row / %s):\n", runs[0].label);
    printf("%-12s", "work");
    for (int k = 0; k < n; k++) printf("  %12s", runs[k].label);
    for (int k = 1; k < n; k++) printf("  %8s", "ratio");
    printf("\n");
    for (int w = 0; w < 8; w++) {
        static const char *const names[8] = {"conv 3x3x3", "conv other", "scan", "norm",
                                             "other",      "forward",    "load", "peak RSS"};
        double v[8];
        for (int k = 0; k < n; k++) {
            const bench_run *r = &runs[k];
            const double all[8] = {r->seconds_conv3,      r->prof.seconds_conv - r->seconds_conv3,
                                   r->prof.seconds_scan,  r->prof.seconds_norm,
                                   r->prof.seconds_other, r->seconds,
                                   r->load_seconds,       r->peak_rss_mib};
            v[k] = all[w];
        }
        printf("%-12s", names[w]);
        for (int k = 0; k < n; k++) printf(w == 7 ? "  %8.0f MiB" : "  %10.3f s", v[k]);
        for (int k = 1; k < n; k++) printf("  %8.3f", v[0] > 0.0 ? v[k] / v[0] : 0.0);
        printf("\n");
    }
}

/* Milliseconds per 128^3 window at the measured voxel rate. */
static double ms_per_window(const bench_run *r, int size)
{
    return 1e3 * r->seconds * (128.0 * 128.0 * 128.0) / ((double)size * size * size);
}

static void json_run(cli_text *o, const bench_run *r, int size, int nt)
{
    const segmamba_profile *p = &r->prof;
    const double t = r->seconds, gflops = p->flops / t * 1e-9;
    const int cuda = r->backend == SEGMAMBA_BACKEND_CUDA;
    const char *family, *mamba_type;
    segmamba_get_config_names(&r->cfg, &family, &mamba_type);
    cli_text_printf(o, "\"model\": ");
    cli_text_json_string(o, r->model);
    cli_text_printf(o,
                    ", \"family\": \"%s\", \"mamba_type\": \"%s\", \"n_params\": %lld, "
                    "\"backend\": \"%s\", ",
                    family, mamba_type, (long long)r->cfg.n_params, cuda ? "cuda" : "cpu");
    if (cuda) {
        cli_text_printf(o, "\"device\": ");
        cli_text_json_string(o, r->device);
        cli_text_printf(o, ", \"precision\": \"%s\", ", r->cfg.tf32 ? "tf32" : "fp32");
    } else {
        cli_text_printf(o,
                        "\"conv\": \"%s\", \"load_seconds\": %.6f, "
                        "\"seconds_conv3x3x3\": %.6f, "
                        "\"precision\": \"%s\", \"threads\": %d, \"scan_isa\": \"%s\", "
                        "\"peak_gflops\": %.3f, \"fraction_of_peak\": %.4f, "
                        "\"activations_mib\": %.1f, \"arena_bytes\": %lld, \"weights_mib\": %.1f, "
                        "\"weight_bytes\": %lld, ",
                        r->conv_name, r->load_seconds, r->seconds_conv3,
                        r->cfg.bf16 ? "bf16" : "fp32", nt, segmamba_get_isa(), r->peak_gflops,
                        gflops / r->peak_gflops, r->arena_mib, (long long)r->cfg.arena_bytes,
                        r->weights_mib, (long long)r->cfg.weight_bytes);
    }
    cli_text_printf(o,
                    "\"seconds\": %.6f, \"seconds_conv\": %.6f, \"seconds_scan\": %.6f, "
                    "\"seconds_norm\": %.6f, \"seconds_other\": %.6f, \"gflop\": %.3f, "
                    "\"gflops\": %.3f, \"voxels_per_second\": %.1f, "
                    "\"ms_per_128_window\": %.3f, \"peak_rss_mib\": %.1f",
                    t, p->seconds_conv, p->seconds_scan, p->seconds_norm, p->seconds_other,
                    p->flops * 1e-9, gflops, (double)size * size * size / t, ms_per_window(r, size),
                    r->peak_rss_mib);
}

int cmd_bench(int argc, char **argv)
{
    enum { MAX_MODELS = 8 };
    const char *models[MAX_MODELS], *json = NULL, *conv_list = "auto";
    int n_models = 0;
    int size = 128, threads = 0, repeat = 3, top_nodes = 0;
    segmamba_options opts = {0};
    int custom_nslices = 0, backend_given = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage_bench(stdout);
            return 0;
        }
        if (a[0] == '-' && !v) return cli_usage_error("bench: %s needs a value", a);
        i++;
        if (strcmp(a, "--model") == 0) {
            if (n_models == MAX_MODELS)
                return cli_usage_error("bench: %s", "--model given more than 8 times");
            models[n_models++] = v;
        } else if (strcmp(a, "--json") == 0)
            json = v;
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
            conv_list = v;
        } else if (strcmp(a, "--precision") == 0) {
            if (!cli_parse_precision(v, &opts))
                return cli_usage_error("bench: --precision wants fp32, bf16 or tf32, not '%s'", v);
        } else if (strcmp(a, "--backend") == 0) {
            if (!cli_parse_backend(v, &opts.backend))
                return cli_usage_error("bench: --backend wants cpu or cuda, not '%s'", v);
            backend_given = 1;
        } else if (strcmp(a, "--scan") == 0) {
            if (!segmamba_set_isa(v))
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
    if (n_models == 0) return cli_usage_error("bench: %s", "--model is required");
    if (!custom_nslices)
        for (int i = 0; i < SEGMAMBA_STAGES; i++) opts.nslices[i] = size >> (i + 1);
    segmamba_set_threads(threads);
    const int nt = segmamba_get_threads();

    /* The CPU rows, one per model and --conv entry (models outermost), then
     * the GPU's when there is one and one model. */
    enum { MAX_ROWS = 8 };
    bench_run runs[MAX_ROWS + 1];
    char conv_names[MAX_ROWS][16];
    segmamba_options convs[MAX_ROWS];
    int n_convs = 0;
    for (const char *p = conv_list;;) {
        const char *end = strchr(p, ',');
        const size_t len = end ? (size_t)(end - p) : strlen(p);
        if (n_convs == MAX_ROWS || len == 0 || len >= sizeof conv_names[0])
            return cli_usage_error("bench: --conv wants up to 8 of " CLI_CONV_KINDS
                                   ", separated by commas, not '%s'",
                                   conv_list);
        memcpy(conv_names[n_convs], p, len);
        conv_names[n_convs][len] = '\0';
        if (!cli_parse_conv(conv_names[n_convs], &convs[n_convs]))
            return cli_usage_error("bench: --conv wants " CLI_CONV_KINDS ", not '%s'",
                                   conv_names[n_convs]);
        n_convs++;
        if (!end) break;
        p = end + 1;
    }
    if (backend_given && opts.backend == SEGMAMBA_BACKEND_CUDA) n_convs = 1;
    if (n_models * n_convs > MAX_ROWS)
        return cli_usage_error("bench: %s", "models times --conv entries make more than 8 rows");
    int n_cpu = 0;
    for (int i = 0; i < n_models; i++)
        for (int j = 0; j < n_convs; j++) {
            bench_run *r = &runs[n_cpu++];
            *r = (bench_run){.model = models[i],
                             .backend = opts.backend,
                             .conv = convs[j],
                             .conv_name = conv_names[j]};
            const char *conv = opts.backend == SEGMAMBA_BACKEND_CUDA ? "cuda" : conv_names[j];
            if (n_models == 1)
                snprintf(r->label, sizeof r->label, "%.15s", conv);
            else if (n_convs == 1)
                snprintf(r->label, sizeof r->label, "model %d", i + 1);
            else
                snprintf(r->label, sizeof r->label, "m%d %.15s", i + 1, conv);
        }
    char gpu[256];
    const int have_gpu = segmamba_get_cuda_device(gpu, sizeof gpu);
    int n_runs = n_cpu;
    if (!backend_given && have_gpu && n_models == 1)
        runs[n_runs++] = (bench_run){.model = models[0],
                                     .label = "cuda",
                                     .backend = SEGMAMBA_BACKEND_CUDA,
                                     .conv_name = "cuda"};
    double peak = 0.0;
    for (int k = 0; k < n_runs; k++) {
        bench_run *r = &runs[k];
        if (r->backend == SEGMAMBA_BACKEND_CPU) {
            if (k == 0) {
                fprintf(stderr, "bench: measuring the FP32 FMA peak (%s, %d threads)...\n",
                        segmamba_get_isa(), nt);
                peak = segmamba_measure_fma_peak(nt);
            }
            r->peak_gflops = peak;
        } else {
            snprintf(r->device, sizeof r->device, "%s", gpu);
        }
        const int rc = run_backend(opts, size, repeat, top_nodes, r);
        if (rc != 0) return rc;
    }
    for (int k = 0; k < n_runs; k++) {
        if (k > 0) printf("\n");
        print_run(&runs[k], size, nt, k == 0 || runs[k].model != runs[k - 1].model);
    }
    if (n_cpu > 1) print_comparison(runs, n_cpu);
    const bench_run *gpu_run = n_runs > n_cpu ? &runs[n_cpu] : NULL;
    if (gpu_run) {
        printf("\nbackend  forward    per 128^3 window  voxels/s\n");
        for (int k = 0; k < 2; k++) {
            const bench_run *r = k ? gpu_run : &runs[0];
            printf("%-7s  %7.3f s  %10.1f ms     %.4g\n",
                   r->backend == SEGMAMBA_BACKEND_CUDA ? "cuda" : "cpu", r->seconds,
                   ms_per_window(r, size), (double)size * size * size / r->seconds);
        }
        printf("the GPU is %.3gx the CPU (%s; CPU: %d threads)\n",
               runs[0].seconds / gpu_run->seconds, gpu, nt);
    }
    if (json) {
        cli_text o;
        segmamba_status st = cli_text_open(&o);
        cli_text_printf(&o, "{\"size\": %d, \"repeat\": %d, ", size, repeat);
        json_run(&o, &runs[0], size, nt);
        if (n_cpu > 1) {
            cli_text_printf(&o, ", \"runs\": [");
            for (int k = 0; k < n_cpu; k++) {
                cli_text_printf(&o, "%s{", k ? ", " : "");
                json_run(&o, &runs[k], size, nt);
                cli_text_printf(&o, "}");
            }
            cli_text_printf(&o, "]");
        }
        if (gpu_run) {
            cli_text_printf(&o, ", \"cuda\": {");
            json_run(&o, gpu_run, size, nt);
            cli_text_printf(&o, "}, \"cuda_speedup\": %.3f", runs[0].seconds / gpu_run->seconds);
        }
        cli_text_printf(&o, "}\n");
        if (st == SEGMAMBA_OK) st = cli_text_write(&o, json);
        if (st != SEGMAMBA_OK) return cli_fail(st);
    }
    return 0;
}
