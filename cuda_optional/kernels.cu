/* The CUDA backend's kernels and their launchers (interface: kernels.h).
 *
 * One thread, one independent result: no kernel shares data between
 * threads, so each is correct for any scheduling, and under
 * SM_CUDA_EMULATION the same code runs on the CPU (emu/cuda_emu.h) for the
 * tests. Arithmetic follows the CPU backend's definitions (src/engine/ops.c,
 * simd/scan_scalar.c) operation for operation, with libm-accurate expf,
 * log1pf and erff (no fast-math intrinsics). */
#include "kernels.h"

#include <math.h>
#include <stdint.h>

#ifdef SM_CUDA_EMULATION
#include "emu/cuda_emu.h"
#endif

#define THREADS 256

/* Launches kernel with one thread per index in [0, total). */
template <typename... P, typename... A>
static cudaError_t launch(void (*kernel)(P...), int64_t total, cudaStream_t stream, A... args)
{
    if (total <= 0) return cudaSuccess;
    const int64_t blocks = (total + THREADS - 1) / THREADS;
    if (blocks > INT32_MAX) return cudaErrorInvalidConfiguration;
#ifdef SM_CUDA_EMULATION
    (void)stream;
    sm_emu_launch((unsigned)blocks, THREADS, [&] { kernel(args...); });
#else
    kernel<<<(unsigned)blocks, THREADS, 0, stream>>>(args...);
#endif
    return cudaGetLastError();
}

