/* AVX2 + FMA Mamba conv1d + SiLU: 8 channels per register (see conv1d_template.h). */
#include "vec_avx2.h"

#define CONV1D_FN sm_conv1d_silu_avx2

#include "../conv1d_template.h"
