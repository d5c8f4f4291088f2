/* Cohort mode of `segmamba predict --list`: the cases of a CSV list through
 * one loaded model, a summary CSV written as it goes, and (with MPI) the
 * cases shared across ranks. CLI only: the library never sees MPI. */
#ifndef SM_CLI_COHORT_H
#define SM_CLI_COHORT_H

#include "case.h"
#include "segmamba.h"
#include "segmamba_pipeline.h"
#include "sm_cli_config.h"

typedef struct cohort_options {
    const char *models[CASE_MAX_MODELS]; /* --model, once or more: an ensemble */
    int n_models;
    const char *card, *list, *out_dir, *ref_column;
    int want_prob, want_regions, want_unc, want_preview, want_dicom_seg;
    int overwrite, no_tta, threads, quiet;
    double overlap;              /* as segmamba_predict_options.overlap */
    segmamba_options model_opts; /* how models are opened: --conv, --backend */
} cohort_options;

/* predict --list: returns the exit code (0 when every case succeeded, else
 * the status of the first failed case in list order). */
int cohort_main(const cohort_options *o);

/* What became of one case; plain data, so that MPI ranks send it as bytes
 * (every rank runs the same build). */
#define COHORT_MAX_REGIONS SEGMAMBA_CARD_MAX_LABELS
#define COHORT_ERROR_MAX 1024

typedef enum cohort_state {
    COHORT_PENDING = 0,
    COHORT_OK,
    COHORT_SKIPPED,
    COHORT_FAILED
} cohort_state;

typedef struct cohort_result {
    int index;  /* row of the list, from 0; -1: no case (a rank's first request) */
    int state;  /* cohort_state */
    int code;   /* segmamba_status of the error, 0 when none */
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
