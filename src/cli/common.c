/* Helpers shared by the CLI's commands. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cli_fail(segmamba_status st)
{
    fprintf(stderr, "segmamba: error: %s\n", cli_last_error());
    cli_error_clear();
    return (int)st;
}

static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
    (void)sig;
    interrupted = 1;
}

void cli_catch_interrupt(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_interrupt;
    sa.sa_flags = SA_RESETHAND; /* a second Ctrl-C ends the process at once */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
}

int cli_interrupted(void) { return interrupted != 0; }

int cli_usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "segmamba: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(run 'segmamba help' for usage)\n");
    return SEGMAMBA_E_ARG;
}

int cli_parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < lo || v > hi) return 0;
    *out = (int)v;
    return 1;
}

int cli_parse_nslices(const char *s, int out[SEGMAMBA_STAGES])
{
    const char *p = s;
    for (int i = 0; i < SEGMAMBA_STAGES; i++) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v <= 0 || v > (1L << 30)) return 0;
        out[i] = (int)v;
        if (i < SEGMAMBA_STAGES - 1) {
            if (*end != ',') return 0;
            p = end + 1;
        } else if (*end != '\0') {
            return 0;
        }
    }
    return 1;
}

int cli_parse_conv(const char *s, segmamba_options *opts)
{
    static const struct {
        const char *name;
        segmamba_conv_backend conv;
        int tile;
    } kinds[] = {
        {"auto", SEGMAMBA_CONV_AUTO, 0},          {"winograd", SEGMAMBA_CONV_WINOGRAD, 0},
        {"winograd2", SEGMAMBA_CONV_WINOGRAD, 2}, {"winograd3", SEGMAMBA_CONV_WINOGRAD, 3},
        {"winograd4", SEGMAMBA_CONV_WINOGRAD, 4}, {"onednn", SEGMAMBA_CONV_ONEDNN, 0},
        {"blas", SEGMAMBA_CONV_BLAS, 0},          {"ref", SEGMAMBA_CONV_REF, 0},
    };
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
        if (strcmp(s, kinds[i].name) == 0) {
            opts->conv = kinds[i].conv;
            opts->winograd_tile = kinds[i].tile;
            return 1;
        }
    return 0;
}

int cli_parse_precision(const char *s, segmamba_options *opts)
{
    opts->bf16 = strcmp(s, "bf16") == 0;
    opts->tf32 = strcmp(s, "tf32") == 0;
    return opts->bf16 || opts->tf32 || strcmp(s, "fp32") == 0;
}

int cli_parse_backend(const char *s, segmamba_backend *out)
{
    if (strcmp(s, "cpu") == 0)
        *out = SEGMAMBA_BACKEND_CPU;
    else if (strcmp(s, "cuda") == 0)
        *out = SEGMAMBA_BACKEND_CUDA;
    else
        return 0;
    return 1;
}

void cli_precision_notice(const segmamba_options *opts, const segmamba_config *c)
{
    if (opts->bf16 && !c->bf16)
        fprintf(stderr, "segmamba: bf16 needs the oneDNN backend and a CPU with AVX512_BF16; "
                        "running fp32\n");
    if (opts->tf32 && !c->tf32)
        fprintf(stderr, "segmamba: tf32 is for the CUDA backend (--backend cuda); running fp32\n");
}

segmamba_status cli_open_model(const char *path, const segmamba_options *opts, segmamba_card *card,
                               segmamba_model **m)
{
    segmamba_card own;
    return segmamba_open_with_card(path, NULL, opts, m, card ? card : &own, NULL);
}
