/* The FMA peak probe at the scalar level (see fma_probe.h). */
#include <math.h>

#include "fma_probe.h"

double sm_fma_probe_scalar(int64_t iters, float *sink)
{
    float acc[8];
    for (int k = 0; k < 8; k++) acc[k] = 0.001f * (float)k;
    for (int64_t i = 0; i < iters; i++)
        for (int k = 0; k < 8; k++) acc[k] = fmaf(acc[k], 0.999999f, 1e-6f);
    *sink = acc[0] + acc[1] + acc[2] + acc[3] + acc[4] + acc[5] + acc[6] + acc[7];
    return 16.0 * (double)iters;
}
