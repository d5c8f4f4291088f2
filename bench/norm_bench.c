/* Times the instance-norm ops at the official network's full-resolution
 * shape (48 channels, 128^3 voxels) against this machine's memory speed:
 * each op's time next to the time its compulsory memory traffic takes at
 * the read and read+write bandwidths measured in the same run.
 *   build/bench/norm_bench [side] [channels] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ops.h"
#include "core/parallel.h"

static float *filled(int64_t n, float lo, float hi)
{
    float *p = malloc((size_t)n * sizeof *p);
    if (!p) abort();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        p[i] = lo + (hi - lo) * (float)((i * 2654435761u) % 1000) / 1000.0f;
    return p;
}

static double median3(double t[3])
{
    double a = t[0], b = t[1], c = t[2];
    return a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
}

/* Read bandwidth (sum of src) and in-place read+write bandwidth (src *= 1),
 * bytes per second, median of 3. */
static void probe(float *src, int64_t n, double *read_bw, double *rw_bw)
{
    double tr[3], tw[3];
    for (int r = 0; r < 3; r++) {
        double t0 = sm_now_seconds();
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp parallel for schedule(static) reduction(+ : s0, s1, s2, s3)
        for (int64_t i = 0; i < n; i += 4) {
            s0 += src[i];
            s1 += src[i + 1];
            s2 += src[i + 2];
            s3 += src[i + 3];
        }
        double t1 = sm_now_seconds();
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; i++) src[i] = src[i] * 1.0f + (s0 + s1 + s2 + s3) * 0.0f;
        tw[r] = sm_now_seconds() - t1;
        tr[r] = t1 - t0;
    }
    *read_bw = (double)n * 4 / median3(tr);
    *rw_bw = 2.0 * (double)n * 4 / median3(tw);
}

int main(int argc, char **argv)
{
    const int side = argc > 1 ? atoi(argv[1]) : 128, c = argc > 2 ? atoi(argv[2]) : 48;
    const int64_t n = (int64_t)side * side * side, len = n * c;
    const double mb = (double)len * 4;
    float *a = filled(len, -2, 3), *b = filled(len, -1, 1), *d = filled(len, 0, 0);
    double rbw, wbw;
    probe(d, len, &rbw, &wbw);
    printf("norm %d^3 x %d channels, %d threads: read %.1f GB/s, read+write in place %.1f GB/s\n",
           side, c, sm_num_threads(), rbw / 1e9, wbw / 1e9);
    printf("%-28s %8s %8s\n", "op (median of 3)", "seconds", "traffic");
    struct {
        const char *name;
        int which;
        double floor_s; /* compulsory traffic at the probe's bandwidths */
    } ops[] = {
        {"IN+LReLU, to another buffer", 0, mb / rbw + 2 * mb / wbw * 1.5},
        {"IN+LReLU, in place", 1, mb / rbw + 2 * mb / wbw},
        {"IN(a)+IN(b)+LReLU, into b", 2, 2 * mb / rbw + 3 * mb / wbw},
        {"IN(a)+b+LReLU, into b", 3, mb / rbw + 3 * mb / wbw},
    };
    const sm_kernels *k = sm_kernels_get();
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++) {
        double t[3];
        for (int r = 0; r < 3; r++) {
            memcpy(d, a, (size_t)mb);
            double t0 = sm_now_seconds();
            sm_status st = SEGMAMBA_OK;
            switch (ops[o].which) {
            case 0: st = sm_instance_norm(k, a, c, d, c, n, c, SM_ACT_LRELU); break;
            case 1: st = sm_instance_norm(k, d, c, d, c, n, c, SM_ACT_LRELU); break;
            case 2: st = sm_instance_norm_add(k, a, c, d, c, 1, d, c, n, c, SM_ACT_LRELU); break;
            case 3: st = sm_instance_norm_add(k, a, c, d, c, 0, d, c, n, c, SM_ACT_LRELU); break;
            }
            t[r] = sm_now_seconds() - t0;
            if (st != SEGMAMBA_OK) return 1;
        }
        printf("%-28s %8.4f %8.4f\n", ops[o].name, median3(t), ops[o].floor_s);
    }
    (void)b;
    return 0;
}
