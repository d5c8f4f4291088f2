/* Peak FP32 FMA throughput probe, written once over the vector type of
 * the including ISA file: independent FMA chains, enough of them to cover
 * the FMA latency on every port, on values that stay finite. Returns the
 * flops executed (2 per lane per FMA); *sink receives a value that depends
 * on every FMA so that none can be optimised away. */
#include <stdint.h>

#include "fma_probe.h"

#define PROBE_CHAINS 12

double PROBE_FN(int64_t iters, float *sink)
{
    vf acc[PROBE_CHAINS];
    for (int k = 0; k < PROBE_CHAINS; k++) acc[k] = V_SET1(0.001f * (float)k);
    const vf m = V_SET1(0.999999f), a = V_SET1(1e-6f);
    for (int64_t i = 0; i < iters; i++)
        for (int k = 0; k < PROBE_CHAINS; k++) acc[k] = V_FMA(acc[k], m, a);
    float out[VW], sum = 0.0f;
    for (int k = 0; k < PROBE_CHAINS; k++) {
        V_STORE(out, acc[k]);
        for (int j = 0; j < VW; j++) sum += out[j];
    }
    *sink = sum; /* keeps the loop alive; the value does not matter */
    return 2.0 * VW * PROBE_CHAINS * (double)iters;
}
