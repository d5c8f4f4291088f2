/* 3x3x3 stride-1 pad-1 convolution by Winograd's minimal filtering,
 * F(m^3, 3^3) with m = 2, 3 or 4 (simd/winograd.h has the algebra).
 *
 * The weights are transformed in double into U[t][ci][co] (the n^3 points
 * t, output channels padded to SM_WINO_CPAD with zeros): once, freeing the
 * packed copy, where U takes at most RESIDENT_BYTES (4 MiB); else by each forward,
 * into the caller's workspace (the graph gives each such layer one in the
 * activations' arena), so that the large U of the deep layers (8x their
 * weights with F(4,3)) take memory only while their layer runs. The
 * transform is a small part of a layer's time (192 -> 96 channels at 64^3
 * with F(4,3): 15 ms of 268, 2 threads, AVX-512). A forward splits the output into
 * m^3 tiles, numbered z-major, and hands blocks of consecutive tiles to
 * the threads. A thread works on one block in its own buffer, small enough
 * to stay in its L2 cache: the input transform writes the block's points
 * (tiles x cin at each t), one GEMM per point multiplies them by U[t], and
 * the output transform writes the block's voxels with the bias and ReLU.
 * Nothing of the size of the volume is ever transformed at once.
 *
 * The GEMMs are the dispatch table's microkernel rather than sm_sgemm
 * (oneDNN's sgemm): a block's GEMMs are small (tens of rows), and per point
 * sgemm took 338 ms against 242 for a 48->48 layer at 128^3 with F(4,3) on
 * AVX-512 (394 against 267 on AVX2), and about the same time as the
 * microkernel from 96 channels up (2 threads, conv_bench).
 *
 * The buffer holds T + 1 slots of (block tiles x max(cin, cout) padded)
 * floats: the input transform fills slots 1..T, and the GEMM of point t
 * reads slot t + 1 and writes slot t, which the GEMM of point t - 1 has
 * finished reading; the output transform then reads slots 0..T-1. */
#include "engine/conv_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/parallel.h"
#include "simd/dispatch.h"

struct sm_conv_winograd {
    int m, n, points; /* tile, window side m + 2, n^3 */
    int cinp, coutp;  /* channels rounded up to SM_WINO_CPAD */
    float *u;         /* points x cin x coutp when resident, else NULL */
    float *bias;      /* coutp, zeros where the convolution has none */
};

/* Bytes a thread's block buffer may take: half of a 1 MiB L2, leaving room
 * for the weights of the point being multiplied and the input rows. */
#define BLOCK_BYTES ((size_t)512 * 1024)

static int round_up(int x, int to) { return (x + to - 1) / to * to; }

/* Bytes of transformed weights a layer takes with tile m. */
static double transformed_bytes(const sm_conv_params *p, int m)
{
    const double n = m + 2;
    return n * n * n * p->cin * round_up(p->cout, SM_WINO_CPAD) * sizeof(float);
}

/* Transformed weights up to this size are made once and kept; larger ones
 * are made by each forward in its workspace (the packed weights, 27 / n^3
 * of the size, are what stays), so that they cost memory only while their
 * layer runs. 4 MiB keeps the full resolution's F(4,3) layers (96 -> 48
 * channels: 3.8 MiB), which run in slabs and need them kept; at 8 MiB the
 * 96 -> 96 layers at 64^3 kept theirs too, for 27 MiB more of weights
 * (official v1; 40 MiB for SegMamba-V2) and no time measurably saved. */
#define RESIDENT_BYTES (4.0 * 1024 * 1024)
/* The most one layer's transformed weights may take while it runs. */
#define TRANSIENT_BYTES (64.0 * 1024 * 1024)

static int tile_of(const sm_conv_params *p) { return p->tile ? p->tile : 4; }

/* U = G g G^T along the three axes, in double, for the filters of one input
 * channel ci and every output channel at once: g is the packed weight,
 * (27 taps, cin, cout), and U[q][ci][co] receives point q of filter
 * (ci, co). Each value is computed as one filter at a time would, in the
 * same order; the loops over co are the innermost, so they vectorize. ws
 * holds (27 + 9n + 3n^2) * cout doubles. */
