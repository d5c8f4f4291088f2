/* A PNG preview of a segmentation: axial, coronal and sagittal slices
 * through the centre of mass of the foreground (the volume centre when there
 * is none), the image in grey with the labels as a translucent colour
 * overlay, and a legend. Slices are shown in stored voxel order (not
 * reoriented), the D axis pointing up in the coronal and sagittal views,
 * and scaled to the voxel spacing (nearest neighbour), so mm look square. */
#ifndef SM_PREVIEW_H
#define SM_PREVIEW_H

#include <stdint.h>

#include "clinical/volume.h"

/* image: its first channel is shown, windowed to its 0.5 and 99.5
 * percentiles. labels: d*h*w label values (0 background) in image's (D, H, W)
 * order, or NULL for no overlay. label_names[l - 1] names label l for
 * l = 1..n_labels (NULL entries, or labels above n_labels that occur, are
 * shown as "LABEL l"). Labels 1, 2, 3 are red, green and yellow (BraTS NCR,
 * ED, ET). Written atomically. */
sm_status sm_preview_write(const char *path, const sm_volume *image, const uint8_t *labels,
                           const char *const *label_names, int n_labels);

#endif
