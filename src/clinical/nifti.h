/* NIfTI-1 / NIfTI-2 input and output (.nii, .nii.gz) through nifticlib.
 *
 * Reading keeps the stored voxel order (spec section 1): data[c][k][j][i]
 * with (D, H, W) = (nz, ny, nx), converted to float32 with scl_slope and
 * scl_inter applied. Writers copy the geometry of the volume that was read
 * (sform/qform and their codes, pixdim, units), so outputs overlay the input
 * in any viewer. Every failure names the file and the problem. */
#ifndef SM_NIFTI_H
#define SM_NIFTI_H

#include <stdint.h>

#include "clinical/volume.h"

/* Reads a 3D image (c = 1) or a 4D image whose 4th dimension holds channels
 * (c = nt). Any scalar datatype (u/int 8-64, float32/64) is accepted;
 * complex, RGB/RGBA, 5D+ and zero or absurd dimensions are refused, as are
 * truncated data and corrupt gzip streams. On failure *out is left zeroed. */
sm_status sm_nifti_read(const char *path, sm_volume *out);

/* Reads n 3D files as the n channels of one volume, in the given order (or,
 * when n == 1, one file that may be 4D). All must share dims and affine
 * (within 1e-3 mm on the translation, 1e-4 relative on the rotation/scaling
 * part); otherwise the error names both files and what differs. The geometry
 * (and header) is the first file's. */
sm_status sm_nifti_read_channels(const char *const *paths, int n, sm_volume *out);

/* Writes c channels of d*h*w voxels in (C, D, H, W) order: c == 1 gives a 3D
 * image, c > 1 a 4D one. The geometry's header (if any) supplies sform/qform,
 * their codes, pixdim and xyzt_units; without one the affine is written as an
 * sform (code 2, aligned) and qform. scl_slope is none, descrip "segmamba",
 * cal_min/cal_max the data range. Atomic: a temporary file in the same folder
 * renamed over path, nothing left behind on failure; gzip when path ends in
 * ".gz". NIfTI-2 input headers give NIfTI-2 output, anything else NIfTI-1. */
sm_status sm_nifti_write_u8(const char *path, const sm_geometry *geom,
                            const uint8_t *data, int c);
sm_status sm_nifti_write_f32(const char *path, const sm_geometry *geom,
                             const float *data, int c);

/* 1 when a and b name the same existing file (same device and inode, or the
 * same realpath), else 0. For refusing to write an output over an input. */
int sm_same_file(const char *a, const char *b);

#endif
