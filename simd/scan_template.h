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
 * Required before inclusion:
 *   VW                         lanes per vector
 *   vf                         the vector type
 *   V_LOAD(p), V_STORE(p, v), V_SET1(x), V_ADD, V_SUB, V_MUL, V_DIV, V_MAX, V_MIN,
 *   V_FMA(a, b, c) = a*b + c, V_FNMA(a, b, c) = c - a*b,
 *   V_LT_SELECT(a, b, x, y) = (a < b) ? x : y   (per lane),
 *   V_ROUND(v) (to nearest), V_POW2I(p, n) = p * 2^n for integral-valued n,
 *   V_ABS(v), V_ENTER() / V_EXIT() around a kernel's body (FP mode)
 * Optional: V_FRAC_FLOOR(v) = v - floor(v) (0 for infinite v) with
 *   V_POW2_FLOOR(p, x) = p * 2^floor(x), for a shorter v_exp2_neg
 *   SCAN_FN, EXP_FN, GELU_FN, SILU_FN, CONV1D_FN   the kernels' names
 */
#include <stdint.h>

#include "exp_constants.h"
#include "scan.h"

#if defined(__GNUC__)
#define SM_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define SM_ALWAYS_INLINE inline
#endif

#ifndef SM_SCAN_MAX_STATE
#define SM_SCAN_MAX_STATE 64
#endif
/* Positions ahead whose rows are prefetched. */
#define SM_SCAN_PREFETCH 8
/* Tokens per block of the two-pass scan (scan_group). */
#ifndef SM_SCAN_TB
#define SM_SCAN_TB 32
#endif

/* exp(x): x = n ln2 + r with |r| <= ln2/2, exp(r) by its degree-6 Taylor
 * polynomial, scaled by 2^n. Error bound: truncation |r|^7/7! <= 1.2e-7
 * relative, plus about one ulp of rounding in the Horner steps and the
 * final product: <= 2.5e-7 relative (~2 ulp) for x in [-87, 88];
 * tests/test_scan.c measures 2.2e-7. Below SM_EXP_MIN the result is exactly
 * 0; above SM_EXP_MAX it saturates at exp(SM_EXP_MAX). */
static inline vf v_exp(vf x)
{
    vf xc = V_MIN(V_MAX(x, V_SET1(SM_EXP_MIN)), V_SET1(SM_EXP_MAX));
    vf n = V_ROUND(V_MUL(xc, V_SET1(SM_LOG2E)));
    vf r = V_FNMA(n, V_SET1(SM_LN2_HI), xc);
    r = V_FNMA(n, V_SET1(SM_LN2_LO), r);
    vf p = V_SET1(SM_EXP_C6);
    p = V_FMA(p, r, V_SET1(SM_EXP_C5));
    p = V_FMA(p, r, V_SET1(SM_EXP_C4));
    p = V_FMA(p, r, V_SET1(SM_EXP_C3));
    p = V_FMA(p, r, V_SET1(SM_EXP_C2));
    p = V_FMA(p, r, V_SET1(1.0f));
    p = V_FMA(p, r, V_SET1(1.0f));
    return V_LT_SELECT(x, V_SET1(SM_EXP_MIN), V_SET1(0.0f), V_POW2I(p, n));
}

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

/* softplus(v) = max(v, 0) + log1p(exp(-|v|)); log1p(w) for w in (0, 1] as
 * 2 atanh(s), s = w / (2 + w) <= 1/3, by its odd series to s^13 (truncation
 * below 2e-8 relative). Above 20 this returns v to float precision, as
 * PyTorch's threshold does. */
static inline vf v_softplus(vf v)
{
    vf w = v_exp(V_SUB(V_SET1(0.0f), V_ABS(v)));
    vf s = V_DIV(w, V_ADD(V_SET1(2.0f), w));
    vf s2 = V_MUL(s, s);
    vf q = V_SET1(1.0f / 13.0f);
    q = V_FMA(q, s2, V_SET1(1.0f / 11.0f));
    q = V_FMA(q, s2, V_SET1(1.0f / 9.0f));
    q = V_FMA(q, s2, V_SET1(1.0f / 7.0f));
    q = V_FMA(q, s2, V_SET1(1.0f / 5.0f));
    q = V_FMA(q, s2, V_SET1(1.0f / 3.0f));
    q = V_FMA(q, s2, V_SET1(1.0f));
    return V_ADD(V_MAX(v, V_SET1(0.0f)), V_MUL(V_ADD(s, s), q));
}

