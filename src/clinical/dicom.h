/* DICOM in (a series per channel into a segmamba_volume) and DICOM SEG out:
 * segmamba_pipeline.h's segmamba_dicom_* functions. Built from
 * dicom_read_dcmtk.cpp and dicom_seg_dcmtk.cpp, the only files that include
 * dcmtk, when the build has DICOM (-Ddicom, SM_HAVE_DICOM); otherwise from
 * dicom_none.c, whose functions return SEGMAMBA_E_UNSUPPORTED saying the
 * build lacks DICOM.
 *
 * Reading: every regular file under the folder that starts like a DICOM
 * Part 10 file ("DICM" at byte 128) is parsed (its header only, values of
 * more than 4 KiB left on disk), grouped by Series Instance UID; objects
 * without pixel data, and Segmentation objects, are not image series. The
 * chosen series is then read whole: slices (single-frame files, or the
 * frames of enhanced multi-frame files through their functional groups)
 * sorted along the slice normal, checked for one orientation and size, no
 * tilt, no duplicate, and even gaps; pixels decoded (dcmtk's RLE, JPEG and
 * JPEG-LS decoders), masked to Bits Stored (sign-extended when signed),
 * rescaled (MONOCHROME1 is not inverted: its modality values), and stored as
 * data[k][j][i] = slice k, row j, column i.
 *
 * Geometry (DICOM PS3.3 C.7.6.2.1.1): with row cosines X (the direction
 * of increasing column index i), column cosines Y (increasing row j),
 * Pixel Spacing (dr, dc) and the sorted slices' positions P_k along
 * N = X x Y, a voxel (i, j, k) is at P_0 + i dc X + j dr Y + k s N (LPS),
 * s = (N.P_last - N.P_0) / (slices - 1). The volume's affine is that matrix
 * with its x and y rows negated (NIfTI's RAS). */
#ifndef SM_DICOM_H
#define SM_DICOM_H

#include "clinical/volume.h"

/* The relative and absolute tolerance of a gap between slices against the
 * mean spacing (a gap farther from it than both is refused). */
#define SM_DICOM_GAP_REL 0.01
#define SM_DICOM_GAP_ABS_MM 0.01

#endif
