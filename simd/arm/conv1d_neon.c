/* NEON (AArch64) Mamba conv1d + SiLU: 4 channels per register (see conv1d_template.h). */
#include "vec_neon.h"

#define CONV1D_FN sm_conv1d_silu_neon

#include "../conv1d_template.h"
