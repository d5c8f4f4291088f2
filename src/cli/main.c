/* segmamba: the command-line client of libsegmamba. It is the one place
 * that prints errors; the exit code is the segmamba_status of the failure
 * (see usage()). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "cli.h"
#include "segmamba.h"
#include "sm_cli_config.h"

static const char exit_codes[] =
    "Exit codes:\n"
    "  0  success\n"
    "  1  invalid command line or argument\n"
    "  2  a file cannot be opened, read or written\n"
    "  3  a file is corrupt or not in the format it claims\n"
    "  4  valid input the engine does not support (e.g. NaN or infinite voxels)\n"
    "  5  the checkpoint is not a usable SegMamba model (missing, extra, mis-shaped or\n"
    "     non-finite tensors)\n"
    "  6  the input volume has a shape the model refuses\n"
    "  7  out of memory, or a size declared by a file, or a forward's activations plus\n"
    "     weights, above the memory limit (SEGMAMBA_MAX_MEMORY, e.g. 8G; default: the\n"
    "     machine's physical memory)\n"
    "  8  a compute backend (oneDNN, OpenBLAS, CUDA) failed or is not available\n"
    "  9  cancelled (Ctrl-C during predict; nothing of the case written)\n";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: segmamba <command> [options]\n"
            "\n"
            "SegMamba 3D segmentation inference on the CPU.\n"
            "\n"
            "Commands:\n"
            "  predict          segment NIfTI volumes: a label map (and probabilities,\n"
            "                   regions, uncertainty, a PNG preview) with the input's geometry;\n"
            "                   --list: a whole cohort from a CSV file (across MPI ranks\n"
            "                   under mpirun or srun)\n"
            "  metrics          Dice and HD95 (mm) of a segmentation against a reference\n"
            "  preview          a PNG of three slices with the labels overlaid\n"
            "  info MODEL       the model's configuration, parameter count and model card\n"
            "  convert          a .pt checkpoint plus its model card into one .safetensors\n"
            "  forward          run the network on a NumPy volume, write the logits\n"
            "  bench            time forward passes against this machine's FMA peak\n"
            "  version          engine version and build features\n"
            "  help [COMMAND]   this text, or a command's options\n"
            "\n"
            "MODEL is a PyTorch checkpoint (.pt, torch.save of a state_dict, optionally\n"
            "wrapped as {\"module\": ...}) or a .safetensors file. Run 'segmamba help\n"
            "COMMAND' (or 'segmamba COMMAND --help') for a command's options.\n"
            "\n%s",
            exit_codes);
}

static void usage_info(FILE *f)
{
    fprintf(f, "usage: segmamba info MODEL [--json]\n"
               "\n"
               "Loads MODEL, infers its configuration from the tensor shapes and prints it,\n"
               "with the names of checkpoint tensors inference ignores (deep-supervision\n"
               "heads), if any.\n"
               "  --json   print one JSON object instead of text\n");
}

static void usage_forward(FILE *f)
{
    fprintf(f,
            "usage: segmamba forward --model M --input X.npy --output Y.npy [options]\n"
            "\n"
            "Runs the network on X, a float32 NumPy array shaped (N, C, D, H, W) or\n"
            "(C, D, H, W) with C the model's input channels and each of D, H, W a\n"
            "multiple of 16, and writes the logits to Y shaped (N, K, D, H, W) or\n"
            "(K, D, H, W), K the model's output channels. N volumes run as one batch\n"
            "(segmamba_forward_batch).\n"
            "\n"
            "  --model M           checkpoint (.pt or .safetensors)\n"
            "  --input X.npy       input volume\n"
            "  --output Y.npy      logits (written atomically)\n"
            "  --threads N         threads for OpenMP, oneDNN and OpenBLAS (default: all cores)\n"
            "  --conv KIND         convolutions: auto (default: Winograd for the 3x3x3\n"
            "                      layers whose transformed weights stay within a memory\n"
            "                      rule (docs/convolution-backends.md), k2 s2 as GEMM,\n"
            "                      the rest on oneDNN when built in, else OpenBLAS);\n"
            "                      winograd (every 3x3x3 layer; winograd2, winograd3,\n"
            "                      winograd4 with that output tile); onednn, blas, or ref\n"
            "                      (every layer on it; ref is slow, for testing)\n"
            "  --scan LEVEL        kernel level: scalar, avx2, avx512 or neon (default: the\n"
            "                      best this CPU has; a level it lacks falls back below)\n"
            "  --nslices a,b,c,d   inter-slice scan lengths per stage (default: the model\n"
            "                      card's, else the official 64,32,16,8,\n"
            "                      right for 128^3 inputs: stage i's token count must be\n"
            "                      divisible by its value)\n"
            "  --backend B         cpu (default) or cuda: an NVIDIA GPU, in an engine built\n"
            "                      with CUDA ('segmamba version' says; exit code 8 if not)\n"
            "  --precision P       fp32 (default); bf16: bf16 convolutions with fp32\n"
            "                      accumulation, on oneDNN with a CPU that has AVX512_BF16\n"
            "                      (elsewhere it says so and runs fp32); tf32: with --backend\n"
            "                      cuda, GEMMs on TF32 tensor cores; the scan stays fp32\n"
            "  --fue, --no-fue     feature-level uncertainty estimation on (the paper) or off\n"
            "                      (default: as the model card says; off in the released code)\n"
            "  --quiet             print nothing on success\n");
}

static void print_ints(FILE *f, const int *v, int n, const char *sep)
{
    for (int i = 0; i < n; i++) fprintf(f, "%s%d", i ? sep : "", v[i]);
}

/* The checkpoint tensors inference does not use, comma-separated: as JSON
 * strings or as they are. */
