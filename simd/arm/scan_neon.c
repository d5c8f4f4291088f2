/* NEON (AArch64) selective scan: 4 channels per register (see scan_template.h). */
#include "vec_neon.h"

#define SCAN_FN sm_scan_neon
#define EXP_FN sm_exp_neon
#define GELU_FN sm_gelu_neon
#define SILU_FN sm_silu_neon
#define CONV1D_FN sm_conv1d_silu_neon

#include "../scan_template.h"
