/* One case of `segmamba predict` (case.h): inputs, card and models,
 * checks, outputs; shared by predict.c and cohort.c. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "case.h"
#include "out.h"

/* ---- input names against the card --------------------------------------- */

/* The channel a file name announces: the part between the last '-' or '_'
 * and ".nii[.gz]", with the BraTS 2021 names mapped to 2023's. NULL when
 * the name has no such part. */
static const char *channel_of_file(const char *path, char *buf, size_t cap)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t len = strlen(base);
    if (len > 7 && strcmp(base + len - 7, ".nii.gz") == 0)
        len -= 7;
    else if (len > 4 && strcmp(base + len - 4, ".nii") == 0)
        len -= 4;
    else
        return NULL;
    size_t start = len;
    while (start > 0 && base[start - 1] != '-' && base[start - 1] != '_') start--;
    if (start == 0 || len - start == 0 || len - start >= cap) return NULL;
    memcpy(buf, base + start, len - start);
    buf[len - start] = '\0';
    static const char *const alias[][2] = {
        {"t1", "t1n"}, {"t1ce", "t1c"}, {"t2", "t2w"}, {"flair", "t2f"}};
    for (size_t i = 0; i < sizeof alias / sizeof alias[0]; i++)
        if (strcmp(buf, alias[i][0]) == 0) return alias[i][1];
    return buf;
}

static int card_channel_index(const segmamba_card *card, const char *name)
{
    for (int c = 0; c < card->n_channels; c++)
        if (strcmp(card->channels[c], name) == 0) return c;
    return -1;
}

const char *case_channel_list(const segmamba_card *card, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int c = 0; c < card->n_channels && used < cap; c++)
        used += (size_t)snprintf(buf + used, cap - used, " %s", card->channels[c]);
    return buf;
}

segmamba_status case_check_names(const segmamba_card *card, const char *const *in, int n)
{
    if (n != card->n_channels) return SEGMAMBA_OK;
    for (int i = 0; i < n; i++) {
        char buf[SEGMAMBA_CARD_NAME_MAX];
        const char *ch = channel_of_file(in[i], buf, sizeof buf);
        const int at = ch ? card_channel_index(card, ch) : -1;
        if (at >= 0 && at != i) {
            char list[SEGMAMBA_CARD_MAX_CHANNELS * SEGMAMBA_CARD_NAME_MAX];
            return cli_error(SEGMAMBA_E_ARG,
                             "input %d (%s) looks like channel '%s', but the model card (%s) "
                             "wants '%s' there; give the inputs in the order%s",
                             i + 1, in[i], ch, card->origin, card->channels[i],
                             case_channel_list(card, list, sizeof list));
        }
    }
    return SEGMAMBA_OK;
}

segmamba_status case_check_channels(const segmamba_card *card, const segmamba_volume *vol,
                                    const char *first)
{
    if (vol->c == card->n_channels) return SEGMAMBA_OK;
    char list[SEGMAMBA_CARD_MAX_CHANNELS * SEGMAMBA_CARD_NAME_MAX];
    return cli_error(SEGMAMBA_E_ARG, "%s holds %d channels; the model card (%s) wants %d:%s", first,
                     vol->c, card->origin, card->n_channels,
                     case_channel_list(card, list, sizeof list));
}

segmamba_status case_load_card(const char *model, const char *card_path,
                               const segmamba_options *opts, segmamba_card *card,
                               segmamba_model **m)
{
    /* --card: the model is opened later (case_open_model), after the
     * outputs are checked. */
    *m = NULL;
    if (card_path) return segmamba_card_load(card_path, card);
    int generic = 0;
    segmamba_status st = segmamba_open_with_card(model, NULL, opts, m, card, &generic);
    if (st != SEGMAMBA_OK) return st;
    if (generic) {
        char list[SEGMAMBA_CARD_MAX_CHANNELS * SEGMAMBA_CARD_NAME_MAX];
        fprintf(stderr,
                "segmamba: %s has no model card and takes %d input channels (not BraTS's 4): "
                "using a generic card (channels%s, zscore, the input's spacing, patch %dx%dx%d, "
                "%s); give --card for anything else\n",
                model, card->n_channels, case_channel_list(card, list, sizeof list), card->patch[0],
                card->patch[1], card->patch[2],
                card->output == SEGMAMBA_OUTPUT_SIGMOID ? "one sigmoid, labels 0/1"
                                                        : "argmax over the outputs");
    }
    return SEGMAMBA_OK;
}

segmamba_status case_load_cards(const char *const *models, int n, const char *card_path,
                                const segmamba_options *opts, segmamba_card *card,
                                segmamba_model **m)
{
    segmamba_status st = SEGMAMBA_OK;
    for (int i = 0; i < n && st == SEGMAMBA_OK; i++) {
        segmamba_card other;
        st = case_load_card(models[i], card_path, opts, i ? &other : card, &m[i]);
        char why[512];
        if (st == SEGMAMBA_OK && i > 0 && segmamba_card_differs(card, &other, why, sizeof why))
            st = cli_error(SEGMAMBA_E_ARG,
                           "%s and %s have different model cards (%s vs %s): %s; an ensemble "
                           "runs one card (or give --card)",
                           models[0], models[i], card->origin, other.origin, why);
    }
    if (st != SEGMAMBA_OK) case_close_models(m, n);
    return st;
}