static void print_ignored(const segmamba_model *m, int json)
{
    cli_text out = {.f = stdout}; /* cli_text_json_string's escaping, straight to stdout */
    for (int i = 0; i < segmamba_get_ignored_count(m); i++) {
        if (i) printf(", ");
        if (json)
            cli_text_json_string(&out, segmamba_get_ignored_name(m, i));
        else
            printf("%s", segmamba_get_ignored_name(m, i));
    }
}

static int cmd_info(int argc, char **argv)
{
    const char *path = NULL;
    int json = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage_info(stdout);
            return 0;
        } else if (argv[i][0] == '-')
            return cli_usage_error("info: unknown option '%s'", argv[i]);
        else if (!path)
            path = argv[i];
        else
            return cli_usage_error("info: unexpected argument '%s'", argv[i]);
    }
    if (!path) return cli_usage_error("info: %s", "a MODEL path is required");
    segmamba_model *m;
    segmamba_options opts = {0};
    segmamba_card card;
    segmamba_status st = cli_open_model(path, &opts, &card, &m);
    if (st != SEGMAMBA_OK) return cli_fail(st);
    segmamba_config c;
    segmamba_get_config(m, &c);
    const char *family, *mamba_type;
    segmamba_get_config_names(&c, &family, &mamba_type);
    if (json) {
        char *card_json = NULL;
        st = segmamba_card_format_json(&card, &card_json);
        if (st != SEGMAMBA_OK) {
            segmamba_close(m);
            return cli_fail(st);
        }
        printf("{\"family\": \"%s\", \"mamba_type\": \"%s\", \"in_chans\": %d, "
               "\"out_chans\": %d, \"depths\": [",
               family, mamba_type, c.in_chans, c.out_chans);
        print_ints(stdout, c.depths, 4, ", ");
        printf("], \"feat_size\": [");
        print_ints(stdout, c.feat, 4, ", ");
        printf("], \"hidden_size\": %d, \"d_state\": %d, \"d_conv\": %d, \"expand\": %d, "
               "\"dt_rank\": [",
               c.hidden, c.d_state, c.d_conv, c.expand);
        print_ints(stdout, c.dt_rank, 4, ", ");
        printf("], \"nslices\": [");
        print_ints(stdout, c.nslices, 4, ", ");
        printf("], \"fue\": %s, \"parameters\": %lld, \"ignored\": [", c.fue ? "true" : "false",
               (long long)c.n_params);
        print_ignored(m, 1);
        printf("], \"card\": %s}\n", card_json);
        free(card_json);
        segmamba_close(m);
        return 0;
    }
    printf("model        %s\n", path);
    printf("family       %s, mamba %s\n", family, mamba_type);
    printf("channels     %d in, %d out\n", c.in_chans, c.out_chans);
    printf("depths       ");
    print_ints(stdout, c.depths, 4, ", ");
    printf("\nfeatures     ");
    print_ints(stdout, c.feat, 4, ", ");
    printf("\nhidden       %d\n", c.hidden);
    printf("mamba        d_state %d, d_conv %d, expand %d, dt_rank ", c.d_state, c.d_conv,
           c.expand);
    print_ints(stdout, c.dt_rank, 4, ", ");
    printf("\nnslices      ");
    print_ints(stdout, c.nslices, 4, ", ");
    printf(c.mamba_type == SEGMAMBA_MAMBA_V3
               ? " (from the model card; forward --nslices overrides)\n"
               : " (unused: no inter-slice scan with this Mamba type)\n");
    printf("fue          %s\n", c.fue ? "on" : "off");
    printf("parameters   %lld\n", (long long)c.n_params);
    if (segmamba_get_ignored_count(m) > 0) {
        printf("ignored      %d tensors: ", segmamba_get_ignored_count(m));
        print_ignored(m, 0);
        printf("\n");
    }
    segmamba_close(m);
    cli_print_card(stdout, &card);
    return 0;
}

