/* AVX2 Winograd kernels (see winograd_template.h). */
#include "vec_avx2.h"

#define WINO_INPUT_FN sm_wino_input_avx2
#define WINO_OUTPUT_FN sm_wino_output_avx2
#define WINO_GEMM_FN sm_wino_gemm_avx2
/* 6 x 2 vectors: 12 accumulators in the 16 vector registers. */
#define WINO_GEMM_R 6
#define WINO_GEMM_K 2

#include "../winograd_template.h"