static void transform_filters(const sm_wino_matrices *t, const float *w, int cin, int cout,
                              int coutp, int ci, double *ws, float *u)
{
    const int n = t->n;
    const size_t co_n = (size_t)cout;
    double *g = ws, *a = g + 27 * co_n, *b = a + (size_t)9 * n * co_n;
    for (int tap = 0; tap < 27; tap++)
        for (int co = 0; co < cout; co++)
            g[tap * co_n + co] = w[((size_t)tap * cin + ci) * cout + co];
    /* a[i][j][k] = sum_x G[k][x] g[i][j][x] */
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < n; k++) {
                const double *g0 = g + (size_t)((i * 3 + j) * 3) * co_n;
                double *out = a + (size_t)((i * 3 + j) * n + k) * co_n;
                for (int co = 0; co < cout; co++)
                    out[co] = t->g[k][0] * g0[co] + t->g[k][1] * g0[co_n + co] +
                              t->g[k][2] * g0[2 * co_n + co];
            }
    /* b[i][j][k] = sum_y G[j][y] a[i][y][k] */
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < n; j++)
            for (int k = 0; k < n; k++) {
                const double *a0 = a + (size_t)((i * 3 + 0) * n + k) * co_n;
                const double *a1 = a + (size_t)((i * 3 + 1) * n + k) * co_n;
                const double *a2 = a + (size_t)((i * 3 + 2) * n + k) * co_n;
                double *out = b + (size_t)((i * n + j) * n + k) * co_n;
                for (int co = 0; co < cout; co++)
                    out[co] = t->g[j][0] * a0[co] + t->g[j][1] * a1[co] + t->g[j][2] * a2[co];
            }
    /* u[i][j][k] = sum_z G[i][z] b[z][j][k] */
    for (int i = 0; i < n; i++)
        for (int jk = 0; jk < n * n; jk++) {
            const double *b0 = b + (size_t)jk * co_n;
            const double *b1 = b + (size_t)(n * n + jk) * co_n;
            const double *b2 = b + (size_t)(2 * n * n + jk) * co_n;
            float *out = u + ((size_t)(i * n * n + jk) * cin + ci) * coutp;
            for (int co = 0; co < cout; co++)
                out[co] = (float)(t->g[i][0] * b0[co] + t->g[i][1] * b1[co] + t->g[i][2] * b2[co]);
        }
}

/* The transformed weights of c, points x cin x coutp floats, into u;
 * SEGMAMBA_E_NOMEM when the threads' scratch cannot be had. */
static sm_status transform_weights(const sm_conv *c, const struct sm_conv_winograd *s, float *u)
{
    const sm_wino_matrices *t = sm_wino_matrices_get(s->m);
    const int cin = c->p.cin, cout = c->p.cout, coutp = s->coutp, n = s->n;
    int failed = 0;
#if SM_HAVE_OPENMP
#pragma omp parallel reduction(| : failed)
#endif
    {
        double *ws = malloc((size_t)(27 + 9 * n + 3 * n * n) * cout * sizeof *ws);
        if (!ws) failed = 1;
#if SM_HAVE_OPENMP
#pragma omp for schedule(static)
#endif
        for (int ci = 0; ci < cin; ci++) {
            if (!ws) continue;
            transform_filters(t, c->weight, cin, cout, coutp, ci, ws, u);
            if (coutp > cout) /* the padding columns */
                for (int q = 0; q < s->points; q++)
                    memset(u + ((size_t)q * cin + ci) * coutp + cout, 0,
                           (size_t)(coutp - cout) * sizeof *u);
        }
        free(ws);
    }
    if (failed)
        return sm_fail(SEGMAMBA_E_NOMEM,
                       "Winograd convolution %d -> %d: out of memory transforming the weights", cin,
                       cout);
    return SEGMAMBA_OK;
}

/* Floats of transformed weights. */
static size_t u_floats(const sm_conv *c, const struct sm_conv_winograd *s)
{
    return (size_t)s->points * (size_t)c->p.cin * (size_t)s->coutp;
}

size_t sm_conv_winograd_workspace(const sm_conv *c)
{
    const struct sm_conv_winograd *s = c->wino;
    return s && !s->u ? u_floats(c, s) : 0;
}

size_t sm_conv_winograd_weight_bytes(const sm_conv *c)
{
    const struct sm_conv_winograd *s = c->wino;
    if (!s) return 0;
    return ((s->u ? u_floats(c, s) : 0) + (size_t)s->coutp) * sizeof(float);
}

