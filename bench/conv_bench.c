/* Times one convolution shape on every built-in backend.
 *
 *   conv_bench CIN COUT K STRIDE PAD N [REPS [fp32|bf16 [BACKENDS]]]
 *
 * runs a cubic N^3 input; prints the first call (which includes any
 * per-size setup, such as oneDNN's primitive creation) and the best of REPS
 * further calls, with GFLOP/s counting 2 flops per multiply-add of the
 * direct convolution (so that a Winograd row's figure is its speed-up
 * times the direct rate), and each backend's largest difference from the
 * first one listed, relative to that one's largest output. BACKENDS is a
 * comma-separated list of ref, blas, onednn, winograd2, winograd3 and
 * winograd4 (Winograd's output tile; 3x3x3 stride 1 pad 1 only); default:
 * all of them that are built in and take the shape. In bf16
 * the backends that refuse it (all but oneDNN, or every one on a CPU without
 * native bf16) are listed with the reason and skipped. Thread
 * counts come from the environment (OMP_NUM_THREADS, which OpenBLAS also
 * reads). DNNL_VERBOSE=1 shows which oneDNN implementation runs. */
#include "engine/conv.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *random_floats(size_t n)
{
    float *x = malloc(n * sizeof *x);
    if (!x) return NULL;
    unsigned s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)(s >> 8) / (float)(1u << 23) - 1.0f;
    }
    return x;
}

/* One row of the table: a backend, and the Winograd tile for that one. */
typedef struct variant {
    const char *name;
    sm_conv_kind kind;
    int tile;
} variant;

static const variant variants[] = {
    {"ref", SM_CONV_REF, 0},
    {"blas", SM_CONV_BLAS, 0},
    {"onednn", SM_CONV_ONEDNN, 0},
    {"winograd2", SM_CONV_WINOGRAD, 2},
    {"winograd3", SM_CONV_WINOGRAD, 3},
    {"winograd4", SM_CONV_WINOGRAD, 4},
};
enum { NVARIANTS = sizeof variants / sizeof *variants };

/* Whether name is in the comma-separated list (NULL: every name). */
static int listed(const char *list, const char *name)
{
    if (!list) return 1;
    const size_t len = strlen(name);
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        const size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == len && strncmp(p, name, n) == 0) return 1;
        p += n + (end ? 1 : 0);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: %s CIN COUT K STRIDE PAD N [REPS [fp32|bf16 [BACKENDS]]]\n",
                argv[0]);
        return 2;
    }
    sm_precision precision = SM_PREC_F32;
    if (argc > 8 && strcmp(argv[8], sm_precision_name(SM_PREC_BF16)) == 0)
        precision = SM_PREC_BF16;
    else if (argc > 8 && strcmp(argv[8], sm_precision_name(SM_PREC_F32)) != 0) {
        fprintf(stderr, "precision must be fp32 or bf16, not '%s'\n", argv[8]);
        return 2;
    }
    const char *list = argc > 9 ? argv[9] : NULL;
    for (int v = 0; list && v < NVARIANTS && !listed(list, variants[v].name); v++)
        if (v == NVARIANTS - 1) {
            fprintf(stderr, "no known backend in '%s'\n", list);
            return 2;
        }
    sm_conv_params p = {atoi(argv[1]), atoi(argv[2]),
                        atoi(argv[3]), atoi(argv[4]),
                        atoi(argv[5]), SM_ACT_NONE,
                        precision,     0,
                        NULL,          0};
    const int n = atoi(argv[6]), reps = argc > 7 ? atoi(argv[7]) : 3;
    const int on = sm_conv_out_size(&p, n);
    const double flops = 2.0 * on * on * on * p.cout * (double)p.k * p.k * p.k * p.cin;
    float *weight = random_floats((size_t)p.cout * p.cin * p.k * p.k * p.k);
    float *bias = random_floats((size_t)p.cout);
    float *src = random_floats((size_t)n * n * n * p.cin);
    const size_t nout = (size_t)on * on * on * p.cout;
    float *dst = malloc(nout * sizeof *dst), *first_dst = malloc(nout * sizeof *first_dst);
    int have_first = 0;
    if (!weight || !bias || !src || !dst || !first_dst || on < 1) {
        fprintf(stderr, "out of memory or empty output\n");
        return 1;
    }
    printf("%d->%d k%d s%d p%d at %d^3, %s: %.1f GFLOP\n", p.cin, p.cout, p.k, p.stride, p.pad, n,
           sm_precision_name(precision), flops * 1e-9);
    for (int v = 0; v < NVARIANTS; v++) {
        const variant *var = &variants[v];
        if (!sm_conv_available(var->kind) || !listed(list, var->name)) continue;
        sm_conv *c;
        p.tile = var->tile;
        sm_status s = sm_conv_create(var->kind, &p, weight, bias, &c);
        if (s == SEGMAMBA_E_UNSUPPORTED) {
            printf("  %-9s skipped: %s\n", var->name, segmamba_get_last_error());
            continue;
        }
        double first = 0.0, best = 1e30;
        for (int r = 0; s == SEGMAMBA_OK && r <= reps; r++) {
            double t = now();
            s = sm_conv_forward(c, src, p.cin, n, n, n, dst, p.cout);
            t = now() - t;
            if (r == 0)
                first = t;
            else if (t < best)
                best = t;
        }
        if (s != SEGMAMBA_OK) {
            fprintf(stderr, "%s: %s\n", var->name, segmamba_get_last_error());
            return 1;
        }
        if (reps < 1) best = first;
        if (!have_first) memcpy(first_dst, dst, nout * sizeof *dst);
        double max_ref = 0.0, max_diff = 0.0;
        for (size_t i = 0; i < nout; i++) {
            max_ref = fmax(max_ref, fabs(first_dst[i]));
            max_diff = fmax(max_diff, fabs((double)dst[i] - first_dst[i]));
        }
        printf("  %-9s first %9.1f ms   best %9.1f ms   %7.1f GFLOP/s", var->name, first * 1e3,
               best * 1e3, flops / best * 1e-9);
        if (have_first) printf("   diff %.2e", max_diff / max_ref);
        printf("\n");
        have_first = 1;
        sm_conv_free(c);
    }
    free(weight);
    free(bias);
    free(src);
    free(dst);
    free(first_dst);
    return 0;
}