static int cmd_forward(int argc, char **argv)
{
    const char *model = NULL, *input = NULL, *output = NULL;
    int threads = 0, quiet = 0;
    segmamba_options opts = {0};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage_forward(stdout);
            return 0;
        } else if (strcmp(a, "--fue") == 0) {
            opts.fue = SEGMAMBA_FUE_ON;
        } else if (strcmp(a, "--no-fue") == 0) {
            opts.fue = SEGMAMBA_FUE_OFF;
        } else if (strcmp(a, "--quiet") == 0) {
            quiet = 1;
        } else if (!v && (strcmp(a, "--model") == 0 || strcmp(a, "--input") == 0 ||
                          strcmp(a, "--output") == 0 || strcmp(a, "--threads") == 0 ||
                          strcmp(a, "--conv") == 0 || strcmp(a, "--nslices") == 0 ||
                          strcmp(a, "--scan") == 0 || strcmp(a, "--precision") == 0 ||
                          strcmp(a, "--backend") == 0)) {
            return cli_usage_error("forward: %s needs a value", a);
        } else if (strcmp(a, "--model") == 0) {
            model = argv[++i];
        } else if (strcmp(a, "--input") == 0) {
            input = argv[++i];
        } else if (strcmp(a, "--output") == 0) {
            output = argv[++i];
        } else if (strcmp(a, "--threads") == 0) {
            if (!cli_parse_int(argv[++i], 1, 4096, &threads))
                return cli_usage_error("forward: --threads wants a positive integer, not '%s'", v);
        } else if (strcmp(a, "--conv") == 0) {
            if (!cli_parse_conv(argv[++i], &opts))
                return cli_usage_error("forward: --conv wants " CLI_CONV_KINDS ", not '%s'", v);
        } else if (strcmp(a, "--precision") == 0) {
            if (!cli_parse_precision(argv[++i], &opts))
                return cli_usage_error("forward: --precision wants fp32, bf16 or tf32, not '%s'",
                                       v);
        } else if (strcmp(a, "--backend") == 0) {
            if (!cli_parse_backend(argv[++i], &opts.backend))
                return cli_usage_error("forward: --backend wants cpu or cuda, not '%s'", v);
        } else if (strcmp(a, "--scan") == 0) {
            if (!segmamba_set_isa(argv[++i]))
                return cli_usage_error("forward: --scan wants scalar, avx2, avx512 or neon, "
                                       "not '%s'",
                                       v);
        } else if (strcmp(a, "--nslices") == 0) {
            if (!cli_parse_nslices(argv[++i], opts.nslices))
                return cli_usage_error("forward: --nslices wants four positive integers a,b,c,d, "
                                       "not '%s'",
                                       v);
        } else {
            return cli_usage_error("forward: unknown argument '%s'", a);
        }
    }
    if (!model || !input || !output)
        return cli_usage_error("forward: %s", "--model, --input and --output are required");
    segmamba_set_threads(threads);

    segmamba_array x = {0};
    segmamba_status st = segmamba_file_check_writable(output); /* before the work */
    if (st == SEGMAMBA_OK) st = segmamba_npy_read(input, &x);
    if (st == SEGMAMBA_OK) st = segmamba_array_check_finite(&x, input);
    if (st != SEGMAMBA_OK) {
        segmamba_array_free(&x);
        return cli_fail(st);
    }
    segmamba_model *m = NULL;
    double t0 = cli_now();
    st = cli_open_model(model, &opts, NULL, &m);
    double t_load = cli_now() - t0;
    if (st != SEGMAMBA_OK) {
        segmamba_array_free(&x);
        return cli_fail(st);
    }
    segmamba_config c;
    segmamba_get_config(m, &c);
    cli_precision_notice(&opts, &c);
    const int batched = x.ndim == 5;
    int ok_shape = (x.ndim == 4 || (batched && x.shape[0] >= 1 && x.shape[0] <= 4096));
    const int count = batched ? (int)x.shape[0] : 1;
    const int64_t *s = x.shape + batched;
    for (int k = 1; ok_shape && k < 4; k++) ok_shape = s[k] > 0 && s[k] <= (1 << 16);
    if (!ok_shape || s[0] != c.in_chans) {
        fprintf(stderr,
                "segmamba: error: %s: expected a float32 array shaped (N, %d, D, H, W) or "
                "(%d, D, H, W); got %d dimensions",
                input, c.in_chans, c.in_chans, x.ndim);
        for (int k = 0; k < x.ndim; k++)
            fprintf(stderr, "%s%lld", k ? "x" : " ", (long long)x.shape[k]);
        fprintf(stderr, "\n");
        segmamba_close(m);
        segmamba_array_free(&x);
        return SEGMAMBA_E_SHAPE;
    }
    const int d = (int)s[1], h = (int)s[2], w = (int)s[3];
    st = segmamba_check_shape(m, d, h, w);
    float *y = NULL;
    if (st == SEGMAMBA_OK) {
        y = malloc((size_t)count * c.out_chans * (size_t)d * h * w * sizeof *y);
        if (!y) {
            fprintf(stderr, "segmamba: error: out of memory for the logits\n");
            segmamba_close(m);
            segmamba_array_free(&x);
            return SEGMAMBA_E_NOMEM;
        }
    }
    double t1 = cli_now();
    if (st == SEGMAMBA_OK) st = segmamba_forward_batch(m, count, x.data, d, h, w, y);
    double t_fwd = cli_now() - t1;
    segmamba_close(m);
    segmamba_array_free(&x);
    if (st == SEGMAMBA_OK) {
        int64_t shape[5] = {count, c.out_chans, d, h, w};
        st = segmamba_npy_write(output, batched ? 5 : 4, batched ? shape : shape + 1, y);
    }
    free(y);
    if (st != SEGMAMBA_OK) return cli_fail(st);
    char what[64] = "";
    if (count > 1) snprintf(what, sizeof what, "%d volumes of ", count);
    if (!quiet)
        fprintf(
            stderr,
            "segmamba: %s%dx%dx%d forward in %.3f s (model loaded in %.3f s, %s %s), "
            "wrote %s\n",
            what, d, h, w, t_fwd, t_load, c.backend == SEGMAMBA_BACKEND_CUDA ? "CUDA" : "kernels",
            c.backend == SEGMAMBA_BACKEND_CUDA ? (c.tf32 ? "tf32" : "fp32") : segmamba_get_isa(),
            output);
    return 0;
}

