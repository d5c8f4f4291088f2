/* Helpers shared by the CLI's commands (src/cli/). */
#ifndef SM_CLI_H
#define SM_CLI_H

#include <stdio.h>

#include "segmamba.h"
#include "out.h"
#include "segmamba_pipeline.h"

double cli_now(void);

/* Opens a model with its own card (segmamba_open_with_card); card (may be
 * NULL) receives it. */
segmamba_status cli_open_model(const char *path, const segmamba_options *opts, segmamba_card *card,
                               segmamba_model **m);

/* Prints the message for st (the CLI's own, else the library's); returns st
 * as the exit code. */
int cli_fail(segmamba_status st);

/* After cli_catch_interrupt, a Ctrl-C (SIGINT) makes cli_interrupted()
 * return 1 instead of ending the process: long work (predict) then stops
 * at the next window and writes nothing. A second Ctrl-C ends the process. */
void cli_catch_interrupt(void);
int cli_interrupted(void);

/* Prints a usage error (fmt with one %s); returns exit code 1. */
int cli_usage_error(const char *fmt, const char *arg);

/* Each returns 1 on success, 0 if s is not a valid value. */
int cli_parse_int(const char *s, int lo, int hi, int *out);
int cli_parse_nslices(const char *s, int out[SEGMAMBA_STAGES]);
/* The --conv values, as cli_parse_conv takes them: winograd2, winograd3 and
 * winograd4 are winograd with that output tile on every layer. */
#define CLI_CONV_KINDS "auto, winograd, winograd2, winograd3, winograd4, onednn, blas or ref"
int cli_parse_conv(const char *s, segmamba_options *opts);
/* fp32, bf16 (CPU convolutions) or tf32 (CUDA GEMMs): sets opts->bf16 and tf32. */
int cli_parse_precision(const char *s, segmamba_options *opts);
int cli_parse_backend(const char *s, segmamba_backend *out);

/* Tells the user when bf16 or tf32 was asked for but the model runs fp32. */
void cli_precision_notice(const segmamba_options *opts, const segmamba_config *c);

/* The commands besides info and forward (main.c): each parses its own
 * arguments and returns the exit code. */
int cmd_bench(int argc, char **argv);
void usage_bench(FILE *f);
int cmd_predict(int argc, char **argv); /* predict.c: NIfTI in, label map out */
void usage_predict(FILE *f);
int cmd_convert(int argc, char **argv); /* convert.c: checkpoint + card -> safetensors */
void usage_convert(FILE *f);
int cmd_metrics(int argc, char **argv); /* metrics.c: Dice and HD95 */
void usage_metrics(FILE *f);
int cmd_preview(int argc, char **argv); /* preview.c: PNG of three slices */
void usage_preview(FILE *f);

/* The model card as indented text lines, for `segmamba info` (the JSON
 * form is segmamba_card_format_json). */
void cli_print_card(FILE *f, const segmamba_card *card);

#endif
