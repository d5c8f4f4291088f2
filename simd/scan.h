/* The selective scan of one Mamba direction over a block of channels.
 *
 * All per-token arrays are token-major in the original token order (row t
 * holds token t); the direction only changes the order in which tokens are
 * visited, computed from the position by sm_scan_token(), so the backward
 * and inter-slice scans never copy or permute the sequence. */
#ifndef SM_SIMD_SCAN_H
#define SM_SIMD_SCAN_H

#include <stddef.h>
#include <stdint.h>

typedef enum sm_order {
    SM_ORDER_FORWARD = 0,
    SM_ORDER_BACKWARD = 1,
    SM_ORDER_SLICE = 2
} sm_order;

/* Largest dt_rank for which a kernel computes delta itself (sm_scan_args). */
#define SM_SCAN_MAX_RANK 64

typedef struct sm_scan_args {
    int64_t L;          /* tokens */
    int n_state;        /* N */
    sm_order order;
    int64_t nslices;    /* S, for SM_ORDER_SLICE; L % S == 0 */
    const float *u;     /* (L, ld_u): SiLU(conv1d(x)) */
    int64_t ld_u;
    const float *delta; /* (L, ld_delta): dt_proj(dt_low) before bias and softplus, or
                           NULL: the kernel computes it from dt_low (below) */
    int64_t ld_delta;
    /* Used when delta is NULL: delta[t, c] = sum_r dt_low[t*ld_dt_low + r] dt_proj[c*dt_rank + r]
     * (dt_proj in PyTorch's (channels, rank) layout), r = 0 .. dt_rank - 1,
     * dt_rank <= SM_SCAN_MAX_RANK. The projection then costs a few FMAs per
     * token in the scan instead of an (L, channels) array written by a GEMM
     * and read back. */
    const float *dt_low;
    int64_t ld_dt_low;
    const float *dt_proj;
    int dt_rank;
    const float *delta_bias; /* per channel */
    const float *A;          /* (channels, N) = -exp(A_log) */
    const float *B;          /* B[t*ld_bc + n] */
    const float *C;          /* C[t*ld_bc + n] */
    int64_t ld_bc;
    const float *D;          /* per channel */
    const float *z;          /* (L, ld_z): the gate before SiLU, or NULL for none (the
                                caller gates the sum of the directions once) */
    int64_t ld_z;
    float *y;                /* (L, ld_y): y is added to what is there */
    int64_t ld_y;
} sm_scan_args;

/* Scans channels [c0, c1): y[t, c] += (sum_n C[t,n] h[c,n] + D[c] u[t,c]) * SiLU(z[t,c])
 * (without the factor when z is NULL).
 * state: (c1 - c0) * N floats of caller-provided scratch (any contents). */
typedef void (*sm_scan_fn)(const sm_scan_args *a, int c0, int c1, float *state);

/* Token visited at sequence position q. The slice order walks position
 * q = j*S + s to token s*m + j (m = L/S): the j-th token of every one of the
 * S contiguous slices, then the (j+1)-th, and so on. */
static inline int64_t sm_scan_token(sm_order order, int64_t L, int64_t S, int64_t q)
{
    switch (order) {
    case SM_ORDER_BACKWARD: return L - 1 - q;
    case SM_ORDER_SLICE: return (q % S) * (L / S) + q / S;
    default: return q;
    }
}

/* The position at which token t is visited: the inverse of sm_scan_token. */
static inline int64_t sm_scan_position(sm_order order, int64_t L, int64_t S, int64_t t)
{
    switch (order) {
    case SM_ORDER_BACKWARD: return L - 1 - t;
    case SM_ORDER_SLICE: return (t % (L / S)) * S + t / (L / S);
    default: return t;
    }
}

void sm_scan_scalar(const sm_scan_args *a, int c0, int c1, float *state);
void sm_scan_avx2(const sm_scan_args *a, int c0, int c1, float *state);
void sm_scan_avx512(const sm_scan_args *a, int c0, int c1, float *state);
void sm_scan_neon(const sm_scan_args *a, int c0, int c1, float *state);

#endif
