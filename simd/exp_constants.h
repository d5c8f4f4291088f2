/* Constants of the vectorised exp shared by every ISA's kernels. */
#ifndef SM_SIMD_EXP_CONSTANTS_H
#define SM_SIMD_EXP_CONSTANTS_H

#define SM_EXP_MIN (-87.33654475f) /* ln(FLT_MIN): below, the result is 0 */
#define SM_EXP_MAX 88.0f           /* exp(88) * exp(ln2/2) stays below FLT_MAX */
#define SM_LOG2E 1.44269504089f
/* ln 2 split so that n * SM_LN2_HI is exact for the n that occur */
#define SM_LN2_HI 0.693359375f
#define SM_LN2_LO (-2.12194440e-4f)
#define SM_EXP_C2 (1.0f / 2.0f)
#define SM_EXP_C3 (1.0f / 6.0f)
#define SM_EXP_C4 (1.0f / 24.0f)
#define SM_EXP_C5 (1.0f / 120.0f)
#define SM_EXP_C6 (1.0f / 720.0f)
/* 2^f on [-1/2, 1/2]: degree-5 polynomial fitted for minimal relative
 * error (iteratively reweighted least squares, converging to the minimax
 * fit) with the constant term held at exactly 1: a decay factor near 1 must
 * not come out above 1, or a state multiplied by it over thousands of
 * tokens drifts (a free fit gave p(0) = 1 + 1.2e-7 and 2.4e-5 relative
 * drift over 4096 tokens). Coefficients rounded to float. */
#define SM_EXP2_P0 1.0f
#define SM_EXP2_P1 0.6931470036506653f
#define SM_EXP2_P2 0.24022242426872253f
#define SM_EXP2_P3 0.05550733953714371f
#define SM_EXP2_P4 0.009671511128544807f
#define SM_EXP2_P5 0.0013264708686619997f
/* 2^f on [0, 1) for kernels that split x = floor(x) + f in one instruction
 * (AVX-512's VREDUCEPS): degree 5, p(f) = 1 + f + f (f - 1) q(f) with q of
 * degree 3 fitted the same way, so that p(0) = 1 and p(1) = 2 exactly (in
 * float Horner evaluation too), and p stays below 2 on the floats just
 * under 1: a decay exp(x) for tiny x < 0 (f = 1 + x) never comes out above
 * 1. Relative error 9.2e-8 in exact arithmetic, 1.6e-7 evaluated in float
 * (checked on 2e6 points of [0, 1]). */
#define SM_EXP2F_P1 0.6931517124176025f
#define SM_EXP2F_P2 0.240159273147583f
#define SM_EXP2F_P3 0.05581867694854736f
#define SM_EXP2F_P4 0.008990994654595852f
#define SM_EXP2F_P5 0.001879318617284298f

#endif
