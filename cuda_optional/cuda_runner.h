/* The CUDA backend as the public API (src/api/) sees it: the runner of
 * src/engine/runner.h, or why there is none. Every build has these: with
 * -Dcuda or -Demulate_cuda from cuda_runner.c and cuda_context.c, else from
 * cuda_none.c, which says the engine was built without CUDA. */
#ifndef SM_CUDA_RUNNER_H
#define SM_CUDA_RUNNER_H

#include <stddef.h>

#include "core/error.h"
#include "engine/runner.h"

/* 0: built without the CUDA backend; 1: built; 2: emulated on the CPU (tests). */
int sm_cuda_build_kind(void);

/* 1 when device 0 can be used, with "NAME, compute capability X.Y, N GiB" in
 * info (if given); else 0, with why in info. */
int sm_cuda_device_info(char *info, size_t cap);

/* The CUDA runner when device 0 can be used; else SEGMAMBA_E_BACKEND and why
 * (no device, or an engine built without CUDA). */
sm_status sm_cuda_runner(const sm_runner **out);

#endif
