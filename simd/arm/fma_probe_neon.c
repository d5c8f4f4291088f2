/* FP32 FMA peak probe at the NEON level (see fma_probe_template.h). */
#include "vec_neon.h"
#define PROBE_FN sm_fma_probe_neon
#include "../fma_probe_template.h"
