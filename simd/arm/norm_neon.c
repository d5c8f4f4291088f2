/* NEON (AArch64) instance-norm kernels (see norm_template.h). */
#include "vec_neon.h"

#define NORM_SUMS_FN sm_norm_sums_neon
#define NORM_APPLY_FN sm_norm_apply_neon

#include "../norm_template.h"
