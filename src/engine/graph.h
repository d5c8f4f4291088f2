/* The model as a list of nodes run in order. A node reads and writes
 * values; a value is a channel range of a buffer at a resolution level
 * (level l has sides d>>l, h>>l, w>>l of the input's), so an up block's
 * transposed convolution and its skip connection can be written straight
 * into the two halves of one concatenated buffer. A value may also be a
 * packed one, a dense tensor of fewer channels laid in part of a wider
 * buffer's memory, so that a block can reuse the memory of an input it has
 * finished with. All buffers live in one arena in which buffers that are
 * never live at the same time share memory (sm_graph_run plans it for the
 * input size); a buffer's memory may be split in two parts, one live from
 * a later node or up to an earlier one than the other, and a convolution
 * may run in slabs of planes in its own input's memory (docs/internals.md,
 * Memory). */
#ifndef SM_GRAPH_H
#define SM_GRAPH_H

#include <stdint.h>

#include "engine/conv.h"
#include "core/error.h"
#include "engine/mamba.h"
#include "engine/ops.h"
#include "engine/se.h"

typedef enum sm_opcode {
    SM_OP_CONV,   /* obj: sm_conv; in1, if any, its workspace (sm_graph_workspace) */
    SM_OP_CONVT2, /* obj: sm_convt2, output at level - 1 */
    SM_OP_INORM,  /* instance norm + act */
    SM_OP_ADD,    /* act(in0 + in1) */
    SM_OP_ACT,    /* act(in0) */
    SM_OP_FUE,
    SM_OP_MAMBA,           /* obj: sm_mamba, nslices; in1 is its scratch buffer */
    SM_OP_INORM_ADD,       /* act(IN(in0) + in1) */
    SM_OP_INORM_ADD_INORM, /* act(IN(in0) + IN(in1)) */
    /* obj: a 1x1x1 sm_conv, run one plane of voxels at a time, through a
     * plane-sized temporary where out is strided or could reach input
     * still to be read: out may be a strided view (with no full-size
     * temporary) or may overwrite in0, when it starts no later in the same
     * memory with a voxel stride no wider (plane z is written only after
     * it has been read, and below every plane still to be read). */
    SM_OP_POINTWISE,
    SM_OP_SE, /* obj: sm_se (se.h), SegMamba-V2's squeeze-excitation gate; out may be in0 */
    /* out = in0, where out may overlap in0 at or above it (starting no
     * earlier, with a voxel stride no narrower): planes are copied from the
     * last, each through a plane-sized temporary. It turns a dense tensor
     * into one half of its concatenation, in place. */
    SM_OP_COPY,
    /* obj: sm_slab_conv (sm_graph_slab_conv): a Winograd convolution of
     * in0 into out, and optionally a 1x1x1 projection of in0 into out2,
     * run slab by slab of output planes (as many as the tile) through
     * in1, a ring of two slabs: a slab's results are written once the
     * next slab has been computed, when the input planes under them have
     * been read for the last time. So out and out2 may lie in in0's own
     * memory, where each of their planes ends no later than in0's plane of
     * the same index: a block can run in place in its input. */
    SM_OP_CONV_SLABS,
    SM_OP_COUNT /* not an op: the number of them */
} sm_opcode;

typedef struct sm_node {
    sm_opcode op;
    int in0, in1, out; /* value ids, -1 if unused */
    int out2;          /* a second output (SM_OP_CONV_SLABS), else -1 */
    sm_act act;
    void *obj;
    int64_t nslices;
    double flops_per_voxel; /* per voxel of in0's level */
    double seconds;         /* in the last run */
} sm_node;

/* Voxel v's channels are at data + base * (voxels of the level) + c0 +
 * v * ld in its buffer: a slice has base 0 and ld the buffer's channels, a
 * packed value ld = c. */
typedef struct sm_value {
    int buf;
    int c0, c;
    int ld, base;
} sm_value;

typedef struct sm_buffer {
    int channels;
    int level;
    size_t fixed;    /* floats whatever the input size (a workspace), else 0 */
    int planes;      /* planes of the level rather than the whole volume, else 0 */
    int first, last; /* node range in which the buffer is live */
    /* When split > 0, the buffer's memory is two parts, the first split
     * channels' worth (split times the level's voxels) and the rest: the
     * first is live up to node head_last, the rest from node late_first
     * (-1: as the whole buffer). */
    int split, head_last, late_first;
    size_t size, offset; /* floats, in the arena, for the current input size */
    float *data;
} sm_buffer;

typedef struct sm_graph {
    sm_node *nodes;
    int n_nodes, cap_nodes;
    sm_value *values;
    int n_values, cap_values;
    sm_buffer *bufs;
    int n_bufs, cap_bufs;
    int input, output;
    sm_status status;              /* first failure while building, so builders can chain calls */
    float *arena;                  /* every buffer, placed by liveness */
    size_t arena_floats;           /* allocated */
    size_t planned_floats;         /* needed by the last run */
    double seconds[SM_KIND_COUNT]; /* of the last run */
    double flops;                  /* of the last run */
} sm_graph;

