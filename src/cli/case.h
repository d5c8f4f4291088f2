/* One case of `segmamba predict`: reading its inputs, loading the card and
 * opening the model (or ensemble), the checks of inputs against the card,
 * and writing the outputs. predict.c (one case) and cohort.c (a list of
 * them) both use it; it uses neither. */
#ifndef SM_CLI_CASE_H
#define SM_CLI_CASE_H

#include "segmamba.h"
#include "segmamba_pipeline.h"

/* --model given more than once: an ensemble of up to this many. */
#define CASE_MAX_MODELS 16

/* A case's output files; NULL for an output not wanted. */
typedef struct case_outputs {
    const char *seg, *prob, *regions, *unc, *preview, *dicom_seg;
} case_outputs;

/* The case's volume from its inputs: n NIfTI files (segmamba_nifti_read_channels),
 * or n DICOM folders (segmamba_dicom_read; the inputs must be all files or
 * all folders) with n_series Series Instance UIDs (0: each folder's only
 * image series; n: one per folder; one folder and n_series > 1: that many
 * series of it, one per channel). *src (DICOM only, else NULL) is freed with
 * segmamba_dicom_source_free. Checks the values are finite. */
segmamba_status case_read_input(const char *const *in, int n, const char *const *series,
                                int n_series, segmamba_volume *vol, segmamba_dicom_source **src);

/* The card from --card (the model is opened later: *m NULL), else the
 * model's own, the model opened with it into *m (segmamba_open_with_card: a
 * checkpoint without a card that is no BraTS model gets the generic card,
 * with a note on stderr). opts: how models are opened (--conv, --backend). */
segmamba_status case_load_card(const char *model, const char *card_path,
                               const segmamba_options *opts, segmamba_card *card,
                               segmamba_model **m);

/* An ensemble's card and models: case_load_card for each; their cards must
 * agree (E_ARG naming the two models and the difference). With n == 1 this
 * is case_load_card. */
segmamba_status case_load_cards(const char *const *models, int n, const char *card_path,
                                const segmamba_options *opts, segmamba_card *card,
                                segmamba_model **m);

/* Opens the model with the card's nslices and FUE (unless *m is open
 * already) and checks the card against it; on failure *m is closed. */
segmamba_status case_open_model(const char *model, const segmamba_card *card,
                                const segmamba_options *opts, segmamba_model **m);

/* case_open_model for each model, then the models must be one network
 * (E_MODEL naming the two and the difference); on failure all are closed. */
segmamba_status case_open_models(const char *const *models, int n, const segmamba_card *card,
                                 const segmamba_options *opts, segmamba_model **m);

/* Closes n models and sets them to NULL. */
void case_close_models(segmamba_model **m, int n);

/* E_ARG when --regions is asked of a model that is not a BraTS one. */
segmamba_status case_check_regions(const segmamba_card *card, int want_regions);

/* Refuses (E_ARG) a file named after another card channel than the one
 * its position stands for (swapped modalities segment confidently wrong). */
segmamba_status case_check_names(const segmamba_card *card, const char *const *in, int n);

/* E_ARG when the volume read does not hold the card's channels. */
segmamba_status case_check_channels(const segmamba_card *card, const segmamba_volume *vol,
                                    const char *first);

/* " t2w t2f t1n t1c": the card's channels, for messages. */
const char *case_channel_list(const segmamba_card *card, char *buf, size_t cap);

/* Writes the outputs that are not NULL, the label map first. */
segmamba_status case_write_outputs(const case_outputs *o, const segmamba_card *card,
                                   const segmamba_volume *vol, const segmamba_prediction *p,
                                   const segmamba_dicom_source *src);

#endif
