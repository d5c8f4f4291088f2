/* The .pt reader on arbitrary bytes: the zip directory, the data-only
 * pickle machine, storages and tensor views. */
#include "fuzz.h"
#include "io/pt.h"

SM_FUZZ_INIT_CAP_ONLY

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sm_weights w = {0};
    sm_fuzz_expect_message(sm_load_pt_memory(data, size, "fuzz.pt", &w), "fuzz.pt");
    sm_weights_free(&w);
    return 0;
}
