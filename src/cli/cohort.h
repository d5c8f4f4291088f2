/* Cohort mode of `segmamba predict --list`: the cases of a CSV list through
 * one loaded model, a summary CSV written as it goes, and (with MPI) the
 * cases shared across ranks. CLI only: the library never sees MPI. */
#ifndef SM_CLI_COHORT_H
#define SM_CLI_COHORT_H

#include "sm_cli_config.h"
#include "segmamba.h"
#include "segmamba_pipeline.h"

/* ---- what predict.c shares with cohort mode ---- */

/* A case's output files; NULL for an output not wanted. */
typedef struct predict_outputs {
    const char *seg, *prob, *regions, *unc, *preview, *dicom_seg;
} predict_outputs;

/* The case's volume from its inputs: n NIfTI files (segmamba_nifti_read_channels),
 * or n DICOM folders (segmamba_dicom_read; the inputs must be all files or
 * all folders) with n_series Series Instance UIDs (0: each folder's only
 * image series; n: one per folder; one folder and n_series > 1: that many
 * series of it, one per channel). *src (DICOM only, else NULL) is freed with
 * segmamba_dicom_source_free. Checks the values are finite. */
segmamba_status predict_read_input(const char *const *in, int n, const char *const *series,
                                   int n_series, segmamba_volume *vol,
                                   segmamba_dicom_source **src);

/* The card from --card (the model is opened later: *m NULL), else the
 * model's own, the model opened with it into *m (segmamba_open_with_card: a
 * checkpoint without a card that is no BraTS model gets the generic card,
 * with a note on stderr). */
segmamba_status predict_load_card(const char *model, const char *card_path,
                                  const segmamba_options *conv, segmamba_card *card,
                                  segmamba_model **m);

/* --model given more than once: an ensemble of up to this many. */
#define PREDICT_MAX_MODELS 16

/* An ensemble's card and models: predict_load_card for each; their cards
 * must agree (E_ARG naming the two models and the difference). With n == 1
 * this is predict_load_card. */
segmamba_status predict_load_cards(const char *const *models, int n, const char *card_path,
                                   const segmamba_options *conv, segmamba_card *card,
                                   segmamba_model **m);

/* predict_open_model for each model, then the models must be one network
 * (E_MODEL naming the two and the difference); on failure all are closed. */
segmamba_status predict_open_models(const char *const *models, int n, const segmamba_card *card,
                                    const segmamba_options *conv, segmamba_model **m);

/* Closes n models and sets them to NULL. */
void predict_close_models(segmamba_model **m, int n);

/* E_ARG when --regions is asked of a model that is not a BraTS one. */
segmamba_status predict_check_regions(const segmamba_card *card, int want_regions);

/* Refuses (E_ARG) a file named after another card channel than the one
 * its position stands for (swapped modalities segment confidently wrong). */
segmamba_status predict_check_names(const segmamba_card *card, const char *const *in, int n);

/* E_ARG when the volume read does not hold the card's channels. */
segmamba_status predict_check_channels(const segmamba_card *card, const segmamba_volume *vol, const char *first);

/* Opens the model with the card's nslices and FUE (unless *m is open
 * already) and checks the card against it; on failure *m is closed. */
segmamba_status predict_open_model(const char *model, const segmamba_card *card, const segmamba_options *conv,
                             segmamba_model **m);

/* Writes the outputs that are not NULL, the label map first. */
segmamba_status predict_write_outputs(const predict_outputs *o, const segmamba_card *card,
                                const segmamba_volume *vol, const segmamba_prediction *p,
                                const segmamba_dicom_source *src);

/* ---- cohort mode ---- */

typedef struct cohort_options {
    const char *models[PREDICT_MAX_MODELS]; /* --model, once or more: an ensemble */
    int n_models;
    const char *card, *list, *out_dir, *ref_column;
    int want_prob, want_regions, want_unc, want_preview, want_dicom_seg;
    int overwrite, no_tta, threads, quiet;
    double overlap; /* as segmamba_predict_options.overlap */
    segmamba_options conv; /* --conv: its conv and winograd_tile */
} cohort_options;

/* predict --list: returns the exit code (0 when every case succeeded, else
 * the status of the first failed case in list order). */
int cohort_main(const cohort_options *o);

/* What became of one case; plain data, so that MPI ranks send it as bytes
 * (every rank runs the same build). */
#define COHORT_MAX_REGIONS SEGMAMBA_CARD_MAX_LABELS
#define COHORT_ERROR_MAX 1024

typedef enum cohort_state { COHORT_PENDING = 0, COHORT_OK, COHORT_SKIPPED, COHORT_FAILED } cohort_state;

typedef struct cohort_result {
    int index; /* row of the list, from 0; -1: no case (a rank's first request) */
    int state; /* cohort_state */
    int code;  /* segmamba_status of the error, 0 when none */
    int scored; /* the metrics below are set */
    double seconds;
    double dice[COHORT_MAX_REGIONS], hd95[COHORT_MAX_REGIONS];
    char error[COHORT_ERROR_MAX];
} cohort_result;

typedef struct cohort cohort;

/* Loads the card, the list and the model. The leader (the only process, or
 * rank 0) also creates the output folders and starts the summary. */
segmamba_status cohort_open(const cohort_options *o, int leader, cohort **out);
void cohort_close(cohort *c);
int cohort_size(const cohort *c);

/* Runs case `index`; poll (may be NULL) is called after every network
 * window, so that rank 0 can hand out work while it computes. */
typedef void (*cohort_poll_fn)(void *user);
void cohort_run_case(cohort *c, int index, cohort_result *r, cohort_poll_fn poll, void *user);

/* Leader only: stores a result, prints its line (naming the rank that ran
 * it, unless rank < 0), rewrites the summary. */
void cohort_record(cohort *c, const cohort_result *r, int rank);

/* Leader only: the final summary and totals; returns the exit code. */
int cohort_finish(cohort *c, double seconds, int ranks);

/* 1 when this process was started by an MPI launcher (mpirun, srun). */
int cohort_under_mpi_launcher(void);

#if SM_HAVE_MPI
/* cohort_mpi.c: the whole cohort run across the ranks of MPI_COMM_WORLD. */
int cohort_mpi_main(const cohort_options *o);
#endif

#endif
