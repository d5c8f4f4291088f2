/* Times the selective scan kernels at every level this CPU supports on the
 * shape of the official network's first stage at 128^3 (L = 64^3 tokens,
 * d_inner = 96, N = 16, dt_proj of rank 3 computed in the scan, as the
 * engine runs it), in each of the three orders, channels split over
 * the OpenMP threads as the engine does; then the causal conv1d + SiLU
 * that makes the scan's u (4 taps, positions split over the threads).
 *   build/bench/scan_bench [L] [d_inner] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/parallel.h"
#include "simd/dispatch.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *filled(int64_t n, float lo, float hi)
{
    float *p = malloc((size_t)n * sizeof *p);
    if (!p) abort();
    for (int64_t i = 0; i < n; i++)
        p[i] = lo + (hi - lo) * (float)((i * 2654435761u) % 1000) / 1000.0f;
    return p;
}

int main(int argc, char **argv)
{
    const int64_t L = argc > 1 ? atoll(argv[1]) : 262144;
    const int di = argc > 2 ? atoi(argv[2]) : 96, N = 16, R = (di / 2 + 15) / 16, np = R + 2 * N;
    float *u = filled(L * di, -1, 1), *dl = filled(L * di, -4, 1), *z = filled(L * di, -3, 3);
    float *p = filled(L * np, -1, 1), *y = filled(L * di, 0, 0);
    float *A = filled(di * N, -8, -0.5f), *bias = filled(di, -1, 0), *D = filled(di, -1, 1);
    float *state = malloc((size_t)di * N * sizeof *state);
    float *wdt = filled(di * R, -1, 0.5f);
    const int nt = sm_num_threads();
    static const char *const names[SM_ORDER_COUNT] = {"forward", "backward", "slice", "HDW", "WHD"};
    /* 64 slices; the volume orders on a 64 x 64 x L/4096 volume (when L allows) */
    const int n_orders = L % 4096 == 0 ? SM_ORDER_COUNT : SM_ORDER_HDW;
    sm_seq seqs[SM_ORDER_COUNT];
    for (int o = 0; o < SM_ORDER_COUNT; o++)
        seqs[o] = (sm_seq){.order = (sm_order)o, .L = L, .S = 64, .d = 64, .h = 64, .w = L / 4096};
    printf("scan L=%lld d_inner=%d N=%d threads=%d (seconds per direction, median of 3)\n",
           (long long)L, di, N, nt);
    for (int isa = SM_ISA_SCALAR; isa <= SM_ISA_NEON; isa++) {
        if (sm_kernels_select((sm_isa)isa) != (sm_isa)isa) continue;
        const sm_kernels *k = sm_kernels_get();
        for (int o = 0; o < n_orders; o++) {
            /* as the engine runs it: dt_proj (rank R) computed in the scan */
            sm_scan_args a = {.seq = seqs[o],
                              .n_state = N,
                              .u = u,
                              .ld_u = di,
                              .delta = NULL,
                              .ld_delta = di,
                              .dt_low = p,
                              .ld_dt_low = np,
                              .dt_proj = wdt,
                              .dt_rank = R,
                              .delta_bias = bias,
                              .A = A,
                              .B = p + R,
                              .C = p + R + N,
                              .ld_bc = np,
                              .D = D,
                              .z = z,
                              .ld_z = di,
                              .y = y,
                              .ld_y = di};
            double t[3];
            for (int r = 0; r < 3; r++) {
                double t0 = now();
#pragma omp parallel for schedule(static) num_threads(nt)
                for (int b = 0; b < nt; b++) {
                    int c0 = di * b / nt, c1 = di * (b + 1) / nt;
                    k->scan(&a, c0, c1, state + c0 * N);
                }
                t[r] = now() - t0;
            }
            double m = t[0] < t[1] ? (t[1] < t[2] ? t[1] : (t[0] < t[2] ? t[2] : t[0]))
                                   : (t[0] < t[2] ? t[0] : (t[1] < t[2] ? t[2] : t[1]));
            printf("%-7s %-8s %.3f s  (%.2f ns per token-channel)\n", sm_isa_name(k->isa), names[o],
                   m, 1e9 * m / (double)(L * di) * nt);
        }
    }
    float *w = filled(4 * di, -0.5f, 0.5f);
    for (int isa = SM_ISA_SCALAR; isa <= SM_ISA_NEON; isa++) {
        if (sm_kernels_select((sm_isa)isa) != (sm_isa)isa) continue;
        const sm_kernels *k = sm_kernels_get();
        for (int o = 0; o < n_orders; o++) {
            /* x dense here (in the engine it is half of in_proj's output rows) */
            const sm_conv1d_args a = {.seq = seqs[o],
                                      .c = di,
                                      .K = 4,
                                      .x = z,
                                      .ld_x = di,
                                      .w = w,
                                      .b = bias,
                                      .u = y,
                                      .ld_u = di};
            double t[3];
            for (int r = 0; r < 3; r++) {
                double t0 = now();
#pragma omp parallel for schedule(static) num_threads(nt)
                for (int64_t b = 0; b < (L + 255) / 256; b++)
                    k->conv1d_silu(&a, b * 256, (b + 1) * 256 < L ? (b + 1) * 256 : L);
                t[r] = now() - t0;
            }
            double m = t[0] < t[1] ? (t[1] < t[2] ? t[1] : (t[0] < t[2] ? t[2] : t[0]))
                                   : (t[0] < t[2] ? t[0] : (t[1] < t[2] ? t[2] : t[1]));
            printf("conv1d %-7s %-8s %.4f s\n", sm_isa_name(k->isa), names[o], m);
        }
    }
    free(w), free(wdt);
    free(u), free(dl), free(z), free(p), free(y), free(A), free(bias), free(D), free(state);
    return 0;
}