segmamba_status case_open_models(const char *const *models, int n, const segmamba_card *card,
                                 const segmamba_options *opts, segmamba_model **m)
{
    segmamba_status st = SEGMAMBA_OK;
    segmamba_config first;
    for (int i = 0; i < n && st == SEGMAMBA_OK; i++) {
        st = case_open_model(models[i], card, opts, &m[i]);
        if (st != SEGMAMBA_OK) break;
        segmamba_config cfg;
        segmamba_get_config(m[i], i ? &cfg : &first);
        char why[512];
        if (i > 0 && segmamba_config_differs(&first, &cfg, why, sizeof why))
            st = cli_error(SEGMAMBA_E_MODEL,
                           "%s and %s are not one network: %s; an ensemble averages "
                           "checkpoints of one architecture",
                           models[0], models[i], why);
    }
    if (st != SEGMAMBA_OK) case_close_models(m, n);
    return st;
}

void case_close_models(segmamba_model **m, int n)
{
    for (int i = 0; i < n; i++) {
        segmamba_close(m[i]);
        m[i] = NULL;
    }
}

segmamba_status case_check_regions(const segmamba_card *card, int want_regions)
{
    const int brats = (card->output == SEGMAMBA_OUTPUT_ARGMAX && card->n_labels == 4) ||
                      (card->output == SEGMAMBA_OUTPUT_REGIONS && card->n_regions == 0);
    if (want_regions && !brats)
        return cli_error(SEGMAMBA_E_ARG,
                         "--regions needs a BraTS model (labels background, NCR, "
                         "ED, ET); the model card (%s) has other labels",
                         card->origin);
    return SEGMAMBA_OK;
}

segmamba_status case_open_model(const char *model, const segmamba_card *card,
                                const segmamba_options *opts, segmamba_model **m)
{
    segmamba_status st = *m ? SEGMAMBA_OK : segmamba_open_for_card(model, card, opts, m);
    if (st == SEGMAMBA_OK) st = segmamba_card_check_model(card, *m);
    if (st != SEGMAMBA_OK) {
        segmamba_close(*m);
        *m = NULL;
    }
    return st;
}

static int is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

segmamba_status case_read_input(const char *const *in, int n, const char *const *series,
                                int n_series, segmamba_volume *vol, segmamba_dicom_source **src)
{
    *src = NULL;
    int dirs = 0;
    for (int i = 0; i < n; i++) dirs += is_dir(in[i]);
    if (dirs && dirs != n)
        return cli_error(SEGMAMBA_E_ARG, "the inputs mix DICOM folders and files; give one "
                                         "or the other");
    if (!dirs && n_series)
        return cli_error(SEGMAMBA_E_ARG, "--series is for DICOM folders, not %s", in[0]);
    segmamba_status st;
    if (dirs) {
        if (n_series && n_series != n && n != 1)
            return cli_error(SEGMAMBA_E_ARG,
                             "%d folders and %d --series UIDs: give one UID per "
                             "folder, or one folder",
                             n, n_series);
        const char *dir[SEGMAMBA_CARD_MAX_CHANNELS];
        const int channels = n_series > n ? n_series : n;
        for (int i = 0; i < channels; i++) dir[i] = in[n == 1 ? 0 : i];
        st = segmamba_dicom_read(dir, n_series ? series : NULL, channels, vol, src);
    } else {
        st = segmamba_nifti_read_channels(in, n, vol);
    }
    if (st == SEGMAMBA_OK) st = segmamba_volume_check_finite(vol, in, n);
    if (st != SEGMAMBA_OK) {
        segmamba_volume_free(vol);
        segmamba_dicom_source_free(*src);
        *src = NULL;
    }
    return st;
}

segmamba_status case_write_outputs(const case_outputs *o, const segmamba_card *card,
                                   const segmamba_volume *vol, const segmamba_prediction *p,
                                   const segmamba_dicom_source *src)
{
    /* A sigmoid card without a label map: the masks, one volume each. */
    segmamba_status st = segmamba_card_get_writes_masks(card)
                             ? segmamba_nifti_write_u8(o->seg, &vol->geom, p->masks, p->n_masks)
                             : segmamba_nifti_write_u8(o->seg, &vol->geom, p->labels, 1);
    if (st == SEGMAMBA_OK && o->prob)
        st = segmamba_nifti_write_f32(o->prob, &vol->geom, p->probabilities, p->n_prob);
    if (st == SEGMAMBA_OK && o->regions)
        st = segmamba_nifti_write_u8(o->regions, &vol->geom, p->regions, 3);
    if (st == SEGMAMBA_OK && o->unc)
        st = segmamba_nifti_write_f32(o->unc, &vol->geom, p->uncertainty, 1);
    if (st == SEGMAMBA_OK && o->preview) {
        const char *names[SEGMAMBA_CARD_MAX_LABELS];
        for (int l = 1; l < card->n_labels; l++) names[l - 1] = card->labels[l];
        st = segmamba_preview_write(o->preview, vol, p->labels, names, card->n_labels - 1);
    }
    if (st == SEGMAMBA_OK && o->dicom_seg)
        st = segmamba_dicom_write_seg(o->dicom_seg, src, card, p);
    return st;
}