sm_status sm_conv_winograd_init(sm_conv *c)
{
    const sm_conv_params *p = &c->p;
    const sm_wino_matrices *t = sm_wino_matrices_get(tile_of(p));
    struct sm_conv_winograd *s = calloc(1, sizeof *s);
    if (!s) return sm_fail(SEGMAMBA_E_NOMEM, "Winograd convolution: out of memory");
    c->wino = s;
    s->m = t->m;
    s->n = t->n;
    s->points = t->n * t->n * t->n;
    s->cinp = round_up(p->cin, SM_WINO_CPAD);
    s->coutp = round_up(p->cout, SM_WINO_CPAD);
    s->bias = aligned_alloc(64, (size_t)s->coutp * sizeof *s->bias);
    if (!s->bias) return sm_fail(SEGMAMBA_E_NOMEM, "Winograd convolution: out of memory");
    for (int co = 0; co < s->coutp; co++)
        s->bias[co] = c->bias && co < p->cout ? c->bias[co] : 0.0f;
    if (!sm_conv_winograd_keeps(p, s->m)) return SEGMAMBA_OK; /* per forward */
    s->u = aligned_alloc(64, u_floats(c, s) * sizeof *s->u);
    if (!s->u)
        return sm_fail(SEGMAMBA_E_NOMEM,
                       "Winograd convolution %d -> %d: out of memory for %zu transformed weights",
                       p->cin, p->cout, u_floats(c, s));
    SM_TRY(transform_weights(c, s, s->u));
    /* The transformed weights replace the packed ones. */
    free(c->weight);
    c->weight = NULL;
    return SEGMAMBA_OK;
}

void sm_conv_winograd_release(sm_conv *c)
{
    struct sm_conv_winograd *s = c->wino;
    if (!s) return;
    free(s->u);
    free(s->bias);
    free(s);
    c->wino = NULL;
}

/* Tiles per block. As many as fit BLOCK_BYTES, but at least enough that
 * the GEMMs do not wait for U, which every block streams through once:
 * the GEMM of a block does 2 * tiles flops per byte of U, which comes from
 * L2 when U is small, from L3 (8 tiles suffice) or, when U is larger than a
 * share of L3, from memory (24). Then evened out so that the blocks split
 * equally among the threads. */
static int block_tiles(const struct sm_conv_winograd *s, int cin, int width, int64_t ntiles,
                       int threads)
{
    const size_t tile_bytes = (size_t)(s->points + 1) * (size_t)width * sizeof(float);
    const size_t u_bytes = (size_t)s->points * (size_t)cin * (size_t)s->coutp * sizeof(float);
    int64_t b = (int64_t)(BLOCK_BYTES / tile_bytes);
    const int64_t least = u_bytes <= BLOCK_BYTES ? 1 : u_bytes <= 16 * BLOCK_BYTES ? 8 : 24;
    if (b < least) b = least;
    int64_t blocks = (ntiles + b - 1) / b;
    if (threads < 1) threads = 1;
    blocks = (blocks + threads - 1) / threads * threads;
    b = (ntiles + blocks - 1) / blocks;
    return (int)(b < 1 ? 1 : b);
}

/* The geometry of one forward: tiles per axis and the volume's strides. */
typedef struct plan {
    const sm_conv_dims *g;
    int tiles[3];
    int64_t src_stride[3], dst_stride[3];
    const float *src;
    float *dst;
} plan;

/* Input window and output block of tile number q. */
static void locate(const struct sm_conv_winograd *s, const plan *pl, int64_t q, sm_wino_window *w,
                   sm_wino_tile_out *o)
{
    const int side[3] = {pl->g->d, pl->g->h, pl->g->w};
    int64_t src_off = 0, dst_off = 0;
    int64_t rest = q;
    int tile[3];
    tile[2] = (int)(rest % pl->tiles[2]);
    rest /= pl->tiles[2];
    tile[1] = (int)(rest % pl->tiles[1]);
    tile[0] = (int)(rest / pl->tiles[1]);
    for (int a = 0; a < 3; a++) {
        /* Along D the tiles start at plane z0, and dst at that plane. */
        const int first = a == 0 ? pl->g->z0 : 0, end = a == 0 ? pl->g->z1 : side[a];
        const int out0 = first + tile[a] * s->m, in0 = out0 - 1; /* pad 1 */
        w->lo[a] = in0 < 0 ? -in0 : 0;
        w->hi[a] = side[a] - in0 < s->n ? side[a] - in0 : s->n;
        w->stride[a] = pl->src_stride[a];
        src_off += (int64_t)(in0 + w->lo[a]) * pl->src_stride[a];
        o->cnt[a] = end - out0 < s->m ? end - out0 : s->m;
        o->stride[a] = pl->dst_stride[a];
        dst_off += (int64_t)(out0 - first) * pl->dst_stride[a];
    }
    w->src = pl->src + src_off;
    o->dst = pl->dst + dst_off;
}

