/* AVX2 + FMA selective scan: 8 channels per register (see scan_template.h). */
#include "vec_avx2.h"

#define SCAN_FN sm_scan_avx2

#include "../scan_template.h"
