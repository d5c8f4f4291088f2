/* cuda_runner.h in an engine built without the CUDA backend. */
#include <stdio.h>

#include "cuda_optional/cuda_runner.h"

int sm_cuda_build_kind(void) { return 0; }

int sm_cuda_device_info(char *info, size_t cap)
{
    if (info && cap) snprintf(info, cap, "this engine was built without the CUDA backend");
    return 0;
}

sm_status sm_cuda_runner(const sm_runner **out)
{
    *out = NULL;
    return sm_fail(SEGMAMBA_E_BACKEND,
                   "the CUDA backend is not built into this engine "
                   "(build with meson -Dcuda=enabled, which needs nvcc and cuBLAS)");
}
