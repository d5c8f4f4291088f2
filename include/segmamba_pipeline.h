/*
 * segmamba pipeline: the clinical layer on top of segmamba.h. From images to
 * a label map as `segmamba predict` does it (model card, crop, normalisation,
 * resampling, sliding windows, mirror averaging, argmax, regions or sigmoid
 * heads), plus
 * NIfTI and .npy files, Dice/HD95 metrics and PNG previews.
 *
 *   segmamba_model *m;
 *   segmamba_card card;
 *   segmamba_volume img;
 *   segmamba_prediction p;
 *   segmamba_open_with_card("model.safetensors", NULL, NULL, &m, &card, NULL);
 *   segmamba_nifti_read("t1.nii.gz", &img);  // or fill a segmamba_volume
 *   segmamba_predict_options po = {0};
 *   segmamba_predict(m, &card, &img, &po, &p);
 *   segmamba_nifti_write_u8("seg.nii.gz", &img.geom, p.labels, 1);
 *
 * Each call returns a segmamba_status, with the message from
 * segmamba_get_last_error() as in segmamba.h. Volumes are float32 (C, D, H, W)
 * in C order, where (D, H, W) is the file's stored voxel order (nz, ny, nx):
 * never reoriented, so outputs overlay the input in any viewer.
 */
#ifndef SEGMAMBA_PIPELINE_H
#define SEGMAMBA_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "segmamba.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Volumes ---- */

typedef struct segmamba_geometry {
    int d, h, w;         /* voxels: nz, ny, nx */
    double spacing[3];   /* mm along (D, H, W) = NIfTI pixdim[3], pixdim[2], pixdim[1] */
    double affine[4][4]; /* voxel (i, j, k) = (W, H, D) index to world mm (NIfTI's
                            sform convention); the pipeline itself needs only spacing */
    void *header;        /* the source file's NIfTI header, owned; NULL for a
                            volume the caller made */
} segmamba_geometry;

/* A volume the caller fills for segmamba_predict needs c, d, h, w, data and
 * geom.spacing (geom.d/h/w equal to d/h/w; header NULL). Volumes the library
 * returns are freed with segmamba_volume_free. */
typedef struct segmamba_volume {
    int c, d, h, w;
    float *data; /* c * d * h * w floats */
    segmamba_geometry geom;
} segmamba_volume;

/* Frees data and the header, and zeroes v. */
SEGMAMBA_API void segmamba_volume_free(segmamba_volume *v);

/* Compares dims, spacing (1e-3 mm) and affine (1e-3 mm on the origin, 1e-4
 * of the largest element on the 3x3 part). Returns 0 when they match, else 1
 * with the first difference written to why, e.g. "dims differ: 240x240x155
 * vs 240x240x160" (sizes in file order x, y, z). */
SEGMAMBA_API int segmamba_geometry_differs(const segmamba_geometry *a, const segmamba_geometry *b,
                                           char *why, size_t n);

/* The label map held by a one-channel volume (a segmentation read with
 * segmamba_nifti_read): values rounded to integers; a value farther than
 * 1e-3 from an integer, or outside 0..255, is an E_FORMAT error naming
 * origin and the voxel. *labels (d*h*w bytes) is freed by the caller. */
SEGMAMBA_API segmamba_status segmamba_volume_get_labels(const segmamba_volume *v,
                                                        const char *origin, uint8_t **labels);

/* E_UNSUPPORTED when a voxel is NaN or infinite, naming the file it came
 * from (paths[channel] when n == v->c, else paths[0]; paths may be NULL)
 * and the voxel. */
SEGMAMBA_API segmamba_status segmamba_volume_check_finite(const segmamba_volume *v,
                                                          const char *const *paths, int n);

/* ---- NIfTI (.nii, .nii.gz; NIfTI-1 and NIfTI-2) ---- */

/* Reads a 3D image (c = 1) or a 4D image whose 4th dimension holds channels
 * (c = nt), converted to float32 with scl_slope and scl_inter applied. Any
 * scalar datatype is accepted; complex, RGB, 5D+, zero or absurd dimensions,
 * truncated data and corrupt gzip streams are refused. On failure *out is
 * left zeroed. */
