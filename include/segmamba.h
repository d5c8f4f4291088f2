/*
 * segmamba: a CPU-first inference engine for the SegMamba 3D segmentation
 * network. This is the whole public interface; everything else is internal.
 *
 *   segmamba_model *m;
 *   if (segmamba_open("model.safetensors", NULL, &m) != SEGMAMBA_OK) {
 *       fprintf(stderr, "%s\n", segmamba_get_last_error());
 *       return 1;
 *   }
 *   segmamba_forward(m, input, d, h, w, logits);
 *   segmamba_close(m);
 *
 * Volumes cross the API in the usual C-order (C, D, H, W) float32 layout,
 * batch 1, exactly as a NumPy array of that shape is laid out in memory.
 *
 * Names (here and in segmamba_pipeline.h): segmamba_[object_]verb. The
 * object names what the function belongs to where it is one of several
 * (segmamba_card_load, segmamba_nifti_read, segmamba_volume_free); the verb
 * says what it does: get reads a value (segmamba_get_version,
 * segmamba_get_threads, segmamba_get_config; a list is segmamba_get_X_count
 * and segmamba_get_X(..., i)), set changes a setting (segmamba_set_threads,
 * segmamba_set_isa), and anything else is the action (segmamba_open,
 * segmamba_forward, segmamba_measure_fma_peak, segmamba_close; init fills a
 * struct: segmamba_card_init_default). A yes/no property is a value too
 * (segmamba_dicom_get_supported); a comparison of two things is its verb
 * (segmamba_card_differs, segmamba_file_is_same). Types are segmamba_noun,
 * constants SEGMAMBA_NOUN.
 */
#ifndef SEGMAMBA_H
#define SEGMAMBA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SEGMAMBA_BUILDING_LIBRARY) && defined(__GNUC__)
#define SEGMAMBA_API __attribute__((visibility("default")))
#else
#define SEGMAMBA_API
#endif

#define SEGMAMBA_VERSION_STRING "0.2.0"

/* Every fallible call returns one of these. The message that goes with the
 * last failure on the calling thread is segmamba_get_last_error(). */
typedef enum segmamba_status {
    SEGMAMBA_OK = 0,
    SEGMAMBA_E_ARG = 1,         /* invalid argument from the caller */
    SEGMAMBA_E_IO = 2,          /* file cannot be opened, read or written */
    SEGMAMBA_E_FORMAT = 3,      /* file is corrupt or not the format it claims */
    SEGMAMBA_E_UNSUPPORTED = 4, /* valid but outside what the engine handles */
    SEGMAMBA_E_MODEL = 5,       /* weights do not form a SegMamba model */
    SEGMAMBA_E_SHAPE = 6,       /* input volume has a shape the model refuses */
    SEGMAMBA_E_NOMEM = 7,       /* allocation failed or exceeds a limit */
    SEGMAMBA_E_BACKEND = 8,     /* a compute backend (oneDNN, BLAS, CUDA) failed or is absent */
    SEGMAMBA_E_CANCELLED = 9    /* the caller's progress callback asked to stop */
} segmamba_status;

typedef enum segmamba_conv_backend {
    SEGMAMBA_CONV_AUTO = 0,    /* Winograd for the 3x3x3 layers within a weight-memory rule
                                  (docs/convolution-backends.md), k2 s2 layers as im2col +
                                  GEMM, the rest on oneDNN when built in, else OpenBLAS */
    SEGMAMBA_CONV_ONEDNN = 1,  /* every layer direct on oneDNN */
    SEGMAMBA_CONV_BLAS = 2,    /* every layer as im2col + GEMM (oneDNN's sgemm when built in,
                                  else OpenBLAS) */
    SEGMAMBA_CONV_REF = 3,     /* plain C, the reference the others are tested against */
    SEGMAMBA_CONV_WINOGRAD = 4 /* Winograd for every 3x3x3 stride-1 layer, the rest as AUTO */
} segmamba_conv_backend;

/* Where a model runs. CUDA needs an engine built with it (meson -Dcuda) and
 * an NVIDIA GPU; without either, segmamba_open fails with
 * SEGMAMBA_E_BACKEND and says which. */
typedef enum segmamba_backend {
    SEGMAMBA_BACKEND_CPU = 0,
    SEGMAMBA_BACKEND_CUDA = 1
} segmamba_backend;

