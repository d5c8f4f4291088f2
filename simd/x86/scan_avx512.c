/* AVX-512F selective scan: 16 channels per register (see scan_template.h). */
#include "vec_avx512.h"

#define SCAN_FN sm_scan_avx512
#define EXP_FN sm_exp_avx512
#define GELU_FN sm_gelu_avx512
#define SILU_FN sm_silu_avx512
#define CONV1D_FN sm_conv1d_silu_avx512

#include "../scan_template.h"
