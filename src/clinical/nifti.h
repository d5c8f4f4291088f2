/* NIfTI-1 / NIfTI-2 input and output through nifticlib (the functions are
 * segmamba_pipeline.h's). Reading keeps the stored voxel order (spec
 * section 1): data[c][k][j][i] with (D, H, W) = (nz, ny, nx). Writers copy
 * the geometry of the volume that was read (sform/qform and their codes,
 * pixdim, units), so outputs overlay the input in any viewer. NIfTI-2 input
 * headers give NIfTI-2 output, anything else NIfTI-1; scl_slope is none,
 * descrip "segmamba", cal_min/cal_max the data range. Every failure names
 * the file and the problem. */
#ifndef SM_NIFTI_H
#define SM_NIFTI_H

#include "clinical/volume.h"

#endif