/* z * sigmoid(z) */
static inline vf v_silu(vf z)
{
    return V_DIV(z, V_ADD(V_SET1(1.0f), v_exp(V_SUB(V_SET1(0.0f), z))));
}

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
    float dt_b[SM_SCAN_TB * VW], du_b[SM_SCAN_TB * VW], yd_b[SM_SCAN_TB * VW],
        g_b[SM_SCAN_TB * VW];
    int64_t t_b[SM_SCAN_TB];
    for (int64_t q0 = 0; q0 < a->L; q0 += SM_SCAN_TB) {
        const int T = a->L - q0 < SM_SCAN_TB ? (int)(a->L - q0) : SM_SCAN_TB;
        for (int i = 0; i < T; i++) {
            const int64_t q = q0 + i;
            t_b[i] = sm_scan_token(a->order, a->L, a->nslices, q);
            /* The slice order jumps L/S tokens at every step, too far for
             * the hardware prefetcher: ask for a later token's rows now. */
            if (q + SM_SCAN_PREFETCH < a->L) {
                const int64_t tp = sm_scan_token(a->order, a->L, a->nslices, q + SM_SCAN_PREFETCH);
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

/* GELU(x) = x/2 (1 + erf(x / sqrt 2)) with erf from Abramowitz & Stegun
 * 7.1.26: erf(a) = 1 - t (a1 + t (a2 + ... a5 t)) exp(-a^2), t = 1/(1 + p a),
 * for a >= 0 (odd symmetry otherwise). GELU = x (1 - tail/2) with
 * tail = 1 - erf(|x|/sqrt 2) <= 1; an error d in tail/2 is an error |x| d:
 * d <= 0.75e-7 (the formula's 1.5e-7 on erf) + about 4 ulp of float
 * evaluation of tail (exp, division, Horner) / 2 <= 2.4e-7 in all, so
 * |error| <= 3e-7 |x| plus the final rounding (tests/test_simd.c). */
static inline vf v_gelu(vf x)
{
    const vf a = V_MUL(V_ABS(x), V_SET1(0.70710678118654752f));
    const vf t = V_DIV(V_SET1(1.0f), V_FMA(a, V_SET1(0.3275911f), V_SET1(1.0f)));
    vf q = V_SET1(1.061405429f);
    q = V_FMA(q, t, V_SET1(-1.453152027f));
    q = V_FMA(q, t, V_SET1(1.421413741f));
    q = V_FMA(q, t, V_SET1(-0.284496736f));
    q = V_FMA(q, t, V_SET1(0.254829592f));
    const vf tail = V_MUL(V_MUL(q, t), v_exp(V_SUB(V_SET1(0.0f), V_MUL(a, a)))); /* 1 - erf(a) */
    /* x >= 0: x (1 - tail/2); x < 0: x tail/2 */
    const vf half_tail = V_MUL(tail, V_SET1(0.5f));
    return V_MUL(x, V_LT_SELECT(x, V_SET1(0.0f), half_tail, V_SUB(V_SET1(1.0f), half_tail)));
}

/* y[i] = f(x[i]), the tail through one padded vector. */
static SM_ALWAYS_INLINE void map(const float *x, float *y, int64_t n, vf (*f)(vf))
{
    int64_t i = 0;
    for (; i + VW <= n; i += VW) V_STORE(y + i, f(V_LOAD(x + i)));
    if (i < n) {
        float in[VW] = {0}, out[VW];
        for (int64_t k = i; k < n; k++) in[k - i] = x[k];
        V_STORE(out, f(V_LOAD(in)));
        for (int64_t k = i; k < n; k++) y[k] = out[k - i];
    }
}

/* Taps the vector conv1d keeps the tokens of; more go to the scalar kernel. */
#define SM_CONV1D_MAX_K 16

/* The conv1d + SiLU of scan.h. Channels in vectors, the taps summed in the
 * scalar kernel's order with separate multiplies and adds (so the sums are
 * the scalar kernel's, bit for bit), then this level's SiLU; channels past
 * the last full vector through the scalar SiLU. Going from token t to t + 1
 * moves every tap's token by one too, in each order, while the window lies
 * inside one slice and has no tap before the start; the window's tokens are
 * recomputed only where that fails. */
void CONV1D_FN(const sm_conv1d_args *a, int64_t t0, int64_t t1)
{
    const int c = a->c, K = a->K, cv = c / VW * VW;
    if (K > SM_CONV1D_MAX_K || t1 <= t0) {
        sm_conv1d_silu_scalar(a, t0, t1);
        return;
    }
    const int slice = a->order == SM_ORDER_SLICE;
    const int64_t m = slice ? a->L / a->nslices : a->L; /* tokens per slice */
    int64_t s = t0 / m, j = t0 % m;                     /* t = s*m + j */
    int64_t tok[SM_CONV1D_MAX_K];                       /* a tap's token, -1 before the start */
    int k0 = 0;                                         /* the first tap in the sequence */
    for (int64_t t = t0; t < t1; t++) {
        const int64_t q = slice ? j * a->nslices + s
                          : a->order == SM_ORDER_BACKWARD ? a->L - 1 - t : t;
        if (t == t0 || j == 0 || k0 > 0 || q < K - 1) {
            k0 = q < K - 1 ? (int)(K - 1 - q) : 0;
            for (int k = 0; k < K; k++)
                tok[k] = k < k0 ? -1 : sm_scan_token(a->order, a->L, a->nslices, q - (K - 1) + k);
        } else {
            for (int k = 0; k < K; k++) tok[k]++;
        }
        float *u = a->u + t * a->ld_u;
        for (int i = 0; i < cv; i += VW) {
            vf acc = V_LOAD(a->b + i);
            for (int k = k0; k < K; k++)
                acc = V_ADD(acc, V_MUL(V_LOAD(a->w + (int64_t)k * c + i),
                                       V_LOAD(a->x + tok[k] * a->ld_x + i)));
            V_STORE(u + i, v_silu(acc));
        }
        for (int i = cv; i < c; i++) {
            float acc = a->b[i];
            for (int k = k0; k < K; k++) acc += a->w[(int64_t)k * c + i] * a->x[tok[k] * a->ld_x + i];
            sm_silu_scalar(&acc, u + i, 1);
        }
        if (++j == m) {
            j = 0;
            s++;
        }
    }
}

void EXP_FN(const float *x, float *y, int64_t n) { map(x, y, n, v_exp); }
void SILU_FN(const float *x, float *y, int64_t n) { map(x, y, n, v_silu); }
void GELU_FN(const float *x, float *y, int64_t n) { map(x, y, n, v_gelu); }

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