__device__ static inline int64_t thread_index(void)
{
    return (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
}

__device__ static inline float activate(float v, int act)
{
    switch (act) {
    case SM_CUK_RELU: return v > 0.0f ? v : 0.0f;
    case SM_CUK_LRELU: return v > 0.0f ? v : 0.01f * v;
    case SM_CUK_GELU: return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    default: return v;
    }
}

__device__ static inline float silu(float v) { return v / (1.0f + expf(-v)); }

/* As in PyTorch: v itself above 20, where log1p(exp(v)) == v in float. */
__device__ static inline float softplus(float v) { return v > 20.0f ? v : log1pf(expf(v)); }

/* Token visited at position q: sm_scan_token (simd/scan.h). */
__device__ static inline int64_t token_at(const sm_cuk_seq &s, int64_t q)
{
    switch (s.order) {
    case SM_CUK_BACKWARD: return s.L - 1 - q;
    case SM_CUK_SLICE: return (q % s.S) * (s.L / s.S) + q / s.S;
    case SM_CUK_HDW: { /* q = (y d + z) w + x */
        const int64_t x = q % s.w, r = q / s.w;
        return ((r % s.d) * s.h + r / s.d) * s.w + x;
    }
    case SM_CUK_WHD: { /* q = (x h + y) d + z */
        const int64_t z = q % s.d, r = q / s.d;
        return (z * s.h + r % s.h) * s.w + r / s.h;
    }
    default: return q;
    }
}

/* ---- layout ------------------------------------------------------------ */

__global__ void k_to_channels_last(const float *src, int c, int64_t n, float *dst, int dst_ld)
{
    const int64_t i = thread_index();
    if (i >= n * c) return;
    const int64_t v = i / c, k = i % c;
    dst[v * dst_ld + k] = src[k * n + v];
}

__global__ void k_from_channels_last(const float *src, int src_ld, int c, int64_t n, float *dst)
{
    const int64_t i = thread_index();
    if (i >= n * c) return;
    const int64_t k = i / n, v = i % n;
    dst[k * n + v] = src[v * src_ld + k];
}

extern "C" cudaError_t sm_cuk_to_channels_last(cudaStream_t s, const float *src, int c, int64_t n,
                                               float *dst, int dst_ld)
{
    return launch(k_to_channels_last, n * c, s, src, c, n, dst, dst_ld);
}

extern "C" cudaError_t sm_cuk_from_channels_last(cudaStream_t s, const float *src, int src_ld,
                                                 int c, int64_t n, float *dst)
{
    return launch(k_from_channels_last, n * c, s, src, src_ld, c, n, dst);
}

/* ---- convolution --------------------------------------------------------- */

__global__ void k_im2col(const float *src, int src_ld, sm_cuk_conv_geom g, int64_t v0, int64_t rows,
                         float *col)
{
    const int64_t i = thread_index();
    const int64_t K = (int64_t)g.k * g.k * g.k * g.cin;
    if (i >= rows * K) return;
    const int64_t r = i / K, j = i % K;
    const int ci = (int)(j % g.cin), tap = (int)(j / g.cin);
    const int kw = tap % g.k, kh = tap / g.k % g.k, kd = tap / (g.k * g.k);
    const int64_t v = v0 + r;
    const int x = (int)(v % g.ow), y = (int)(v / g.ow % g.oh), z = (int)(v / g.ow / g.oh);
    const int iz = z * g.stride - g.pad + kd * g.dilation,
              iy = y * g.stride - g.pad + kh * g.dilation,
              ix = x * g.stride - g.pad + kw * g.dilation;
    const int inside = iz >= 0 && iz < g.d && iy >= 0 && iy < g.h && ix >= 0 && ix < g.w;
    col[i] = inside ? src[(((int64_t)iz * g.h + iy) * g.w + ix) * src_ld + ci] : 0.0f;
}

extern "C" cudaError_t sm_cuk_im2col(cudaStream_t s, const float *src, int src_ld,
                                     sm_cuk_conv_geom g, int64_t v0, int64_t rows, float *col)
{
    const int64_t K = (int64_t)g.k * g.k * g.k * g.cin;
    return launch(k_im2col, rows * K, s, src, src_ld, g, v0, rows, col);
}

__global__ void k_bias_act(float *y, int ld, int64_t n, int c, const float *bias, int act)
{
    const int64_t i = thread_index();
    if (i >= n * c) return;
    const int64_t v = i / c, k = i % c;
    float *p = y + v * ld + k;
    *p = activate(*p + (bias ? bias[k] : 0.0f), act);
}

extern "C" cudaError_t sm_cuk_bias_act(cudaStream_t s, float *y, int ld, int64_t n, int c,
                                       const float *bias, int act)
{
    return launch(k_bias_act, n * c, s, y, ld, n, c, bias, act);
}

__global__ void k_convt2_scatter(const float *tmp, int64_t v0, int64_t rows, int h, int w, int cout,
                                 float *dst, int dst_ld)
{
    const int64_t i = thread_index();
    const int64_t cols = 8 * (int64_t)cout;
    if (i >= rows * cols) return;
    const int64_t r = i / cols, kk = i % cols / cout, co = i % cout;
    const int64_t v = v0 + r;
    const int64_t z = v / ((int64_t)h * w), y = v / w % h, x = v % w;
    const int64_t o =
        ((2 * z + (kk >> 2)) * (2 * (int64_t)h) + 2 * y + ((kk >> 1) & 1)) * (2 * (int64_t)w) +
        2 * x + (kk & 1);
    dst[o * dst_ld + co] = tmp[i];
}

extern "C" cudaError_t sm_cuk_convt2_scatter(cudaStream_t s, const float *tmp, int64_t v0,
                                             int64_t rows, int h, int w, int cout, float *dst,
                                             int dst_ld)
{
    return launch(k_convt2_scatter, rows * 8 * (int64_t)cout, s, tmp, v0, rows, h, w, cout, dst,
                  dst_ld);
}

/* ---- instance norm ------------------------------------------------------- */

__global__ void k_channel_partials(const float *x, int ld, int64_t n, int c, const double *mean,
                                   int groups, double *partial)
{
    const int64_t i = thread_index();
    if (i >= (int64_t)groups * c) return;
    const int64_t g = i / c, k = i % c;
    const int64_t span = (n + groups - 1) / groups;
    const int64_t v0 = g * span, v1 = v0 + span < n ? v0 + span : n;
    double acc = 0.0;
    for (int64_t v = v0; v < v1; v++) {
        const double d = mean ? (double)x[v * ld + k] - mean[k] : (double)x[v * ld + k];
        acc += mean ? d * d : d;
    }
    partial[i] = acc;
}

__global__ void k_channel_mean(const double *partial, int groups, int c, int64_t n, double *mean)
{
    const int64_t k = thread_index();
    if (k >= c) return;
    double sum = 0.0;
    for (int g = 0; g < groups; g++) sum += partial[(int64_t)g * c + k];
    mean[k] = sum / (double)n;
}

__global__ void k_channel_scale(const double *partial, int groups, int c, int64_t n, double eps,
                                double *scale)
{
    const int64_t k = thread_index();
    if (k >= c) return;
    double sum = 0.0;
    for (int g = 0; g < groups; g++) sum += partial[(int64_t)g * c + k];
    scale[k] = 1.0 / sqrt(sum / (double)n + eps);
}

__global__ void k_normalize(const float *src, int src_ld, float *dst, int dst_ld, int64_t n, int c,
                            const double *mean, const double *scale, int act)
{
    const int64_t i = thread_index();
    if (i >= n * c) return;
    const int64_t v = i / c, k = i % c;
    const float y = (float)(((double)src[v * src_ld + k] - mean[k]) * scale[k]);
    dst[v * dst_ld + k] = activate(y, act);
}

extern "C" cudaError_t sm_cuk_channel_partials(cudaStream_t s, const float *x, int ld, int64_t n,
                                               int c, const double *mean, int groups,
                                               double *partial)
{
    return launch(k_channel_partials, (int64_t)groups * c, s, x, ld, n, c, mean, groups, partial);
}

extern "C" cudaError_t sm_cuk_channel_mean(cudaStream_t s, const double *partial, int groups, int c,
                                           int64_t n, double *mean)
{
    return launch(k_channel_mean, c, s, partial, groups, c, n, mean);
}

extern "C" cudaError_t sm_cuk_channel_scale(cudaStream_t s, const double *partial, int groups,
                                            int c, int64_t n, double eps, double *scale)
{
    return launch(k_channel_scale, c, s, partial, groups, c, n, eps, scale);
}

extern "C" cudaError_t sm_cuk_normalize(cudaStream_t s, const float *src, int src_ld, float *dst,
                                        int dst_ld, int64_t n, int c, const double *mean,
                                        const double *scale, int act)
{
    return launch(k_normalize, n * c, s, src, src_ld, dst, dst_ld, n, c, mean, scale, act);
}

/* ---- pointwise ------------------------------------------------------------ */

__global__ void k_add(const float *a, int lda, const float *b, int ldb, float *dst, int dst_ld,
                      int64_t n, int c, int act)
{
    const int64_t i = thread_index();
    if (i >= n * c) return;
    const int64_t v = i / c, k = i % c;
    dst[v * dst_ld + k] = activate(a[v * lda + k] + b[v * ldb + k], act);
}

__global__ void k_act(const float *src, int src_ld, float *dst, int dst_ld, int64_t n, int c,
                      int act)
{
    const int64_t i = thread_index();
    if (i >= n * c) return;
    const int64_t v = i / c, k = i % c;
    dst[v * dst_ld + k] = activate(src[v * src_ld + k], act);
}

__global__ void k_fue(const float *src, int src_ld, float *dst, int dst_ld, int64_t n, int c)
{
    const int64_t v = thread_index();
    if (v >= n) return;
    const float *x = src + v * src_ld;
    float *o = dst + v * dst_ld;
    float mean = 0.0f;
    for (int k = 0; k < c; k++) mean += x[k];
    mean /= (float)c;
    const float m = 1.0f / (1.0f + expf(-mean));
    const float keep = 1.0f + m * logf(m); /* 1 - u, u = -m ln m */
    for (int k = 0; k < c; k++) o[k] = x[k] + x[k] * keep;
}

__global__ void k_layer_norm(const float *src, int src_ld, float *dst, int dst_ld, int64_t n, int c,
                             const float *weight, const float *bias)
{
    const int64_t v = thread_index();
    if (v >= n) return;
    const float *x = src + v * src_ld;
    float *y = dst + v * dst_ld;
    double mean = 0.0, var = 0.0;
    for (int k = 0; k < c; k++) mean += x[k];
    mean /= c;
    for (int k = 0; k < c; k++) var += ((double)x[k] - mean) * ((double)x[k] - mean);
    const double inv = 1.0 / sqrt(var / c + 1e-5);
    for (int k = 0; k < c; k++) y[k] = (float)(((double)x[k] - mean) * inv) * weight[k] + bias[k];
}

extern "C" cudaError_t sm_cuk_add(cudaStream_t s, const float *a, int lda, const float *b, int ldb,
                                  float *dst, int dst_ld, int64_t n, int c, int act)
{
    return launch(k_add, n * c, s, a, lda, b, ldb, dst, dst_ld, n, c, act);
}

extern "C" cudaError_t sm_cuk_act(cudaStream_t s, const float *src, int src_ld, float *dst,
                                  int dst_ld, int64_t n, int c, int act)
{
    return launch(k_act, n * c, s, src, src_ld, dst, dst_ld, n, c, act);
}

extern "C" cudaError_t sm_cuk_fue(cudaStream_t s, const float *src, int src_ld, float *dst,
                                  int dst_ld, int64_t n, int c)
{
    return launch(k_fue, n, s, src, src_ld, dst, dst_ld, n, c);
}

extern "C" cudaError_t sm_cuk_layer_norm(cudaStream_t s, const float *src, int src_ld, float *dst,
                                         int dst_ld, int64_t n, int c, const float *weight,
                                         const float *bias)
{
    return launch(k_layer_norm, n, s, src, src_ld, dst, dst_ld, n, c, weight, bias);
}

/* ---- squeeze-excitation ------------------------------------------------------ */

__global__ void k_se_hidden(const double *mean, int c, int hidden, const float *fc1_w,
                            const float *fc1_b, float *hid)
{
    const int64_t i = thread_index();
    if (i >= hidden) return;
    float s = fc1_b[i];
    for (int k = 0; k < c; k++) s += fc1_w[i * c + k] * (float)mean[k];
    hid[i] = s > 0.0f ? s : 0.0f;
}

__global__ void k_se_gate(const float *hid, int c, int hidden, const float *fc2_w,
                          const float *fc2_b, float *gate)
{
    const int64_t k = thread_index();
    if (k >= c) return;
    float s = fc2_b[k];
    for (int i = 0; i < hidden; i++) s += fc2_w[k * hidden + i] * hid[i];
    gate[k] = 1.0f / (1.0f + expf(-s));
}

__global__ void k_scale_channels(const float *src, int src_ld, float *dst, int dst_ld, int64_t n,
                                 int c, const float *gate)
{
    const int64_t i = thread_index();
    if (i >= n * c) return;
    const int64_t v = i / c, k = i % c;
    dst[v * dst_ld + k] = src[v * src_ld + k] * gate[k];
}

extern "C" cudaError_t sm_cuk_se_hidden(cudaStream_t s, const double *mean, int c, int hidden,
                                        const float *fc1_w, const float *fc1_b, float *hid)
{
    return launch(k_se_hidden, hidden, s, mean, c, hidden, fc1_w, fc1_b, hid);
}

extern "C" cudaError_t sm_cuk_se_gate(cudaStream_t s, const float *hid, int c, int hidden,
                                      const float *fc2_w, const float *fc2_b, float *gate)
{
    return launch(k_se_gate, c, s, hid, c, hidden, fc2_w, fc2_b, gate);
}

extern "C" cudaError_t sm_cuk_scale_channels(cudaStream_t s, const float *src, int src_ld,
                                             float *dst, int dst_ld, int64_t n, int c,
                                             const float *gate)
{
    return launch(k_scale_channels, n * c, s, src, src_ld, dst, dst_ld, n, c, gate);
}

/* ---- Mamba: causal conv1d and the selective scan ---------------------------- */

__global__ void k_conv1d_silu(const float *x, int64_t ldx, const float *w, const float *b, int K,
                              int di, sm_cuk_seq seq, float *u)
{
    const int64_t i = thread_index();
    if (i >= seq.L * di) return;
    const int64_t q = i / di;
    const int c = (int)(i % di);
    float acc = b[c];
    for (int k = 0; k < K; k++) {
        const int64_t p = q - (K - 1) + k;
        if (p >= 0) acc += w[(int64_t)k * di + c] * x[token_at(seq, p) * ldx + c];
    }
    u[token_at(seq, q) * di + c] = silu(acc);
}

extern "C" cudaError_t sm_cuk_conv1d_silu(cudaStream_t s, const float *x, int64_t ldx,
                                          const float *w, const float *b, int K, int di,
                                          const sm_cuk_seq *seq, float *u)
{
    return launch(k_conv1d_silu, seq->L * di, s, x, ldx, w, b, K, di, *seq, u);
}

/* Pass 1: thread (chunk, channel) scans its chunk from a zero state; writes
 * the end state and the product of the decays, (chunk, channel, n)-major.
 * NMAX bounds n_state at compile time so that the states stay in registers. */
template <int NMAX>
__global__ void k_scan_chunk_ends(sm_cuk_scan_args a, int64_t chunk, int64_t nchunks, float *h_end,
                                  float *decay)
{
    const int64_t i = thread_index();
    if (i >= nchunks * a.d_inner) return;
    const int64_t ck = i / a.d_inner;
    const int c = (int)(i % a.d_inner), N = a.n_state;
    float h[NMAX], prod[NMAX], A[NMAX];
#pragma unroll
    for (int n = 0; n < NMAX; n++)
        if (n < N) {
            h[n] = 0.0f;
            prod[n] = 1.0f;
            A[n] = a.A[(int64_t)c * N + n];
        }
    const int64_t q0 = ck * chunk, q1 = q0 + chunk < a.seq.L ? q0 + chunk : a.seq.L;
    for (int64_t q = q0; q < q1; q++) {
        const int64_t t = token_at(a.seq, q);
        const float dt = softplus(a.delta[t * a.ld_delta + c] + a.delta_bias[c]);
        const float du = dt * a.u[t * a.ld_u + c];
        const float *B = a.B + t * a.ld_bc;
#pragma unroll
        for (int n = 0; n < NMAX; n++)
            if (n < N) {
                const float e = expf(dt * A[n]);
                h[n] = e * h[n] + du * B[n];
                prod[n] *= e;
            }
    }
#pragma unroll
    for (int n = 0; n < NMAX; n++)
        if (n < N) {
            h_end[i * N + n] = h[n];
            decay[i * N + n] = prod[n];
        }
}

/* Pass 2: thread (channel, n) walks the chunks in order, replacing each
 * chunk's end state by its start state: the state carried in from all the
 * chunks before it (start[0] = 0, start[k+1] = decay[k] start[k] + end[k]). */
__global__ void k_scan_carry(int64_t nchunks, int64_t states, float *h_end, const float *decay)
{
    const int64_t i = thread_index();
    if (i >= states) return;
    float carried = 0.0f;
    for (int64_t ck = 0; ck < nchunks; ck++) {
        const int64_t at = ck * states + i;
        const float end = h_end[at];
        h_end[at] = carried;
        carried = decay[at] * carried + end;
    }
}

/* Pass 3: thread (chunk, channel) rescans its chunk from its start state and
 * adds the gated output to y. */
template <int NMAX>
__global__ void k_scan_chunk_output(sm_cuk_scan_args a, int64_t chunk, int64_t nchunks,
                                    const float *h_start)
{
    const int64_t i = thread_index();
    if (i >= nchunks * a.d_inner) return;
    const int64_t ck = i / a.d_inner;
    const int c = (int)(i % a.d_inner), N = a.n_state;
    float h[NMAX], A[NMAX];
#pragma unroll
    for (int n = 0; n < NMAX; n++)
        if (n < N) {
            h[n] = h_start[i * N + n];
            A[n] = a.A[(int64_t)c * N + n];
        }
    const int64_t q0 = ck * chunk, q1 = q0 + chunk < a.seq.L ? q0 + chunk : a.seq.L;
    for (int64_t q = q0; q < q1; q++) {
        const int64_t t = token_at(a.seq, q);
        const float dt = softplus(a.delta[t * a.ld_delta + c] + a.delta_bias[c]);
        const float u = a.u[t * a.ld_u + c];
        const float du = dt * u;
        const float *B = a.B + t * a.ld_bc, *C = a.C + t * a.ld_bc;
        float acc = 0.0f;
#pragma unroll
        for (int n = 0; n < NMAX; n++)
            if (n < N) {
                h[n] = expf(dt * A[n]) * h[n] + du * B[n];
                acc += C[n] * h[n];
            }
        a.y[t * a.ld_y + c] += (acc + a.D[c] * u) * silu(a.z[t * a.ld_z + c]);
    }
}

extern "C" int64_t sm_cuk_scan_default_chunk(int64_t L)
{
    int64_t chunk = 16;
    while (chunk < 256 && chunk * chunk < L) chunk *= 2;
    return chunk;
}

extern "C" int64_t sm_cuk_scan_work_floats(const sm_cuk_scan_args *a, int64_t chunk)
{
    const int64_t nchunks = (a->seq.L + chunk - 1) / chunk;
    return 2 * nchunks * a->d_inner * a->n_state;
}

extern "C" cudaError_t sm_cuk_scan(cudaStream_t s, const sm_cuk_scan_args *a, int64_t chunk,
                                   float *work)
{
    if (a->n_state < 1 || a->n_state > SM_CUK_MAX_STATE || chunk < 1 || a->seq.L < 1)
        return cudaErrorInvalidValue;
    const int64_t nchunks = (a->seq.L + chunk - 1) / chunk;
    const int64_t states = (int64_t)a->d_inner * a->n_state;
    float *h_end = work, *decay = work + nchunks * states;
    const int64_t threads = nchunks * a->d_inner;
    const int small = a->n_state <= 16;
    cudaError_t e =
        small ? launch(k_scan_chunk_ends<16>, threads, s, *a, chunk, nchunks, h_end, decay)
              : launch(k_scan_chunk_ends<SM_CUK_MAX_STATE>, threads, s, *a, chunk, nchunks, h_end,
                       decay);
    if (e == cudaSuccess) e = launch(k_scan_carry, states, s, nchunks, states, h_end, decay);
    if (e == cudaSuccess)
        e = small ? launch(k_scan_chunk_output<16>, threads, s, *a, chunk, nchunks, h_end)
                  : launch(k_scan_chunk_output<SM_CUK_MAX_STATE>, threads, s, *a, chunk, nchunks,
                           h_end);
    return e;
}
