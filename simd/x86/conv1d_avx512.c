/* AVX-512F Mamba conv1d + SiLU: 16 channels per register (see conv1d_template.h). */
#include "vec_avx512.h"

#define CONV1D_FN sm_conv1d_silu_avx512

#include "../conv1d_template.h"