#define SEGMAMBA_STAGES 4

typedef struct segmamba_config {
    int in_chans;
    int out_chans;
    int depths[SEGMAMBA_STAGES];
    int feat[SEGMAMBA_STAGES];
    int hidden;
    int d_state;                  /* N */
    int d_conv;                   /* causal conv1d width */
    int expand;                   /* d_inner = expand * C */
    int dt_rank[SEGMAMBA_STAGES]; /* R per stage */
    int nslices[SEGMAMBA_STAGES];
    int fue;  /* 1: feature-level uncertainty estimation on */
    int bf16; /* 1: convolutions run in bf16 (fp32 accumulation) */
    segmamba_backend backend;
    int tf32; /* 1: CUDA GEMMs run on TF32 tensor cores */
    int64_t n_params;
    int64_t arena_bytes;  /* activation memory planned for the largest input
                             seen so far (0 before the first forward and after
                             segmamba_release_arena) */
    int family;           /* SEGMAMBA_FAMILY_*: the network the tensor names
                             make the checkpoint (spec section 7) */
    int mamba_type;       /* SEGMAMBA_MAMBA_*: the Mamba layers' scan directions,
                             from the tensors present (every layer the same) */
    int64_t weight_bytes; /* host memory the weights take now, every copy and
                             layout the backends keep (Winograd's transformed
                             weights, oneDNN's reordered ones after the first
                             forward) and the tensors kept as loaded */
} segmamba_config;

/* segmamba_config.family. */
enum {
    SEGMAMBA_FAMILY_V1 = 1, /* SegMamba (ge-xing/SegMamba, model_segmamba/segmamba.py) */
    SEGMAMBA_FAMILY_V2 = 2  /* SegMamba-V2 (ge-xing/SegMamba-V2, models_segmamba/segmambav2.py):
                               depths count the LargeKernelConv blocks of each stage (and the
                               Mamba layers of stages 2 and 3); mamba_type NONE (stock Mamba
                               over three orderings); nslices unused */
};

/* segmamba_config.mamba_type: the official vendored mamba_ssm's bimamba_type.
 * Only V3 uses the inter-slice order, and so nslices. */
enum {
    SEGMAMBA_MAMBA_V3 = 0,  /* "v3": forward, backward (_b) and inter-slice (_s) scans */
    SEGMAMBA_MAMBA_V2 = 1,  /* "v2": forward and backward (_b) */
    SEGMAMBA_MAMBA_NONE = 2 /* "none": forward only (stock Mamba) */
};

/* Feature-level uncertainty estimation, segmamba_options.fue. */
enum { SEGMAMBA_FUE_CARD = 0, SEGMAMBA_FUE_ON = 1, SEGMAMBA_FUE_OFF = 2 };

/* Options for segmamba_open. Zero-initialised means defaults. */
typedef struct segmamba_options {
    segmamba_conv_backend conv;
    int nslices[SEGMAMBA_STAGES]; /* all zero: the checkpoint's (below), else 64,32,16,8 */
    int fue;                      /* SEGMAMBA_FUE_CARD (0): as the checkpoint's card says
                                     (default off, as in the released code);
                                     SEGMAMBA_FUE_ON: on (the paper); SEGMAMBA_FUE_OFF */
    int bf16;                     /* 1: bf16 convolutions with fp32 accumulation where
                                     the CPU has native bf16 (AVX512_BF16) and oneDNN is
                                     built in; elsewhere fp32, and config.bf16 says 0 */
    segmamba_backend backend;     /* default CPU */
    int tf32;                     /* CUDA only: 1 runs the GEMMs (convolutions, Mamba
                                     projections) on TF32 tensor cores, inputs rounded to
                                     10 mantissa bits, fp32 accumulation; 0 full fp32 */
    int winograd_tile;            /* with SEGMAMBA_CONV_WINOGRAD: 2, 3 or 4 runs every
                                     Winograd layer with that output tile, F(m^3, 3^3);
                                     0 picks one per layer */
} segmamba_options;

SEGMAMBA_API const char *segmamba_get_version(void);

/* Message for the last failure on this thread ("" if none). */
SEGMAMBA_API const char *segmamba_get_last_error(void);

