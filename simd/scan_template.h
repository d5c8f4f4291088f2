/* The vectorised selective scan, written once over a small set of vector
 * operations that each ISA file defines before including this header
 * (simd/x86/scan_avx512.c, simd/x86/scan_avx2.c, simd/arm/scan_neon.c).
 *
 * Layout: one vector holds VW consecutive channels; the N states of a block
 * of VW channels live in N vectors (state n of every channel of the block),
 * so a token costs N vector exps and 2N FMAs with no horizontal reduction:
 *   h[n] = exp(dt * A[:, n]) * h[n] + (dt * u) * B[t, n]
 *   y   += C[t, n] * h[n]
 * softplus(delta + bias), the D skip and the SiLU(z) gate (when there is
 * one) are fused. Channels left over after the last full block go to the
 * scalar kernel.
 *
 * Required before inclusion: what activation_vec.h needs, and
 *   V_ENTER() / V_EXIT() around a kernel's body (FP mode)
 * Optional: V_FRAC_FLOOR(v) = v - floor(v) (0 for infinite v) with
 *   V_POW2_FLOOR(p, x) = p * 2^floor(x), for a shorter v_exp2_neg
 *   SCAN_FN   the kernel's name
 */
#include <stdint.h>

#include "activation_vec.h"
#include "exp_constants.h"
#include "scan.h"

#ifndef SM_SCAN_MAX_STATE
#define SM_SCAN_MAX_STATE 64
#endif
/* Positions ahead whose rows are prefetched. */
#define SM_SCAN_PREFETCH 8
/* Tokens per block of the two-pass scan (scan_group). */
#ifndef SM_SCAN_TB
#define SM_SCAN_TB 32
#endif

/* 2^x for x <= 0, the scan's state decays: exp(dt A) = 2^(dt A log2 e)
 * with A log2 e precomputed per block, which saves v_exp's multiply and
 * two-step range reduction. x = n + f, |f| <= 1/2, 2^f by a degree-5
 * near-minimax polynomial with p(0) = 1 (relative error 9.2e-8 in exact
 * arithmetic, 1.8e-7 evaluated in float), scaled by 2^n. Below -126 the result is
 * 2^-126 p(f), under 1.7e-38 rather than 0: a state decayed that far
 * contributes nothing (and x86 kernels flush it, see V_ENTER). */
#ifdef V_FRAC_FLOOR
static inline vf v_exp2_neg(vf x)
{
    /* f = x - floor(x) in [0, 1) and the scaling by 2^floor(x) each take
     * one instruction on x itself; x = -inf gives f = 0 and 0. Two
     * instructions fewer per state than below, none for the clamp. */
    const vf f = V_FRAC_FLOOR(x);
    vf p = V_SET1(SM_EXP2F_P5);
    p = V_FMA(p, f, V_SET1(SM_EXP2F_P4));
    p = V_FMA(p, f, V_SET1(SM_EXP2F_P3));
    p = V_FMA(p, f, V_SET1(SM_EXP2F_P2));
    p = V_FMA(p, f, V_SET1(SM_EXP2F_P1));
    p = V_FMA(p, f, V_SET1(1.0f));
    return V_POW2_FLOOR(p, x);
}
#else
static inline vf v_exp2_neg(vf x)
{
    const vf xc = V_MAX(x, V_SET1(-126.0f));
    const vf n = V_ROUND(xc);
    const vf f = V_SUB(xc, n);
    vf p = V_SET1(SM_EXP2_P5);
    p = V_FMA(p, f, V_SET1(SM_EXP2_P4));
    p = V_FMA(p, f, V_SET1(SM_EXP2_P3));
    p = V_FMA(p, f, V_SET1(SM_EXP2_P2));
    p = V_FMA(p, f, V_SET1(SM_EXP2_P1));
    p = V_FMA(p, f, V_SET1(SM_EXP2_P0));
    return V_POW2I(p, n);
}
#endif

/* Fully unrolled, the N = 16 state vectors can live in registers. */
#if defined(__clang__)
#define SM_UNROLL_16 _Pragma("clang loop unroll_count(16)")
#elif defined(__GNUC__)
#define SM_UNROLL_16 _Pragma("GCC unroll 16")
#else
#define SM_UNROLL_16
#endif

/* Blocks of VW channels that go through the tokens together. */
#ifndef SM_SCAN_GROUP
#define SM_SCAN_GROUP 4
#endif

/* nb <= SM_SCAN_GROUP blocks of VW channels starting at c. Inlined with N a
 * constant for the usual N = 16, so that a block's states stay in registers
 * while it runs through a block of tokens.
 *
 * Tokens go in blocks of SM_SCAN_TB, and every channel block of the group
 * runs through a token block before the next one starts (its states kept
 * in hs meanwhile): a row's lines for this group's channels are then all
 * used while in cache, and B and C are read once per group rather than once
 * per channel block. One channel block through all the tokens at a time
 * was 1.2-1.4x slower at full size (bench/scan_bench), most in the slice
 * order, whose every step jumps L/S rows.
 *
 * For each channel block, pass 1 computes what does not depend on the
 * state (softplus, dt u, the D skip, the gate) for the whole token block:
 * independent work, bound by throughput. Pass 2 is the recurrence alone.
 * Fused into one loop, each token's long chain (softplus's exp and
 * division, then the decays, then the sum over states) filled the
 * out-of-order window: 1.4x slower in cache and 1.4x in the slice order at
 * full size. */