SEGMAMBA_API segmamba_status segmamba_nifti_read(const char *path, segmamba_volume *out);

/* Reads n 3D files as the n channels of one volume, in the given order (or,
 * when n == 1, one file that may be 4D). All must share dims and affine
 * (segmamba_geometry_differs); otherwise the error names both files and what
 * differs. The geometry is the first file's. */
SEGMAMBA_API segmamba_status segmamba_nifti_read_channels(const char *const *paths, int n,
                                                          segmamba_volume *out);

/* Writes c channels of d*h*w voxels in (C, D, H, W) order: c == 1 gives a 3D
 * image, c > 1 a 4D one. A geometry read from a file supplies sform/qform,
 * their codes, pixdim and units; without a header the affine is written as
 * sform (code 2, aligned) and qform. Atomic: a temporary file in the same
 * folder renamed over path, nothing left behind on failure; gzip when path
 * ends in ".gz". */
SEGMAMBA_API segmamba_status segmamba_nifti_write_u8(const char *path,
                                                     const segmamba_geometry *geom,
                                                     const uint8_t *data, int c);
SEGMAMBA_API segmamba_status segmamba_nifti_write_f32(const char *path,
                                                      const segmamba_geometry *geom,
                                                      const float *data, int c);

/* ---- Arrays (.npy) ---- */

#define SEGMAMBA_MAX_DIMS 8

typedef struct segmamba_array {
    int ndim;
    int64_t shape[SEGMAMBA_MAX_DIMS];
    int64_t numel;
    float *data; /* owned */
} segmamba_array;

/* Reads a .npy array (format 1-3; C or Fortran order, the latter transposed
 * to C order; float16/32/64, integers or bool, converted to float32). */
SEGMAMBA_API segmamba_status segmamba_npy_read(const char *path, segmamba_array *out);

/* Writes a little-endian float32 C-order array, atomically. */
SEGMAMBA_API segmamba_status segmamba_npy_write(const char *path, int ndim, const int64_t *shape,
                                                const float *data);

/* E_UNSUPPORTED naming origin and the first element that is NaN or
 * infinite, if any. */
SEGMAMBA_API segmamba_status segmamba_array_check_finite(const segmamba_array *a,
                                                         const char *origin);

SEGMAMBA_API void segmamba_array_free(segmamba_array *a);

/* ---- Files ---- */

/* Reads a whole file (within the memory cap of segmamba_set_max_memory);
 * *data is freed by the caller. */
SEGMAMBA_API segmamba_status segmamba_file_read(const char *path, unsigned char **data,
                                                size_t *size);

/* Writes size bytes through a temporary file in the same folder renamed
 * over path, so a failed write leaves nothing behind. An existing path that
 * is not a regular file (/dev/null, a FIFO) is written in place. */
SEGMAMBA_API segmamba_status segmamba_file_write(const char *path, const void *data, size_t size);

/* Whether segmamba_file_write (and the NIfTI writers) could create path:
 * checked before long work whose result goes there. */
SEGMAMBA_API segmamba_status segmamba_file_check_writable(const char *path);

/* 1 when a and b name the same existing file, else 0: for refusing to write
 * an output over an input. */
SEGMAMBA_API int segmamba_file_is_same(const char *a, const char *b);

/* ---- Model cards ---- */

/* What a checkpoint needs beyond its weights to turn images into a
 * segmentation (docs/model-cards.md; the JSON form in src/clinical/card.h):
 * the input channels and their normalisation, spacing and patch, the Mamba
 * settings, the window overlap, and how outputs become labels (argmax;
 * regions: nested sigmoids through a regions table; sigmoid: one sigmoid
 * per structure, thresholded into overlapping masks or, with a regions
 * table, a label map). */
#define SEGMAMBA_CARD_MAX_CHANNELS 16
#define SEGMAMBA_CARD_MAX_LABELS 64
#define SEGMAMBA_CARD_NAME_MAX 64 /* bytes, terminator included */

typedef enum segmamba_norm_kind {
    SEGMAMBA_NORM_ZSCORE = 0, /* (x - mean) / max(std, 1e-8), the volume's own statistics */
    SEGMAMBA_NORM_CT = 1      /* clip to [clip_lo, clip_hi], then the card's mean and std */
} segmamba_norm_kind;

