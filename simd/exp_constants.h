/* Constants of the vectorised exp shared by every ISA's kernels. */
#ifndef SM_SIMD_EXP_CONSTANTS_H
#define SM_SIMD_EXP_CONSTANTS_H

#define SM_EXP_MIN (-87.33654475f) /* ln(FLT_MIN): below, the result is 0 */
#define SM_EXP_MAX 88.0f /* exp(88) * exp(ln2/2) stays below FLT_MAX */
#define SM_LOG2E 1.44269504089f
/* ln 2 split so that n * SM_LN2_HI is exact for the n that occur */
#define SM_LN2_HI 0.693359375f
#define SM_LN2_LO (-2.12194440e-4f)
#define SM_EXP_C2 (1.0f / 2.0f)
#define SM_EXP_C3 (1.0f / 6.0f)
#define SM_EXP_C4 (1.0f / 24.0f)
#define SM_EXP_C5 (1.0f / 120.0f)
#define SM_EXP_C6 (1.0f / 720.0f)
/* (ln 2)^k / k!: Taylor coefficients of 2^f */
#define SM_EXP2_C1 0.693147180559945f
#define SM_EXP2_C2 0.240226506959101f
#define SM_EXP2_C3 0.0555041086648216f
#define SM_EXP2_C4 0.00961812910762848f
#define SM_EXP2_C5 0.00133335581464284f
#define SM_EXP2_C6 0.000154035303933816f

#endif
