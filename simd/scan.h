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
    SM_ORDER_SLICE = 2,
    SM_ORDER_HDW = 3, /* a d x h x w volume's tokens in (H, D, W) C-order (SegMamba-V2) */
    SM_ORDER_WHD = 4, /* in (W, H, D) C-order (SegMamba-V2) */
    SM_ORDER_COUNT
} sm_order;

/* A sequence of L tokens, stored in the original order (row t holds token
 * t), visited in an order. */
typedef struct sm_seq {
    sm_order order;
    int64_t L;
    int64_t S;       /* SM_ORDER_SLICE: S contiguous slices of L/S tokens (L % S == 0) */
    int64_t d, h, w; /* SM_ORDER_HDW, SM_ORDER_WHD: L = d h w tokens of a volume, in
                        (D, H, W) C-order: token t = (z h + y) w + x */
} sm_seq;

/* Largest dt_rank for which a kernel computes delta itself (sm_scan_args). */
#define SM_SCAN_MAX_RANK 64

typedef struct sm_scan_args {
    sm_seq seq;     /* the tokens and the order they are visited in */
    int n_state;    /* N */
    const float *u; /* (L, ld_u): SiLU(conv1d(x)) */
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
    const float *D; /* per channel */
    const float *z; /* (L, ld_z): the gate before SiLU, or NULL for none (the
                       caller gates the sum of the directions once) */
    int64_t ld_z;
    float *y; /* (L, ld_y): y is added to what is there */
    int64_t ld_y;
} sm_scan_args;

/* Scans channels [c0, c1): y[t, c] += (sum_n C[t,n] h[c,n] + D[c] u[t,c]) * SiLU(z[t,c])
 * (without the factor when z is NULL).
 * state: (c1 - c0) * N floats of caller-provided scratch (any contents). */
typedef void (*sm_scan_fn)(const sm_scan_args *a, int c0, int c1, float *state);

/* Token visited at sequence position q. The slice order walks position
 * q = j*S + s to token s*m + j (m = L/S): the j-th token of every one of the
 * S contiguous slices, then the (j+1)-th, and so on. The volume orders walk
 * the (H, D, W) and (W, H, D) C-orders of the volume's voxels. */
static inline int64_t sm_scan_token(const sm_seq *s, int64_t q)
{
    switch (s->order) {
    case SM_ORDER_BACKWARD: return s->L - 1 - q;
    case SM_ORDER_SLICE: return (q % s->S) * (s->L / s->S) + q / s->S;
    case SM_ORDER_HDW: { /* q = (y d + z) w + x */
        const int64_t x = q % s->w, r = q / s->w;
        return ((r % s->d) * s->h + r / s->d) * s->w + x;
    }
    case SM_ORDER_WHD: { /* q = (x h + y) d + z */
        const int64_t z = q % s->d, r = q / s->d;
        return (z * s->h + r % s->h) * s->w + r / s->h;
    }
    default: return q;
    }
}

/* The position at which token t is visited: the inverse of sm_scan_token. */
static inline int64_t sm_scan_position(const sm_seq *s, int64_t t)
{
    switch (s->order) {
    case SM_ORDER_BACKWARD: return s->L - 1 - t;
    case SM_ORDER_SLICE: return (t % (s->L / s->S)) * s->S + t / (s->L / s->S);
    case SM_ORDER_HDW:
    case SM_ORDER_WHD: { /* t = (z h + y) w + x */
        const int64_t x = t % s->w, r = t / s->w, y = r % s->h, z = r / s->h;
        return s->order == SM_ORDER_HDW ? (y * s->d + z) * s->w + x : (x * s->h + y) * s->d + z;
    }
    default: return t;
    }
}

/* Runs of tokens for kernels that go through the tokens in memory order
 * (the conv1d): tokens t = r*len + j, j = 0 .. len - 1, are visited at
 * positions q0(r) + j*step, and from j = first on (first >= 1) the causal
 * window of k taps of token t is that of token t - 1 with each tap's token
 * one further. */
typedef struct sm_seq_run {
    int64_t len, step, first;
} sm_seq_run;

static inline sm_seq_run sm_seq_runs(const sm_seq *s, int k)
{
    switch (s->order) {
    case SM_ORDER_BACKWARD: return (sm_seq_run){s->L, -1, 1};
    case SM_ORDER_SLICE: return (sm_seq_run){s->L / s->S, s->S, 1};
    /* Positions go along x too, but a window reaching back past x = 0
     * takes the end of another row. */
    case SM_ORDER_HDW: return (sm_seq_run){s->w, 1, k};
    case SM_ORDER_WHD: return (sm_seq_run){s->w, s->d * s->h, 1};
    default: return (sm_seq_run){s->L, 1, 1};
    }
}

/* Whether a sequence is well formed: L > 0, the slices or the volume
 * dividing it as its order needs. */
static inline int sm_seq_valid(const sm_seq *s)
{
    if ((unsigned)s->order >= SM_ORDER_COUNT || s->L <= 0) return 0;
    if (s->order == SM_ORDER_SLICE) return s->S > 0 && s->L % s->S == 0;
    if (s->order == SM_ORDER_HDW || s->order == SM_ORDER_WHD)
        return s->d > 0 && s->h > 0 && s->w > 0 && s->d * s->h * s->w == s->L;
    return 1;
}

void sm_scan_scalar(const sm_scan_args *a, int c0, int c1, float *state);
void sm_scan_avx2(const sm_scan_args *a, int c0, int c1, float *state);
void sm_scan_avx512(const sm_scan_args *a, int c0, int c1, float *state);
void sm_scan_neon(const sm_scan_args *a, int c0, int c1, float *state);

#endif
