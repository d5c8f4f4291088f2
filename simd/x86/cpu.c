/* x86-64 feature detection: an ISA counts only when the CPU has it (CPUID)
 * and the OS saves its registers across context switches (XGETBV). */
#include <cpuid.h>
#include <stdint.h>

#include "../dispatch.h"

static uint64_t xcr0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

sm_isa sm_x86_best_isa(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return SM_ISA_SCALAR;
    const int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
    if (!osxsave || !avx || !fma) return SM_ISA_SCALAR;
    const uint64_t xcr = xcr0();
    if ((xcr & 0x6) != 0x6) return SM_ISA_SCALAR; /* SSE and AVX state */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return SM_ISA_SCALAR;
    /* The AVX-512 kernels use F and DQ (VREDUCEPS); every AVX-512 CPU but
     * Xeon Phi has both. */
    const int avx2 = (b >> 5) & 1, avx512 = (b >> 16) & 1 && (b >> 17) & 1;
    if (!avx2) return SM_ISA_SCALAR;
    /* opmask, upper halves of ZMM0-15, ZMM16-31 */
    if (avx512 && (xcr & 0xe0) == 0xe0) return SM_ISA_AVX512;
    return SM_ISA_AVX2;
}