typedef struct segmamba_norm {
    segmamba_norm_kind kind;
    double clip_lo, clip_hi, mean, std;
} segmamba_norm;

typedef enum segmamba_output_kind {
    SEGMAMBA_OUTPUT_ARGMAX = 0,  /* one logit per label: softmax, argmax */
    SEGMAMBA_OUTPUT_REGIONS = 1, /* one sigmoid per nested region; the regions table
                                    (BraTS by default: TC, WT, ET with ET -> 3, else
                                    TC -> 1, else WT -> 2) makes the label map */
    SEGMAMBA_OUTPUT_SIGMOID = 2  /* one sigmoid per structure, labels[c + 1] naming
                                    channel c: overlapping masks, or a label map when
                                    the regions table says which wins */
} segmamba_output_kind;

#define SEGMAMBA_CARD_MAX_REGIONS 16

/* One row of a card's regions table: where output channel `channel` is on
 * (sigmoid > threshold), the label map gets `label`; rows apply in order,
 * a later one overwriting an earlier one. */
typedef struct segmamba_card_region {
    char name[SEGMAMBA_CARD_NAME_MAX];
    int channel;
    int label;
} segmamba_card_region;

/* A DICOM coded concept (Code Sequence Macro): code value, coding scheme
 * designator (e.g. "SCT"), code meaning; value "" when not given. */
typedef struct segmamba_code {
    char value[SEGMAMBA_CARD_NAME_MAX];
    char scheme[SEGMAMBA_CARD_NAME_MAX];
    char meaning[SEGMAMBA_CARD_NAME_MAX];
} segmamba_code;

/* How a label is coded in a DICOM SEG: its Segmented Property Category and
 * Type (CID 7150 and 7151). Labels the card leaves uncoded get defaults
 * (segmamba_dicom_write_seg). */
typedef struct segmamba_card_code {
    segmamba_code category, type;
} segmamba_card_code;

typedef struct segmamba_card {
    int n_channels;
    char channels[SEGMAMBA_CARD_MAX_CHANNELS][SEGMAMBA_CARD_NAME_MAX];
    segmamba_norm norm[SEGMAMBA_CARD_MAX_CHANNELS];
    double spacing[3]; /* mm along (D, H, W) = (z, y, x); all 0: the input's own
                          spacing, no resampling (JSON "spacing": "input") */
    int patch[3];      /* sliding-window roi, per axis (need not be cubic) */
    int nslices[SEGMAMBA_STAGES];
    int fue;
    int n_labels;
    char labels[SEGMAMBA_CARD_MAX_LABELS][SEGMAMBA_CARD_NAME_MAX];
    segmamba_card_code codes[SEGMAMBA_CARD_MAX_LABELS]; /* codes[l]: label l's DICOM coding
                                                           (JSON "dicom_codes") */
    segmamba_output_kind output;
    double threshold; /* regions and sigmoid: a channel is on where its sigmoid
                         is > threshold (0 < threshold < 1; 0.5: logit > 0) */
    double overlap;   /* window overlap when segmamba_predict_options.overlap is
                         0: 0 is the official 0.5, negative none, at most 0.95 */
    int n_regions;    /* rows of regions; 0 with output REGIONS means BraTS's;
                         0 with output SIGMOID: masks, no label map */
    segmamba_card_region regions[SEGMAMBA_CARD_MAX_REGIONS];
    char origin[512]; /* where it came from, for messages */
} segmamba_card;

/* The official BraTS 2023 setup: t2w, t2f, t1n, t1c, all zscore; 1 mm;
 * patch 128^3; nslices 64,32,16,8; FUE off; background, NCR, ED, ET; argmax. */
SEGMAMBA_API void segmamba_card_init_default(segmamba_card *card);

/* The card for a checkpoint that has none and is not a BraTS model (its
 * input channel count is not 4): channels ch0, ch1, ... all zscore; the
 * input's own spacing (no resampling); patch 128^3; the model's nslices and
 * FUE; argmax over labels "0", "1", ... out_chans - 1 (one output: a
 * sigmoid, labels 0 and 1). */
