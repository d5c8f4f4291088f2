/* NEON Winograd kernels (see winograd_template.h). */
#include "vec_neon.h"

#define WINO_INPUT_FN sm_wino_input_neon
#define WINO_OUTPUT_FN sm_wino_output_neon
#define WINO_GEMM_FN sm_wino_gemm_neon
/* 6 x 4 vectors: 24 accumulators in the 32 vector registers. */
#define WINO_GEMM_R 6
#define WINO_GEMM_K 4

#include "../winograd_template.h"