static int cmd_version(void)
{
    segmamba_build_info b;
    segmamba_get_build_info(&b);
    printf("segmamba %s\n", segmamba_get_version());
    printf("oneDNN convolutions: %s\n", b.onednn ? "yes" : "no (OpenBLAS backend)");
    printf("OpenMP: %s\n", b.openmp ? "yes" : "no (single-threaded)");
    printf("MPI (predict --list across ranks): %s\n", SM_HAVE_MPI ? "yes" : "no");
    printf("DICOM (series in, SEG out): %s\n",
           segmamba_dicom_get_supported() ? "yes (dcmtk)" : "no (built without dcmtk)");
    printf("Orthanc plugin: %s\n", SM_HAVE_ORTHANC_PLUGIN ? "yes (libOrthancSegMamba.so)" : "no");
    printf("selective scan: %s\n", segmamba_get_isa());
    char gpu[256];
    const int have_gpu = segmamba_get_cuda_device(gpu, sizeof gpu);
    printf("CUDA backend: %s%s%s\n",
           !b.cuda       ? "not built"
           : b.cuda == 2 ? "emulated on the CPU (tests only)"
                         : "built",
           b.cuda ? (have_gpu ? "; device: " : "; ") : "", b.cuda ? gpu : "");
    return 0;
}

int main(int argc, char **argv)
{
#if defined(__GLIBC__)
    /* The tool owns its process, so it sets the allocator's policy (the
     * library leaves that to the application embedding it): blocks of
     * 1 MiB and more are mapped, and unmapped when freed. glibc otherwise
     * raises that threshold each time such a block is freed, and the
     * per-layer temporaries of a forward (a transposed convolution's GEMM
     * block, oneDNN's packing buffers) then stay resident in the heap:
     * 27 MiB of SegMamba-V2's peak at 128^3, at no measurable cost in
     * time. */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
    if (argc < 2) {
        usage(stderr);
        return SEGMAMBA_E_ARG;
    }
    const char *cmd = argv[1];
    static const struct {
        const char *name;
        int (*run)(int, char **);
        void (*usage)(FILE *);
    } commands[] = {
        {"predict", cmd_predict, usage_predict}, {"metrics", cmd_metrics, usage_metrics},
        {"preview", cmd_preview, usage_preview}, {"convert", cmd_convert, usage_convert},
        {"bench", cmd_bench, usage_bench},       {"info", cmd_info, usage_info},
        {"forward", cmd_forward, usage_forward},
    };
    const size_t ncommands = sizeof commands / sizeof *commands;
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        for (size_t i = 0; argc > 2 && i < ncommands; i++)
            if (strcmp(argv[2], commands[i].name) == 0) {
                commands[i].usage(stdout);
                return 0;
            }
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < ncommands; i++)
        if (strcmp(cmd, commands[i].name) == 0) return commands[i].run(argc - 2, argv + 2);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) return cmd_version();
    return cli_usage_error("unknown command '%s'", cmd);
}
