/* AVX2+FMA instance-norm kernels (see norm_template.h). */
#include "vec_avx2.h"

#define NORM_SUMS_FN sm_norm_sums_avx2
#define NORM_APPLY_FN sm_norm_apply_avx2

#include "../norm_template.h"