SEGMAMBA_API void segmamba_card_init_generic(const segmamba_config *model, segmamba_card *card);

/* The regions table the card applies (the BraTS one for a REGIONS card
 * that leaves it empty) into out (SEGMAMBA_CARD_MAX_REGIONS rows); returns
 * its row count, 0 for argmax cards and sigmoid cards that write masks. */
SEGMAMBA_API int segmamba_card_get_regions(const segmamba_card *card, segmamba_card_region *out);

/* The output channels the model must have for this card: n_labels
 * (argmax), the regions table's rows (regions), n_labels - 1 (sigmoid). */
SEGMAMBA_API int segmamba_card_get_output_count(const segmamba_card *card);

/* 1 when the card's prediction is a set of overlapping masks (a sigmoid
 * card with more than one output and no regions table): segmamba_predict
 * fills masks, and `segmamba predict -o` writes them as a 4D image. */
SEGMAMBA_API int segmamba_card_get_writes_masks(const segmamba_card *card);

/* Parses card JSON over the defaults and validates every field (an unknown
 * key is an error); origin names the text in messages. */
SEGMAMBA_API segmamba_status segmamba_card_parse(const char *text, size_t len, const char *origin,
                                                 segmamba_card *card);

/* Reads a card JSON file. */
SEGMAMBA_API segmamba_status segmamba_card_load(const char *path, segmamba_card *card);

/* The card as JSON text (caller frees *text); parsing it gives it back. */
SEGMAMBA_API segmamba_status segmamba_card_format_json(const segmamba_card *card, char **text);

/* Finds a checkpoint's card, first match wins: its safetensors
 * __metadata__["card"]; a side file "NAME.card.json" next to "NAME.pt" or
 * "NAME.safetensors"; the BraTS defaults, with nslices and FUE from
 * __metadata__["config"] where present. Fails only for a card that exists
 * and is invalid or unreadable. */
SEGMAMBA_API segmamba_status segmamba_card_find(const char *model_path, segmamba_card *card);

/* Checks the card against an open model: channel count, outputs for the
 * mapping, patch accepted by the network. */
SEGMAMBA_API segmamba_status segmamba_card_check_model(const segmamba_card *card,
                                                       const segmamba_model *m);

/* Opens a model with its model card: the one call for both. The card is
 * card_path's (a JSON file) or, when card_path is NULL, the checkpoint's own
 * as segmamba_card_find finds it, except that a checkpoint with no card
 * (neither metadata nor side file) whose model does not take 4 input
 * channels gets the generic card (segmamba_card_init_generic; *generic, which may
 * be NULL, says so). The card's nslices and FUE reach the model where opts
 * (NULL: the defaults) leaves them at their defaults (all-zero nslices,
 * SEGMAMBA_FUE_CARD). On failure *model is NULL. */
SEGMAMBA_API segmamba_status segmamba_open_with_card(const char *model_path, const char *card_path,
                                                     const segmamba_options *opts,
                                                     segmamba_model **model, segmamba_card *card,
                                                     int *generic);

/* Opens a model with a card the caller already holds (parsed from text, or
 * shared by an ensemble): its nslices and FUE reach the model as above. */
SEGMAMBA_API segmamba_status segmamba_open_for_card(const char *model_path,
                                                    const segmamba_card *card,
                                                    const segmamba_options *opts,
                                                    segmamba_model **model);

/* Writes the checkpoint at src (.pt or .safetensors) as a .safetensors file
 * at dst with card stored in its metadata, so the file carries its card.
 * The card is checked against the model first; dst must not be src. */
SEGMAMBA_API segmamba_status segmamba_convert(const char *src, const segmamba_card *card,
                                              const char *dst);

/* ---- Prediction ---- */

/* Called after each network forward: done of total. Returning nonzero
 * cancels the run: segmamba_predict then returns SEGMAMBA_E_CANCELLED and
 * fills nothing. */
typedef int (*segmamba_progress_fn)(void *user, int done, int total);

