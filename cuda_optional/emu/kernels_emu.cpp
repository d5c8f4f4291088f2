/* kernels.cu compiled as C++ for the CPU emulation (see cuda_emu.h). */
#include "../kernels.cu"
