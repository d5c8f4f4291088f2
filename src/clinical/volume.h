/* Volumes and their geometry (segmamba_pipeline.h: segmamba_volume), and the
 * internal helpers around them. (D, H, W) is the file's stored voxel order
 * (nz, ny, nx) (spec section 1: never reoriented). */
#ifndef SM_VOLUME_H
#define SM_VOLUME_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "segmamba_pipeline.h"

void sm_geometry_free(segmamba_geometry *g);
sm_status sm_geometry_copy(const segmamba_geometry *src, segmamba_geometry *dst);

#endif
