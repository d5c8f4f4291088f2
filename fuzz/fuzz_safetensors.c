/* The safetensors reader on arbitrary bytes: header length, the JSON
 * parser, dtypes, shapes and data offsets, metadata. */
#include "fuzz.h"
#include "io/safetensors.h"

SM_FUZZ_INIT_CAP_ONLY

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sm_weights w = {0};
    const char *origin = "fuzz.safetensors";
    sm_fuzz_expect_message(sm_load_safetensors_memory(data, size, origin, &w), origin);
    sm_weights_free(&w);
    return 0;
}
