/* FP32 FMA peak probe at the avx512 level (see fma_probe_template.h). */
#include "vec_avx512.h"
#define PROBE_FN sm_fma_probe_avx512
#include "../fma_probe_template.h"
