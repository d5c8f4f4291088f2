/* The .pt reader on arbitrary bytes: the zip directory, the data-only
 * pickle machine, storages and tensor views. */
#include "fuzz.h"
#include "weights.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    segmamba_set_max_memory(SM_FUZZ_MAX_MEMORY);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sm_weights w = {0};
    sm_fuzz_expect_message(sm_load_pt_memory(data, size, "fuzz.pt", &w), "fuzz.pt");
    sm_weights_free(&w);
    return 0;
}
