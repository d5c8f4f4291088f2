/* AVX2 + FMA selective scan: 8 channels per register (see scan_template.h). */
#include "vec_avx2.h"

#define SCAN_FN sm_scan_avx2
#define EXP_FN sm_exp_avx2
#define GELU_FN sm_gelu_avx2
#define SILU_FN sm_silu_avx2
#define CONV1D_FN sm_conv1d_silu_avx2

#include "../scan_template.h"
