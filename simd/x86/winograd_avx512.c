/* AVX-512 Winograd kernels (see winograd_template.h). */
#include "vec_avx512.h"

#define WINO_INPUT_FN sm_wino_input_avx512
#define WINO_OUTPUT_FN sm_wino_output_avx512
#define WINO_GEMM_FN sm_wino_gemm_avx512
/* 8 x 3 vectors: 24 accumulators in the 32 vector registers. */
#define WINO_GEMM_R 8
#define WINO_GEMM_K 3

#include "../winograd_template.h"
