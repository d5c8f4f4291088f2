/* AVX-512F selective scan: 16 channels per register (see scan_template.h). */
#include "vec_avx512.h"

#define SCAN_FN sm_scan_avx512

#include "../scan_template.h"
