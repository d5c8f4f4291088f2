/* The .npy reader on arbitrary bytes: version, header dict, dtype, shape,
 * Fortran order; then the finiteness check forward applies to inputs. */
#include "fuzz.h"
#include "io/npy.h"

SM_FUZZ_INIT_CAP_ONLY

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    segmamba_array a;
    segmamba_status st = sm_npy_parse(data, size, "fuzz.npy", &a);
    if (st == SEGMAMBA_OK) st = segmamba_array_check_finite(&a, "fuzz.npy");
    sm_fuzz_expect_message(st, "fuzz.npy");
    segmamba_array_free(&a);
    return 0;
}
