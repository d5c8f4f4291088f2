/* The cohort's case list (predict --list) on arbitrary bytes: the RFC 4180
 * reader (src/cli/csv.c) and the list's checks against a model card
 * (src/cli/cohort_list.c: columns, ids, relative paths, duplicates), here
 * the BraTS card's four channels and a reference column. */
#include "fuzz.h"
#include "cohort_internal.h"

static char path[256];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    segmamba_set_max_memory(SM_FUZZ_MAX_MEMORY);
    snprintf(path, sizeof path, "%s/segmamba-fuzz-%ld.csv", sm_fuzz_scratch_dir(), (long)getpid());
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sm_fuzz_write_file(path, data, size);
    cohort *c = calloc(1, sizeof *c);
    if (!c) abort();
    segmamba_card_init_default(&c->card);
    c->o.list = path;
    c->o.ref_column = "seg";
    const segmamba_status st = cohort_load_list(c);
    if (st != SEGMAMBA_OK && !strstr(cli_last_error(), path)) {
        fprintf(stderr, "refusal (%s) without the file's name: '%s'\n",
                segmamba_get_status_name(st), cli_last_error());
        abort();
    }
    /* A list that loads names a case per row, each with its four inputs. */
    for (int i = 0; st == SEGMAMBA_OK && i < c->n; i++)
        if (!c->cases[i].id || !c->cases[i].id[0]) {
            fprintf(stderr, "case %d loaded without an id\n", i);
            abort();
        }
    cli_error_clear();
    cohort_close(c);
    remove(path);
    return 0;
}
