/* NEON (AArch64) selective scan: 4 channels per register (see scan_template.h). */
#include "vec_neon.h"

#define SCAN_FN sm_scan_neon

#include "../scan_template.h"