sm_status sm_conv_winograd_forward(sm_conv *c, const sm_conv_dims *g, const float *src,
                                   size_t src_ld, float *dst, size_t dst_ld, float *work)
{
    const struct sm_conv_winograd *s = c->wino;
    const sm_kernels *kern = c->p.kernels;
    plan pl = {.g = g, .src = src, .dst = dst};
    const int side[3] = {g->z1 - g->z0, g->h, g->w};
    for (int a = 0; a < 3; a++) pl.tiles[a] = (side[a] + s->m - 1) / s->m;
    pl.src_stride[2] = (int64_t)src_ld;
    pl.src_stride[1] = (int64_t)src_ld * g->w;
    pl.src_stride[0] = pl.src_stride[1] * g->h;
    pl.dst_stride[2] = (int64_t)dst_ld;
    pl.dst_stride[1] = (int64_t)dst_ld * g->w;
    pl.dst_stride[0] = pl.dst_stride[1] * g->h;
    const int64_t ntiles = (int64_t)pl.tiles[0] * pl.tiles[1] * pl.tiles[2];

    const int width = s->cinp > s->coutp ? s->cinp : s->coutp;
    const int block = block_tiles(s, c->p.cin, width, ntiles, sm_num_threads());
    const size_t slot = (size_t)block * width;
    const int64_t nblocks = (ntiles + block - 1) / block;
    const int cin = c->p.cin, cout = c->p.cout, coutp = s->coutp, points = s->points;
    const int relu = c->p.act == SM_ACT_RELU;
    float *own = NULL, *u = s->u;
    if (!u) {
        u = work ? work : (own = aligned_alloc(64, u_floats(c, s) * sizeof *u));
        if (!u)
            return sm_fail(SEGMAMBA_E_NOMEM,
                           "Winograd convolution %d -> %d: out of memory for %zu "
                           "transformed weights",
                           cin, cout, u_floats(c, s));
        const sm_status st = transform_weights(c, s, u);
        if (st != SEGMAMBA_OK) {
            free(own);
            return st;
        }
    }
    int failed = 0;

#if SM_HAVE_OPENMP
#pragma omp parallel reduction(| : failed)
#endif
    {
        float *buf = aligned_alloc(64, (points + 1) * slot * sizeof *buf);
        if (!buf) failed = 1;
#if SM_HAVE_OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
        for (int64_t b = 0; b < nblocks; b++) {
            if (!buf) continue;
            const int64_t q0 = b * block;
            const int count = (int)(ntiles - q0 < block ? ntiles - q0 : block);
            sm_wino_window w;
            sm_wino_tile_out o = {.bias = s->bias, .relu = relu};
            for (int i = 0; i < count; i++) {
                locate(s, &pl, q0 + i, &w, &o);
                kern->wino_input(s->m, &w, cin, buf + slot + (size_t)i * s->cinp, slot);
            }
            for (int t = 0; t < points; t++)
                kern->wino_gemm(count, cin, coutp, buf + (t + 1) * slot, (size_t)s->cinp,
                                u + (size_t)t * cin * coutp, buf + t * slot);
            for (int i = 0; i < count; i++) {
                locate(s, &pl, q0 + i, &w, &o);
                kern->wino_output(s->m, buf + (size_t)i * coutp, slot, cout, &o);
            }
        }
        free(buf);
    }
    free(own);
    if (failed)
        return sm_fail(SEGMAMBA_E_NOMEM,
                       "Winograd convolution %d -> %d: out of memory for the "
                       "tile buffers",
                       cin, cout);
    return SEGMAMBA_OK;
}

int sm_conv_winograd_keeps(const sm_conv_params *p, int m)
{
    return transformed_bytes(p, m) <= RESIDENT_BYTES;
}

int sm_conv_tile(const sm_conv *c)
{
    return c && c->kind == SM_CONV_WINOGRAD && c->wino ? c->wino->m : 0;
}

int sm_conv_winograd_pick(const sm_conv_params *p, sm_wino_use use, int tile)
{
    if (use == SM_WINO_OFF || p->k != 3 || p->stride != 1 || p->pad != 1 ||
        sm_conv_dilation(p) != 1 || p->precision != SM_PREC_F32)
        return 0;
    if (use == SM_WINO_ALL) return tile ? tile : transformed_bytes(p, 4) <= TRANSIENT_BYTES ? 4 : 2;
    if (transformed_bytes(p, 4) <= TRANSIENT_BYTES) return 4;
    if (transformed_bytes(p, 2) <= TRANSIENT_BYTES) return 2;
    return 0;
}