/* Short stable name of a status, e.g. "E_FORMAT". */
SEGMAMBA_API const char *segmamba_get_status_name(segmamba_status s);

/* Kernel level for the selective scan and other vector kernels: "scalar",
 * "avx2", "avx512" or "neon"; a level this CPU lacks falls back to the best
 * one below it. Returns the level now in use, or NULL for an unknown name.
 * The default is the best level the CPU supports, lowered by the
 * environment variable SEGMAMBA_ISA. Process-wide and safe to call at any
 * time: models opened afterwards get the new level; a model already open
 * keeps the level it was opened with for all its forwards. */
SEGMAMBA_API const char *segmamba_set_isa(const char *name);

/* The kernel level segmamba_set_isa set (or the default): "scalar",
 * "avx2", "avx512" or "neon". */
SEGMAMBA_API const char *segmamba_get_isa(void);

/* How this library was built. */
typedef struct segmamba_build_info {
    int onednn; /* 1: oneDNN convolutions built in (else OpenBLAS) */
    int openmp; /* 1: parallel work on OpenMP threads (else single-threaded) */
    int cuda;   /* 0: no CUDA backend; 1: built; 2: emulated on the CPU (tests only) */
} segmamba_build_info;

SEGMAMBA_API void segmamba_get_build_info(segmamba_build_info *b);

/* Threads for OpenMP, oneDNN and OpenBLAS together; n <= 0 means all cores.
 * Process-wide: every later call into the library, from any thread, runs
 * its parallel work on n threads (results depend on the thread count, in
 * the last bits). */
SEGMAMBA_API void segmamba_set_threads(int n);

/* The thread count the library's parallel work uses now (segmamba_set_threads,
 * else OMP_NUM_THREADS, else all cores). */
SEGMAMBA_API int segmamba_get_threads(void);

/* The FP32 FMA peak of threads threads at the current kernel level, in
 * GFLOP/s, measured now (chains of independent FMAs; the work doubles until
 * a run takes 0.1 s, then the best of 5 runs): the yardstick for a
 * forward's GFLOP/s. */
SEGMAMBA_API double segmamba_measure_fma_peak(int threads);

/* The most bytes one allocation whose size a file declares (a checkpoint's
 * tensor, an input array or NIfTI volume, a whole file read into memory)
 * may take; larger declared sizes are refused with SEGMAMBA_E_NOMEM before
 * anything is allocated. A forward on the CPU is held to it as a whole: its
 * activations' arena for the input size plus the weights the model holds
 * (segmamba_config's arena_bytes and weight_bytes), checked before the
 * arena is allocated. 0 restores the default: the environment variable
 * SEGMAMBA_MAX_MEMORY (bytes, or with a K, M, G or T suffix: "8G"), else
 * the machine's physical memory. */
SEGMAMBA_API void segmamba_set_max_memory(uint64_t bytes);

/* 1 when the CUDA backend is built in and a GPU can run it; info receives
 * the GPU's description ("NAME, compute capability X.Y, N GiB"). Otherwise
 * 0, and info says why (not built, no device, no driver). */
SEGMAMBA_API int segmamba_get_cuda_device(char *info, size_t cap);

typedef struct segmamba_model segmamba_model;

/* Loads a .pt (torch.save of a state_dict, or of a training checkpoint
 * dict holding one under "network_weights", "state_dict", "model" or
 * "module") or .safetensors checkpoint and infers the configuration from
 * tensor shapes (the Mamba type from which directions' tensors stage 0's
 * first layer has; a layer that differs is refused). Key prefixes
 * "module." and "_orig_mod." are stripped when every key carries them;
 * "out_main_seg.*" is read as "out.*". opts may be NULL. nslices and FUE,
 * which no tensor shows, come from opts, else from the safetensors
 * metadata (a model card stored by segmamba_convert, or a "config" entry),
 * else the defaults; segmamba_open_with_card (segmamba_pipeline.h) opens a
 * model with its card, a side file's included. */
SEGMAMBA_API segmamba_status segmamba_open(const char *path, const segmamba_options *opts,
                                           segmamba_model **out);

SEGMAMBA_API void segmamba_get_config(const segmamba_model *m, segmamba_config *cfg);