typedef struct segmamba_predict_options {
    int no_tta;                    /* 1: one pass instead of the 8 mirror flips */
    int want_probabilities;        /* fill segmamba_prediction.probabilities */
    int want_regions;              /* fill segmamba_prediction.regions */
    int want_uncertainty;          /* fill segmamba_prediction.uncertainty */
    segmamba_progress_fn progress; /* may be NULL */
    void *progress_user;
    int windows_per_call; /* windows per segmamba_forward_batch; 0: 4 on the CUDA
                             backend (fewer host round trips), 1 on the CPU */
    double overlap;       /* the fraction of a window its neighbour shares, as
                             MONAI's sliding_window_inference takes it (window
                             starts int(patch * (1 - overlap)) apart): 0 (left
                             zero) is the card's (card->overlap; its 0 is
                             the official 0.5); negative: none; at most 0.95 */
} segmamba_predict_options;

typedef struct segmamba_prediction {
    int d, h, w;          /* the input grid */
    int n_prob;           /* channels of probabilities: the model's outputs */
    uint8_t *labels;      /* d*h*w label values; a sigmoid card that writes masks:
                             channel c -> c + 1, a later channel overwriting */
    float *probabilities; /* (n_prob, d, h, w): softmax (argmax cards) or sigmoid per
                             output (regions and sigmoid cards); outside the crop box
                             background 1 / sigmoids 0 */
    uint8_t *regions;     /* (3, d, h, w) 0/1: TC = {1,3}, WT = {1,2,3}, ET = {3} */
    int n_masks;          /* regions and sigmoid cards: the model's outputs; else 0 */
    uint8_t *masks;       /* (n_masks, d, h, w) 0/1: each output's sigmoid > the card's
                             threshold (always filled for those cards); 0 outside */
    float *uncertainty;   /* d*h*w, nats: entropy of the softmax (argmax cards) or the
                             mean binary entropy of the sigmoids; 0 outside */
    int box[3][2];        /* crop box [lo, hi) per axis (D, H, W); empty: lo == hi */
    int windows;          /* network forwards run */
} segmamba_prediction;

/* The official inference pipeline on input (c == card->n_channels, spacing
 * in input->geom.spacing): crop to the nonzero box, normalise, resample to
 * the card's spacing (none for "input"), sliding windows of the card's patch
 * (per axis; overlap from the options, else the card's, else 0.5; Gaussian
 * weights), mirror TTA, resample back, then softmax + argmax, or the
 * sigmoids thresholded at the card's threshold into masks and the label map
 * of its regions table, uncrop. The card must match the model
 * (segmamba_card_check_model). On failure, cancellation included, out is
 * left empty. The output arrays are freed with segmamba_prediction_free. */
SEGMAMBA_API segmamba_status segmamba_predict(segmamba_model *m, const segmamba_card *card,
                                              const segmamba_volume *input,
                                              const segmamba_predict_options *opt,
                                              segmamba_prediction *out);

/* An ensemble (nnU-Net's folds): n models of one network (the same
 * segmamba_config but for weights, segmamba_config_differs) with one card.
 * Each model in turn runs the sliding windows and mirror averaging of
 * segmamba_predict over the whole case; their logits are averaged, and the
 * mean goes on as one model's would (resampling back, softmax or sigmoids,
 * argmax, uncrop), as nnU-Net v2 averages its folds. With n > 1 each
 * model's activation arena is released when it is done
 * (segmamba_release_arena), so memory grows by the weights only. Progress
 * counts the windows of all models (prediction.windows too); a callback
 * that asks to stop cancels as in segmamba_predict. Models that differ:
 * SEGMAMBA_E_MODEL naming both (by index, from 1) and the difference.
 * segmamba_predict is the case n == 1. */
SEGMAMBA_API segmamba_status segmamba_predict_ensemble(segmamba_model *const *models, int n,
                                                       const segmamba_card *card,
                                                       const segmamba_volume *input,
                                                       const segmamba_predict_options *opt,
                                                       segmamba_prediction *out);

/* 0 when two models are one network (family, Mamba type, channels,
 * features, depths, hidden size, d_state, d_conv, expand, dt_rank, nslices
 * of the v3 type, FUE), else 1 with the first difference written to why,
 * e.g. "features 4,8,12,18 vs 4,8,12,20". */
