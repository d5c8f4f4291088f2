/* What every fuzz target shares: libFuzzer's entry points, and the one
 * property checked beyond "no crash, leak or undefined behaviour": a
 * refusal always comes with a message naming the file. */
#ifndef SM_FUZZ_H
#define SM_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "segmamba.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A declared size past this is refused (E_NOMEM) before allocation, well
 * below libFuzzer's default 2 GiB malloc limit, so that the cap is what the
 * fuzzer meets, not the limit. */
#define SM_FUZZ_MAX_MEMORY ((uint64_t)256 << 20)

/* LLVMFuzzerInitialize of a target that needs nothing but the cap. */
#define SM_FUZZ_INIT_CAP_ONLY                                                                      \
    int LLVMFuzzerInitialize(int *argc, char ***argv)                                              \
    {                                                                                              \
        (void)argc;                                                                                \
        (void)argv;                                                                                \
        segmamba_set_max_memory(SM_FUZZ_MAX_MEMORY);                                               \
        return 0;                                                                                  \
    }

/* Where a target that needs its input as a file writes it: /dev/shm when
 * writable (no disk traffic), else $TMPDIR, else /tmp. */
static inline const char *sm_fuzz_scratch_dir(void)
{
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    return dir ? dir : "/tmp";
}

/* Writes the input to path, or aborts: the harness, not the input, failed. */
static inline void sm_fuzz_write_file(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

static inline void sm_fuzz_expect_message(segmamba_status st, const char *origin)
{
    if (st == SEGMAMBA_OK) return;
    const char *msg = segmamba_get_last_error();
    if (!strstr(msg, origin)) {
        fprintf(stderr, "refusal (%s) without the file's name: '%s'\n",
                segmamba_get_status_name(st), msg);
        abort();
    }
}

#endif
