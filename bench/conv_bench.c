/* Times one convolution shape on every built-in backend.
 *
 *   conv_bench CIN COUT K STRIDE PAD N [REPS [fp32|bf16]]
 *
 * runs a cubic N^3 input; prints the first call (which includes any
 * per-size setup, such as oneDNN's primitive creation) and the best of REPS
 * further calls, with GFLOP/s counting 2 flops per multiply-add. In bf16
 * the backends that refuse it (all but oneDNN, or every one on a CPU without
 * native bf16) are listed with the reason and skipped. Thread
 * counts come from the environment (OMP_NUM_THREADS, which OpenBLAS also
 * reads). DNNL_VERBOSE=1 shows which oneDNN implementation runs. */
#include "conv.h"

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

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: %s CIN COUT K STRIDE PAD N [REPS [fp32|bf16]]\n", argv[0]);
        return 2;
    }
    sm_precision precision = SM_PREC_F32;
    if (argc > 8 && strcmp(argv[8], sm_precision_name(SM_PREC_BF16)) == 0)
        precision = SM_PREC_BF16;
    else if (argc > 8 && strcmp(argv[8], sm_precision_name(SM_PREC_F32)) != 0) {
        fprintf(stderr, "precision must be fp32 or bf16, not '%s'\n", argv[8]);
        return 2;
    }
    sm_conv_params p = {atoi(argv[1]), atoi(argv[2]), atoi(argv[3]), atoi(argv[4]),
                        atoi(argv[5]), SM_ACT_NONE, precision};
    const int n = atoi(argv[6]), reps = argc > 7 ? atoi(argv[7]) : 3;
    const int on = sm_conv_out_size(&p, n);
    const double flops = 2.0 * on * on * on * p.cout * (double)p.k * p.k * p.k * p.cin;
    float *weight = random_floats((size_t)p.cout * p.cin * p.k * p.k * p.k);
    float *bias = random_floats((size_t)p.cout);
    float *src = random_floats((size_t)n * n * n * p.cin);
    float *dst = malloc((size_t)on * on * on * p.cout * sizeof *dst);
    if (!weight || !bias || !src || !dst || on < 1) {
        fprintf(stderr, "out of memory or empty output\n");
        return 1;
    }
    printf("%d->%d k%d s%d p%d at %d^3, %s: %.1f GFLOP\n", p.cin, p.cout, p.k, p.stride, p.pad,
           n, sm_precision_name(precision), flops * 1e-9);
    for (int kind = SM_CONV_REF; kind <= SM_CONV_ONEDNN; kind++) {
        if (!sm_conv_available((sm_conv_kind)kind)) continue;
        sm_conv *c;
        sm_status s = sm_conv_create((sm_conv_kind)kind, &p, weight, bias, &c);
        if (s == SEGMAMBA_E_UNSUPPORTED) {
            printf("  %-7s skipped: %s\n", sm_conv_kind_name((sm_conv_kind)kind),
                   segmamba_last_error());
            continue;
        }
        double first = 0.0, best = 1e30;
        for (int r = 0; s == SEGMAMBA_OK && r <= reps; r++) {
            double t = now();
            s = sm_conv_forward(c, src, p.cin, n, n, n, dst, p.cout);
            t = now() - t;
            if (r == 0) first = t;
            else if (t < best) best = t;
        }
        if (s != SEGMAMBA_OK) {
            fprintf(stderr, "%s: %s\n", sm_conv_kind_name((sm_conv_kind)kind),
                    segmamba_last_error());
            return 1;
        }
        if (reps < 1) best = first;
        printf("  %-7s first %9.1f ms   best %9.1f ms   %7.1f GFLOP/s\n",
               sm_conv_kind_name((sm_conv_kind)kind), first * 1e3, best * 1e3, flops / best * 1e-9);
        sm_conv_free(c);
    }
    free(weight);
    free(bias);
    free(src);
    free(dst);
    return 0;
}