SEGMAMBA_API int segmamba_config_differs(const segmamba_config *a, const segmamba_config *b,
                                         char *why, size_t n);

/* 0 when two cards prescribe the same pipeline (every field but origin),
 * else 1 with the first difference written to why, e.g. "patch 32x32x32
 * vs 48x48x48". */
SEGMAMBA_API int segmamba_card_differs(const segmamba_card *a, const segmamba_card *b, char *why,
                                       size_t n);

SEGMAMBA_API void segmamba_prediction_free(segmamba_prediction *p);

/* ---- DICOM (a build with DICOM support: segmamba_dicom_get_supported) ---- */

/* 1 when this build reads DICOM series and writes DICOM SEG (dcmtk found
 * at build time, -Ddicom); without it the functions below return
 * SEGMAMBA_E_UNSUPPORTED saying so. */
SEGMAMBA_API int segmamba_dicom_get_supported(void);

/* What a DICOM SEG needs of the series a volume was read from (their UIDs,
 * each slice's instance, patient, study, frame of reference). */
typedef struct segmamba_dicom_source segmamba_dicom_source;

/* Reads n DICOM series as the n channels of one volume: channel i is the
 * series of folder dirs[i] (searched recursively; any file names; files
 * that are not DICOM Part 10 are skipped) whose Series Instance UID is
 * series[i], or, when series or series[i] is NULL, the folder's only image
 * series (several: an E_ARG error listing them with their descriptions).
 * Single-frame CT/MR/... slices are sorted by position along the slice
 * normal (Image Orientation / Position Patient); an enhanced multi-frame
 * image gives its frames by their plane positions. Rescale slope and
 * intercept are applied. The geometry: (D, H, W) = (slices, rows, columns),
 * spacing along D from the positions (not Slice Thickness), the affine in
 * NIfTI's convention (RAS: DICOM's LPS with x and y negated), no header.
 * Refused, naming the file: missing or duplicated slices and uneven gaps
 * (beyond 1% of the spacing, at least 0.01 mm: the gap and its two files),
 * mixed orientations or sizes, gantry tilt, a transfer syntax the build
 * cannot decode (it decodes uncompressed, deflated, RLE, JPEG and JPEG-LS),
 * corrupt or truncated files, a folder without image objects (a DICOMDIR,
 * reports). All channels must share the geometry. *source (may be NULL)
 * receives what segmamba_dicom_write_seg needs; freed with
 * segmamba_dicom_source_free. On failure *out is left zeroed. */
SEGMAMBA_API segmamba_status segmamba_dicom_read(const char *const *dirs, const char *const *series,
                                                 int n, segmamba_volume *out,
                                                 segmamba_dicom_source **source);

SEGMAMBA_API void segmamba_dicom_source_free(segmamba_dicom_source *source);

/* One DICOM object in memory: the bytes of a Part 10 file ("DICM" at byte
 * 128), as a DICOM server such as Orthanc holds it. name says which object
 * it is in messages (an Orthanc instance ID, a file name; NULL: "object N"
 * of its channel); messages about a slice add its SOP Instance UID. */
typedef struct segmamba_dicom_object {
    const void *data;
    size_t size;
    const char *name;
} segmamba_dicom_object;

/* segmamba_dicom_read for objects in memory, decoded by the same reader:
 * channel i is the image series among objects[i][0 .. counts[i]) (objects
 * that are not images, as in a folder, are skipped; more than one image
 * series is an E_ARG error listing them). Everything else (slice order and
 * checks, decoders, geometry, *source) is as segmamba_dicom_read; the
 * objects need to live only during the call. */
SEGMAMBA_API segmamba_status segmamba_dicom_read_memory(const segmamba_dicom_object *const *objects,
                                                        const int *counts, int n,
                                                        segmamba_volume *out,
                                                        segmamba_dicom_source **source);

