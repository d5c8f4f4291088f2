/* The in-memory DICOM entry (segmamba_dicom_read_memory, what the Orthanc
 * plugin feeds with a series' instances) on arbitrary bytes. An input is a
 * list of objects, each a 4-byte little-endian length and that many bytes;
 * a length past the end gives the rest of the input as the last object, so
 * every input means something. The first byte picks the channels: the
 * objects are dealt to 1 + (byte % 3) channels in turn, which must then
 * share a geometry. A volume that reads goes on to the finiteness check as
 * predict's volumes do. */
#include "fuzz.h"
#include "segmamba_pipeline.h"

#define MAX_OBJECTS 64
#define MAX_CHANNELS 3

SM_FUZZ_INIT_CAP_ONLY

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const int n_channels = 1 + data[0] % MAX_CHANNELS;
    segmamba_dicom_object objects[MAX_CHANNELS][MAX_OBJECTS];
    int counts[MAX_CHANNELS] = {0};
    size_t at = 1;
    for (int k = 0; at < size && k < MAX_OBJECTS * MAX_CHANNELS; k++) {
        size_t len = size - at;
        if (size - at >= 4) {
            const uint32_t l = (uint32_t)data[at] | (uint32_t)data[at + 1] << 8 |
                               (uint32_t)data[at + 2] << 16 | (uint32_t)data[at + 3] << 24;
            at += 4;
            len = l <= size - at ? l : size - at;
        }
        const int c = k % n_channels;
        if (counts[c] == MAX_OBJECTS) break;
        objects[c][counts[c]++] = (segmamba_dicom_object){data + at, len, NULL};
        at += len;
    }
    const segmamba_dicom_object *channels[MAX_CHANNELS] = {objects[0], objects[1], objects[2]};
    segmamba_volume v;
    segmamba_dicom_source *src = NULL;
    const segmamba_status st = segmamba_dicom_read_memory(channels, counts, n_channels, &v, &src);
    /* A refusal names the objects: "DICOM objects ..." or one object by its
     * default name, "DICOM objects of channel N, object K". */
    sm_fuzz_expect_message(st, "DICOM objects");
    if (st == SEGMAMBA_OK) {
        if (segmamba_volume_check_finite(&v, NULL, 0) != SEGMAMBA_OK &&
            !*segmamba_get_last_error()) {
            fprintf(stderr, "a volume refused as not finite without a message\n");
            abort();
        }
        char why[256];
        if (segmamba_geometry_differs(&v.geom, &v.geom, why, sizeof why)) {
            fprintf(stderr, "a geometry differs from itself: %s\n", why);
            abort();
        }
    }
    segmamba_dicom_source_free(src);
    segmamba_volume_free(&v);
    return 0;
}
