/* NEON (AArch64) activation kernels: 4 values per register (see activation_template.h). */
#include "vec_neon.h"

#define EXP_FN sm_exp_neon
#define GELU_FN sm_gelu_neon
#define SILU_FN sm_silu_neon

#include "../activation_template.h"
