/* Compiles kernels.cu as plain C++ for the CPU emulation (-Dcuda_emulation):
 * a launch runs every thread of every block in turn, blocks shared among
 * OpenMP threads. That is exact for kernels.cu, whose threads never share
 * data (kernels.h). */
#ifndef SM_EMU_CUDA_EMU_H
#define SM_EMU_CUDA_EMU_H

#define __global__
#define __device__
#define __host__

struct sm_emu_dim3 {
    unsigned x, y, z;
};

inline thread_local sm_emu_dim3 blockIdx, threadIdx, blockDim;

template <class F> void sm_emu_launch(unsigned blocks, unsigned threads, const F &thread_body)
{
#pragma omp parallel for schedule(dynamic, 8)
    for (long b = 0; b < (long)blocks; b++) {
        blockIdx = {(unsigned)b, 0, 0};
        blockDim = {threads, 1, 1};
        for (unsigned t = 0; t < threads; t++) {
            threadIdx = {t, 0, 0};
            thread_body();
        }
    }
}

#endif