/* Writes a DICOM Segmentation object (BINARY) for a prediction made on the
 * volume segmamba_dicom_read gave with source: one segment per label of the
 * card but background (per output of a card that writes masks), labelled
 * with the card's names and coded with its codes (segmamba_card.codes; the
 * BraTS labels have defaults), frames only where a segment is present, the
 * source's patient, study, frame of reference and plane positions, and
 * references to every source series and (per frame) to the first channel's
 * slice. The Pixel Data is packed as PS3.5 8.1.1 says for any frame size
 * (frames bit after bit, least significant bit first), and the encoded file
 * is decoded again and compared with the prediction, frame by frame, before
 * it is written: a difference is SEGMAMBA_E_BACKEND and nothing is written.
 * Atomic, as segmamba_file_write. */
SEGMAMBA_API segmamba_status segmamba_dicom_write_seg(const char *path,
                                                      const segmamba_dicom_source *source,
                                                      const segmamba_card *card,
                                                      const segmamba_prediction *p);

/* What segmamba_dicom_encode_seg may set of the SEG; zero: the defaults. */
typedef struct segmamba_dicom_seg_options {
    const char *series_uid;         /* its Series Instance UID; NULL: a new one */
    const char *instance_uid;       /* its SOP Instance UID; NULL: a new one. Given the
                                       same UIDs, a server that has the SEG already
                                       recognises a second store of it */
    const char *series_description; /* NULL: "SegMamba segmentation" */
} segmamba_dicom_seg_options;

/* segmamba_dicom_write_seg into memory: *data (*size bytes, a Part 10
 * file, freed by the caller with free()) after the same read-back check.
 * A UID that is not 1 to 64 digits and dots (no empty component, no
 * leading zero) is an E_ARG error. opt may be NULL. */
SEGMAMBA_API segmamba_status segmamba_dicom_encode_seg(const segmamba_dicom_source *source,
                                                       const segmamba_card *card,
                                                       const segmamba_prediction *p,
                                                       const segmamba_dicom_seg_options *opt,
                                                       unsigned char **data, size_t *size);

/* ---- Metrics (Dice and HD95 in mm, as medpy computes them) ---- */

/* A region is a set of labels, e.g. BraTS TC = {1, 3}. */
typedef struct segmamba_region {
    char name[32];
    uint8_t member[256]; /* member[label] != 0 when the label belongs to the region */
} segmamba_region;

typedef struct segmamba_region_score {
    double dice;
    double hd95;    /* mm */
    int64_t n_pred; /* voxels of the region in the prediction */
    int64_t n_ref;  /* ... and in the reference */
} segmamba_region_score;

/* The official rule: prediction or reference empty gives Dice 0, HD95 50. */
#define SEGMAMBA_HD95_EMPTY 50.0

/* Fills a region named name from n labels. */
SEGMAMBA_API void segmamba_region_init(segmamba_region *r, const char *name, const uint8_t *labels,
                                       int n);

/* The three BraTS regions: TC = {1, 3}, WT = {1, 2, 3}, ET = {3}. */
SEGMAMBA_API void segmamba_region_init_brats(segmamba_region out[3]);

/* Dice and HD95 of each region of two (d, h, w) label maps, spacing in mm
 * along (D, H, W). A region empty in the prediction or the reference scores
 * Dice 0 and HD95 50; with empty_both_one, one empty in both scores 1 and 0. */
SEGMAMBA_API segmamba_status segmamba_score_regions(const uint8_t *pred, const uint8_t *ref, int d,
                                                    int h, int w, const double spacing[3],
                                                    const segmamba_region *regions, int n,
                                                    int empty_both_one, segmamba_region_score *out);

/* The same for two binary masks (nonzero = inside). */
SEGMAMBA_API segmamba_status segmamba_score_masks(const uint8_t *pred, const uint8_t *ref, int d,
                                                  int h, int w, const double spacing[3],
                                                  int empty_both_one, segmamba_region_score *out);

/* ---- Previews ---- */

/* A PNG of axial, coronal and sagittal slices through the foreground's
 * centre of mass: image's first channel in grey (0.5 to 99.5 percentile
 * window), labels (d*h*w, or NULL) as a colour overlay with a legend;
 * label_names[l - 1] names label l (NULL: "LABEL l"). Written atomically. */
SEGMAMBA_API segmamba_status segmamba_preview_write(const char *path, const segmamba_volume *image,
                                                    const uint8_t *labels,
                                                    const char *const *label_names, int n_labels);

#ifdef __cplusplus
}
#endif
#endif