/* The names of a configuration's family ("SegMamba v1", "SegMamba-V2") and
 * Mamba type ("v3", "v2", "none"; "unknown" outside the enums), as
 * `segmamba info` and `bench` print them; either pointer may be NULL. */
SEGMAMBA_API void segmamba_get_config_names(const segmamba_config *cfg, const char **family,
                                            const char **mamba_type);

/* Names of the checkpoint's tensors that inference does not use (nnU-Net's
 * deep-supervision heads, "ds_seg_from_dec*"), in file order; i from 0 to
 * segmamba_get_ignored_count - 1 (NULL outside). The names belong to the model. */
SEGMAMBA_API int segmamba_get_ignored_count(const segmamba_model *m);
SEGMAMBA_API const char *segmamba_get_ignored_name(const segmamba_model *m, int i);

/* Checks that a (in_chans, d, h, w) input is accepted by the model: each
 * side a positive multiple of 16 and, with the v3 Mamba (the only type
 * that scans inter-slice), every stage's token count divisible by its
 * nslices. */
SEGMAMBA_API segmamba_status segmamba_check_shape(const segmamba_model *m, int d, int h, int w);

/* input: (in_chans, d, h, w) float32; logits: (out_chans, d, h, w) float32,
 * caller-allocated. The model may be reused for any number of calls.
 * Threads: any number of models may be opened, run and closed on different
 * threads at once, and several threads may call one model: its forwards
 * then take turns (a model has one activation arena), each using the
 * threads of segmamba_set_threads. For forwards in parallel, open one model
 * per thread (each holds its own weights and arena). Closing a model while
 * another thread uses it is not allowed. */
SEGMAMBA_API segmamba_status segmamba_forward(segmamba_model *m, const float *input, int d, int h,
                                              int w, float *logits);

/* count inputs, each (in_chans, d, h, w) float32, one after another, to
 * count logits arrays likewise: what count calls of segmamba_forward give.
 * The CUDA backend uploads them at once and runs them back to back with no
 * host synchronisation in between (sliding windows); the CPU runs them in
 * turn. The profile then sums over the inputs. */
SEGMAMBA_API segmamba_status segmamba_forward_batch(segmamba_model *m, int count,
                                                    const float *inputs, int d, int h, int w,
                                                    float *logits);

/* Frees the model's activation arena (the CPU's; a CUDA model keeps its
 * device memory); the next forward plans and allocates it again. For
 * running several models one after another (an ensemble) with one arena's
 * memory at a time. Takes the model's lock, so it waits for a forward
 * under way. */
SEGMAMBA_API void segmamba_release_arena(segmamba_model *m);

/* Where the last forward's time went. */
typedef struct segmamba_profile {
    double seconds_conv;  /* 3D convolutions and transposed convolutions */
    double seconds_scan;  /* the selective scans */
    double seconds_norm;  /* instance and layer norms */
    double seconds_other; /* Mamba GEMMs and conv1d, pointwise ops, layout changes */
    double flops;         /* convolutions, GEMMs and scans; a multiply-add counts 2 */
} segmamba_profile;

SEGMAMBA_API void segmamba_get_profile(const segmamba_model *m, segmamba_profile *p);

/* One layer (graph node) of a model and its time in the last forward. */
typedef struct segmamba_layer {
    char op[24];      /* "conv", "mamba", "instance_norm", ... */
    char backend[24]; /* convolutions: what runs them ("onednn", "winograd4",
                         "blas", "ref"); else "" */
    int kernel;       /* convolutions: kernel side (1, 2 or 3); else 0 */
    int conv3x3x3;    /* 1: a 3x3x3 stride-1 convolution (what Winograd takes) */
    int level;        /* resolution of its input: 0 full, 1 half, ... */
    int in_channels, out_channels;
    double seconds; /* in the last forward (summed over a batch) */
} segmamba_layer;

/* Layers in the order they run; i from 0 to segmamba_get_layer_count - 1. */
SEGMAMBA_API int segmamba_get_layer_count(const segmamba_model *m);
SEGMAMBA_API segmamba_status segmamba_get_layer(const segmamba_model *m, int i,
                                                segmamba_layer *out);

SEGMAMBA_API void segmamba_close(segmamba_model *m);

#ifdef __cplusplus
}
#endif
#endif