static SM_ALWAYS_INLINE void scan_group(const sm_scan_args *a, int c, int nb, const int N)
{
    /* A is stored (channel, state); a block needs it by state, and in base
     * 2: exp(dt A) = 2^(dt A log2 e). */
    float As[SM_SCAN_GROUP * SM_SCAN_MAX_STATE * VW], hs[SM_SCAN_GROUP * SM_SCAN_MAX_STATE * VW];
    for (int b = 0; b < nb; b++)
        for (int n = 0; n < N; n++)
            for (int k = 0; k < VW; k++) {
                As[(b * N + n) * VW + k] = a->A[(int64_t)(c + b * VW + k) * N + n] * SM_LOG2E;
                hs[(b * N + n) * VW + k] = 0.0f;
            }
    /* dt_proj by rank, when the kernel computes delta itself */
    const int fused = a->delta == NULL, R = fused ? a->dt_rank : 0;
    float Ws[SM_SCAN_GROUP * SM_SCAN_MAX_RANK * VW];
    for (int b = 0; b < nb; b++)
        for (int r = 0; r < R; r++)
            for (int k = 0; k < VW; k++)
                Ws[(b * R + r) * VW + k] = a->dt_proj[(int64_t)(c + b * VW + k) * R + r];
    float dt_b[SM_SCAN_TB * VW], du_b[SM_SCAN_TB * VW], yd_b[SM_SCAN_TB * VW], g_b[SM_SCAN_TB * VW];
    int64_t t_b[SM_SCAN_TB];
    for (int64_t q0 = 0; q0 < a->seq.L; q0 += SM_SCAN_TB) {
        const int T = a->seq.L - q0 < SM_SCAN_TB ? (int)(a->seq.L - q0) : SM_SCAN_TB;
        for (int i = 0; i < T; i++) {
            const int64_t q = q0 + i;
            t_b[i] = sm_scan_token(&a->seq, q);
            /* The slice order jumps L/S tokens at every step, too far for
             * the hardware prefetcher: ask for a later token's rows now. */
            if (q + SM_SCAN_PREFETCH < a->seq.L) {
                const int64_t tp = sm_scan_token(&a->seq, q + SM_SCAN_PREFETCH);
                for (int k = 0; k < nb * VW; k += 16) {
                    __builtin_prefetch(a->u + tp * a->ld_u + c + k);
                    if (a->delta) __builtin_prefetch(a->delta + tp * a->ld_delta + c + k);
                    if (a->z) __builtin_prefetch(a->z + tp * a->ld_z + c + k);
                    __builtin_prefetch(a->y + tp * a->ld_y + c + k, 1);
                }
                __builtin_prefetch(a->B + tp * a->ld_bc);
                __builtin_prefetch(a->B + tp * a->ld_bc + 16);
                __builtin_prefetch(a->C + tp * a->ld_bc + 16);
            }
        }
        for (int b = 0; b < nb; b++) {
            const int cb = c + b * VW;
            const vf bias = V_LOAD(a->delta_bias + cb), D = V_LOAD(a->D + cb);
            for (int i = 0; i < T; i++) {
                const int64_t t = t_b[i];
                const vf u = V_LOAD(a->u + t * a->ld_u + cb);
                vf d;
                if (!fused) {
                    d = V_LOAD(a->delta + t * a->ld_delta + cb);
                } else {
                    const float *lo = a->dt_low + t * a->ld_dt_low;
                    d = V_SET1(0.0f);
                    for (int r = 0; r < R; r++)
                        d = V_FMA(V_SET1(lo[r]), V_LOAD(Ws + (b * R + r) * VW), d);
                }
                const vf dt = v_softplus(V_ADD(d, bias));
                V_STORE(dt_b + i * VW, dt);
                V_STORE(du_b + i * VW, V_MUL(dt, u));
                V_STORE(yd_b + i * VW, V_MUL(D, u));
                V_STORE(g_b + i * VW,
                        a->z ? v_silu(V_LOAD(a->z + t * a->ld_z + cb)) : V_SET1(1.0f));
            }
            vf h[SM_SCAN_MAX_STATE], A[SM_SCAN_MAX_STATE];
            for (int n = 0; n < N; n++) {
                h[n] = V_LOAD(hs + (b * N + n) * VW);
                A[n] = V_LOAD(As + (b * N + n) * VW);
            }
            for (int i = 0; i < T; i++) {
                const int64_t t = t_b[i];
                const vf dt = V_LOAD(dt_b + i * VW), du = V_LOAD(du_b + i * VW);
                const float *B = a->B + t * a->ld_bc, *C = a->C + t * a->ld_bc;
                vf y = V_LOAD(yd_b + i * VW);
                SM_UNROLL_16
                for (int n = 0; n < N; n++) {
                    h[n] = V_FMA(v_exp2_neg(V_MUL(dt, A[n])), h[n], V_MUL(du, V_SET1(B[n])));
                    y = V_FMA(V_SET1(C[n]), h[n], y);
                }
                float *yp = a->y + t * a->ld_y + cb;
                V_STORE(yp, V_FMA(y, V_LOAD(g_b + i * VW), V_LOAD(yp)));
            }
            for (int n = 0; n < N; n++) V_STORE(hs + (b * N + n) * VW, h[n]);
        }
    }
}

void SCAN_FN(const sm_scan_args *a, int c0, int c1, float *state)
{
    V_ENTER();
    const int N = a->n_state;
    int c = c0;
    if (N <= SM_SCAN_MAX_STATE && (a->delta || a->dt_rank <= SM_SCAN_MAX_RANK)) {
        while (c + VW <= c1) {
            const int nb = (c1 - c) / VW < SM_SCAN_GROUP ? (c1 - c) / VW : SM_SCAN_GROUP;
            if (N == 16)
                scan_group(a, c, nb, 16);
            else
                scan_group(a, c, nb, N);
            c += nb * VW;
        }
    }
    if (c < c1) sm_scan_scalar(a, c, c1, state + (int64_t)(c - c0) * N);
    V_EXIT();
}
