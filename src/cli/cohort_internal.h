/* What the cohort's files (cohort.c: set-up, one case and the command;
 * cohort_list.c: the case list; cohort_summary.c: scores and summary.csv)
 * share. Private to them: predict.c and cohort_mpi.c see cohort.h only. */
#ifndef SM_CLI_COHORT_INTERNAL_H
#define SM_CLI_COHORT_INTERNAL_H

#include <stdint.h>

#include "cli.h"
#include "cohort.h"

typedef struct cohort_case {
    const char *id;
    char *inputs[SEGMAMBA_CARD_MAX_CHANNELS]; /* NULL for an empty cell */
    char *ref;                                /* NULL without a reference */
    int line;                                 /* in the list, for messages */
} cohort_case;

struct cohort {
    cohort_options o;
    int leader;
    segmamba_card card;
    segmamba_model *models[CASE_MAX_MODELS]; /* o.n_models of them */
    char *text;                              /* the list, parsed in place: ids point into it */
    cohort_case *cases;
    int n, n_inputs;
    segmamba_region regions[COHORT_MAX_REGIONS];
    int n_regions;
    /* leader only */
    cohort_result *results;
    char *summary;
    int recorded, summary_failed;
};

/* a sep b ext, malloc'd; NULL when out of memory. */
char *cohort_join(const char *a, const char *sep, const char *b, const char *ext);

/* cohort_list.c: reads and checks c->o.list against c->card; fills
 * c->text, c->cases, c->n and c->n_inputs. */
segmamba_status cohort_load_list(cohort *c);

/* cohort_summary.c */
/* Dice and HD95 of labels (with geometry geom) against the case's
 * reference. */
segmamba_status cohort_score(const cohort *c, const cohort_case *cs, const uint8_t *labels,
                             const segmamba_geometry *geom, cohort_result *r);
/* Metrics of a skipped case, from the label map seg it already has. */
segmamba_status cohort_score_existing(const cohort *c, const cohort_case *cs, const char *seg,
                                      cohort_result *r);
/* Rewrites c->summary from the results recorded so far. */
segmamba_status cohort_write_summary(cohort *c);

#endif