sm_graph *sm_graph_create(void);

/* A fresh buffer of channels at level; returns its full value (-1 once
 * g->status is an error). */
int sm_graph_tensor(sm_graph *g, int channels, int level);

/* A buffer of floats floats whatever the input size, for one node's
 * scratch (a node that lists it as in1 has it to itself while it runs);
 * returns its value (-1 once g->status is an error). */
int sm_graph_workspace(sm_graph *g, size_t floats);

/* A buffer of channels x planes planes of level (a slab ring); returns
 * its value (-1 once g->status is an error). */
int sm_graph_planes(sm_graph *g, int channels, int level, int planes);

/* The memory of v's buffer past its first `channels` channels' worth
 * holds nothing until the next node added, which is the first to use it:
 * until then the planner lets other buffers have it, and the nodes before
 * may touch only dense values of the buffer within that first part
 * (sm_graph_finish checks). Lets a skip connection kept dense in the first
 * half of its concatenation leave the second half to the layers between. */
void sm_graph_late(sm_graph *g, int v, int channels);

/* The memory of the first `channels` channels' worth of v's buffer is not
 * used after the last node added: the planner gives it to other buffers
 * from the next node on, and those nodes may touch only dense values of
 * the buffer past that part (sm_graph_finish checks). An up block that
 * leaves its result dense in the second half of its concatenation frees
 * the first this way. */
void sm_graph_early(sm_graph *g, int v, int channels);

/* SM_OP_CONV_SLABS's object. */
typedef struct sm_slab_conv {
    sm_conv *conv; /* Winograd, weights kept (no workspace) */
    sm_conv *proj; /* 1x1x1 on the same input, or NULL */
} sm_slab_conv;

/* Appends an SM_OP_CONV_SLABS node: conv(x) into out and, when proj is not
 * NULL, proj(x) into out2, with its slab ring; takes ownership of both
 * convolutions (freed with the graph, also on failure). */
void sm_graph_slab_conv(sm_graph *g, sm_conv *conv, sm_conv *proj, int x, int out, int out2);

/* Channels [c0, c0 + c) of value v. */
int sm_graph_slice(sm_graph *g, int v, int c0, int c);

/* A dense c-channel tensor in the memory of v's buffer, from float base
 * times the level's voxel count on (base + c <= the buffer's channels):
 * base 0 and base c of a 2c-channel buffer are its two halves. Its memory
 * overlaps every other value of that buffer; the builder orders the nodes
 * so that nothing still to be read is overwritten. */
int sm_graph_packed(sm_graph *g, int v, int base, int c);

int sm_graph_channels(const sm_graph *g, int v);
int sm_graph_level(const sm_graph *g, int v);

/* Appends a node; takes ownership of obj (freed with the graph, also when
 * the graph is already in error). */
void sm_graph_node(sm_graph *g, sm_opcode op, int in0, int in1, int out, sm_act act, void *obj,
                   int64_t nslices);

/* Sets the arithmetic of the last node added: flops per voxel of its
 * first input (a multiply-add counts 2). */
void sm_graph_set_flops(sm_graph *g, double flops_per_voxel);

/* Computes buffer lifetimes; call once after the last node. */
sm_status sm_graph_finish(sm_graph *g, int input, int output);

/* Places every buffer for a d x h x w input: sets each buffer's size and
 * offset (floats) in one arena of *arena_floats, sharing memory between
 * buffers that are never live together. sm_graph_run does this for the
 * host arena; a device backend does it for its own. */
sm_status sm_graph_place(sm_graph *g, int d, int h, int w, size_t *arena_floats);

/* input: the input value's channels in NCDHW order, sides d, h, w;
 * output: the output value's channels, NCDHW, same sides. The ops run on
 * kernel table k (the model's). */
sm_status sm_graph_run(sm_graph *g, const sm_kernels *k, const float *input, int d, int h, int w,
                       float *output);

/* Bytes of the weights the nodes hold (convolutions in every layout their
 * backends keep, Mamba and SE copies); the tensor store's are apart. */
size_t sm_graph_weight_bytes(const sm_graph *g);

/* Frees the arena; the next sm_graph_run plans and allocates it again. */
void sm_graph_release_arena(sm_graph *g);

/* Each op is described once, in graph.c's table indexed by opcode (name,
 * profile kind, run and free functions); a device backend keeps a table of
 * its own run functions and takes the name and kind from these two. */
const char *sm_opcode_name(sm_opcode op);

/* The profile category of an op (a Mamba layer's parts are timed inside it,
 * the node itself counts as other). */
sm_op_kind sm_graph_op_kind(sm_opcode op);

void sm_graph_free(sm_graph *g);

#endif
