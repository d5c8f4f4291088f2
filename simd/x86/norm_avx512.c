/* AVX-512F instance-norm kernels (see norm_template.h). */
#include "vec_avx512.h"

#define NORM_SUMS_FN sm_norm_sums_avx512
#define NORM_APPLY_FN sm_norm_apply_avx512

#include "../norm_template.h"
