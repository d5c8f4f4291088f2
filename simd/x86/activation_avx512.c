/* AVX-512F activation kernels: 16 values per register (see activation_template.h). */
#include "vec_avx512.h"

#define EXP_FN sm_exp_avx512
#define GELU_FN sm_gelu_avx512
#define SILU_FN sm_silu_avx512

#include "../activation_template.h"
