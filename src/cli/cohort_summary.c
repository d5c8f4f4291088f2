/* Cohort scores and summary: a case's Dice and HD95 against its reference,
 * DIR/summary.csv (rewritten atomically after every case), the per-case log
 * line and the totals. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cohort_internal.h"
#include "csv.h"

/* Dice and HD95 of labels (with geometry geom) against the case's
 * reference. */
segmamba_status cohort_score(const cohort *c, const cohort_case *cs, const uint8_t *labels,
                             const segmamba_geometry *geom, cohort_result *r)
{
    segmamba_volume ref = {0};
    uint8_t *lr = NULL;
    segmamba_status st = segmamba_nifti_read(cs->ref, &ref);
    if (st == SEGMAMBA_OK) st = segmamba_volume_get_labels(&ref, cs->ref, &lr);
    char why[256];
    if (st == SEGMAMBA_OK && segmamba_geometry_differs(geom, &ref.geom, why, sizeof why))
        st = cli_error(SEGMAMBA_E_SHAPE, "%s: %s from the case's images", cs->ref, why);
    segmamba_region_score s[COHORT_MAX_REGIONS];
    if (st == SEGMAMBA_OK)
        st = segmamba_score_regions(labels, lr, geom->d, geom->h, geom->w, geom->spacing,
                                    c->regions, c->n_regions, 0, s);
    if (st == SEGMAMBA_OK) {
        for (int k = 0; k < c->n_regions; k++) {
            r->dice[k] = s[k].dice;
            r->hd95[k] = s[k].hd95;
        }
        r->scored = 1;
    }
    free(lr);
    segmamba_volume_free(&ref);
    return st;
}

/* Metrics of a skipped case, from the label map it already has. */
segmamba_status cohort_score_existing(const cohort *c, const cohort_case *cs, const char *seg,
                                      cohort_result *r)
{
    segmamba_volume v = {0};
    uint8_t *labels = NULL;
    segmamba_status st = segmamba_nifti_read(seg, &v);
    if (st == SEGMAMBA_OK) st = segmamba_volume_get_labels(&v, seg, &labels);
    if (st == SEGMAMBA_OK) st = cohort_score(c, cs, labels, &v.geom, r);
    free(labels);
    segmamba_volume_free(&v);
    return st;
}

/* ---- the summary ------------------------------------------------------------ */

static const char *state_name(int s)
{
    return s == COHORT_OK ? "ok" : s == COHORT_SKIPPED ? "skipped" : "failed";
}

static void summary_number(cli_text *o, const char *fmt, double v, int present)
{
    if (present)
        cli_text_printf(o, fmt, v);
    else
        cli_text_printf(o, ",");
}

/* id, status, seconds, error, then with a reference column <region>_dice,
 * <region>_hd95 per region and the case's mean_dice, mean_hd95; the
 * cases done so far in list order, then a row "(mean)" (no id can hold
 * parentheses): mean seconds of the cases segmented, mean metrics of the
 * cases scored. */
segmamba_status cohort_write_summary(cohort *c)
{
    const int nr = c->o.ref_column ? c->n_regions : 0;
    cli_text o;
    segmamba_status st = cli_text_open(&o);
    cli_text_printf(&o, "id,status,seconds,error");
    for (int k = 0; k < nr; k++) {
        char name[64];
        snprintf(name, sizeof name, "%s_dice", c->regions[k].name);
        csv_write_field(&o, name, 0);
        snprintf(name, sizeof name, "%s_hd95", c->regions[k].name);
        csv_write_field(&o, name, 0);
    }
    if (nr) cli_text_printf(&o, ",mean_dice,mean_hd95");
    cli_text_printf(&o, "\n");
    double sum_s = 0, sum_d[COHORT_MAX_REGIONS + 1] = {0}, sum_h[COHORT_MAX_REGIONS + 1] = {0};
    int ran = 0, scored = 0;
    for (int i = 0; i < c->n; i++) {
        const cohort_result *r = &c->results[i];
        if (r->state == COHORT_PENDING) continue;
        csv_write_field(&o, c->cases[i].id, 1);
        cli_text_printf(&o, ",%s", state_name(r->state));
        summary_number(&o, ",%.3f", r->seconds, r->state != COHORT_SKIPPED);
        csv_write_field(&o, r->error, 0);
        if (r->state == COHORT_OK) {
            sum_s += r->seconds;
            ran++;
        }
        double dice[COHORT_MAX_REGIONS + 1], hd95[COHORT_MAX_REGIONS + 1];
        dice[nr] = hd95[nr] = 0;
        for (int k = 0; k < nr; k++) {
            dice[k] = r->dice[k];
            hd95[k] = r->hd95[k];
            dice[nr] += r->dice[k] / nr;
            hd95[nr] += r->hd95[k] / nr;
        }
        for (int k = 0; k <= nr && nr; k++) {
            summary_number(&o, ",%.6f", dice[k], r->scored);
            summary_number(&o, ",%.4f", hd95[k], r->scored);
            if (r->scored) {
                sum_d[k] += dice[k];
                sum_h[k] += hd95[k];
            }
        }
        scored += r->scored;
        cli_text_printf(&o, "\n");
    }
    cli_text_printf(&o, "(mean),mean");
    summary_number(&o, ",%.3f", ran ? sum_s / ran : 0, ran > 0);
    cli_text_printf(&o, ",");
    for (int k = 0; k <= nr && nr; k++) {
        summary_number(&o, ",%.6f", scored ? sum_d[k] / scored : 0, scored > 0);
        summary_number(&o, ",%.4f", scored ? sum_h[k] / scored : 0, scored > 0);
    }
    cli_text_printf(&o, "\n");
    return st == SEGMAMBA_OK ? cli_text_write(&o, c->summary) : st;
}

void cohort_record(cohort *c, const cohort_result *r, int rank)
{
    if (r->index < 0 || r->index >= c->n) return;
    c->results[r->index] = *r;
    c->recorded++;
    const char *id = c->cases[r->index].id;
    if (r->error[0])
        fprintf(stderr, "segmamba: [%d/%d] %s: %s: %s\n", c->recorded, c->n, id,
                r->state == COHORT_FAILED ? "failed" : state_name(r->state), r->error);
    else if (!c->o.quiet && rank < 0)
        fprintf(stderr, "segmamba: [%d/%d] %s: %s in %.1f s\n", c->recorded, c->n, id,
                state_name(r->state), r->seconds);
    else if (!c->o.quiet)
        fprintf(stderr, "segmamba: [%d/%d] %s: %s in %.1f s (rank %d)\n", c->recorded, c->n, id,
                state_name(r->state), r->seconds, rank);
    if (cohort_write_summary(c) != SEGMAMBA_OK) {
        fprintf(stderr, "segmamba: error: %s\n", cli_last_error());
        cli_error_clear();
        c->summary_failed = 1;
    }
}

int cohort_finish(cohort *c, double seconds, int ranks)
{
    int count[4] = {0}, rc = 0;
    for (int i = 0; i < c->n; i++) {
        count[c->results[i].state]++;
        if (!rc && c->results[i].code) rc = c->results[i].code;
    }
    if (!c->o.quiet || count[COHORT_FAILED])
        fprintf(stderr,
                "segmamba: %d cases in %.1f s on %d process%s: %d ok, %d skipped, %d failed; "
                "summary %s\n",
                c->n, seconds, ranks, ranks == 1 ? "" : "es", count[COHORT_OK],
                count[COHORT_SKIPPED], count[COHORT_FAILED], c->summary);
    if (!rc && c->summary_failed) rc = SEGMAMBA_E_IO;
    return rc;
}
