/* A build without DICOM support (-Ddicom=disabled, or dcmtk not found):
 * the DICOM functions of segmamba_pipeline.h say so. */
#include "clinical/dicom.h"

#define NO_DICOM                                                                                   \
    "this build of segmamba has no DICOM support (rebuild with dcmtk, libdcmtk-dev: "              \
    "meson setup -Ddicom=enabled)"

int segmamba_dicom_get_supported(void) { return 0; }

sm_status segmamba_dicom_read(const char *const *dirs, const char *const *series, int n,
                              segmamba_volume *out, segmamba_dicom_source **source)
{
    (void)series;
    (void)n;
    if (out) {
        segmamba_volume zero = {0};
        *out = zero;
    }
    if (source) *source = NULL;
    return sm_fail(SEGMAMBA_E_UNSUPPORTED, "%s: %s", dirs && n > 0 ? dirs[0] : "DICOM input",
                   NO_DICOM);
}

void segmamba_dicom_source_free(segmamba_dicom_source *source) { (void)source; }

sm_status segmamba_dicom_write_seg(const char *path, const segmamba_dicom_source *source,
                                   const segmamba_card *card, const segmamba_prediction *p)
{
    (void)source;
    (void)card;
    (void)p;
    return sm_fail(SEGMAMBA_E_UNSUPPORTED, "%s: %s", path, NO_DICOM);
}

sm_status segmamba_dicom_read_memory(const segmamba_dicom_object *const *objects, const int *counts,
                                     int n, segmamba_volume *out, segmamba_dicom_source **source)
{
    (void)objects;
    (void)counts;
    (void)n;
    if (out) {
        segmamba_volume zero = {0};
        *out = zero;
    }
    if (source) *source = NULL;
    return sm_fail(SEGMAMBA_E_UNSUPPORTED, "DICOM objects: %s", NO_DICOM);
}

sm_status segmamba_dicom_encode_seg(const segmamba_dicom_source *source, const segmamba_card *card,
                                    const segmamba_prediction *p,
                                    const segmamba_dicom_seg_options *opt, unsigned char **data,
                                    size_t *size)
{
    (void)source;
    (void)card;
    (void)p;
    (void)opt;
    if (data) *data = NULL;
    if (size) *size = 0;
    return sm_fail(SEGMAMBA_E_UNSUPPORTED, "the DICOM SEG: %s", NO_DICOM);
}
