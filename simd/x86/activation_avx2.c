/* AVX2 + FMA activation kernels: 8 values per register (see activation_template.h). */
#include "vec_avx2.h"

#define EXP_FN sm_exp_avx2
#define GELU_FN sm_gelu_avx2
#define SILU_FN sm_silu_avx2

#include "../activation_template.h"
