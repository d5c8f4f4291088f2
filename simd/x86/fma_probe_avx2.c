/* FP32 FMA peak probe at the avx2 level (see fma_probe_template.h). */
#include "vec_avx2.h"
#define PROBE_FN sm_fma_probe_avx2
#include "../fma_probe_template.h"
