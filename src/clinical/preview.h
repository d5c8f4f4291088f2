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

/* segmamba_preview_write (segmamba_pipeline.h). Labels 1, 2, 3 are red,
 * green and yellow (BraTS NCR, ED, ET). */

#endif
