/* The official inference pipeline (spec section 4), from a multi-channel
 * image to a label map:
 *
 *   crop to the bounding box of the union of x != 0 over channels
 *   -> per-channel normalization (card: zscore or ct)
 *   -> resample to the card's spacing when the voxel grid changes
 *      (cubic B-spline, skimage.transform.resize(order=3, mode="edge",
 *      anti_aliasing=False) as nnU-Net's preprocessing calls it)
 *   -> pad axes shorter than the patch with zeros
 *   -> sliding window (overlap 0.5, MONAI's Gaussian importance map), each
 *      window through segmamba_forward, x 8 mirror flips averaged on logits
 *   -> cut the padding, resample logits back trilinearly (torch
 *      interpolate, align_corners=False) to the cropped grid
 *   -> softmax + argmax (or sigmoid regions) -> uncrop (0 outside the box).
 *
 * The building blocks are exposed for the tests (tests/test_pipeline.c); the
 * resampling steps are resample.h's. */
#ifndef SM_PIPELINE_H
#define SM_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "clinical/card.h"
#include "clinical/volume.h"
#include "core/error.h"
#include "segmamba_pipeline.h"

/* segmamba_predict and its options are segmamba_pipeline.h's. */

/* ---- building blocks ---- */

/* Bounding box [lo, hi) of voxels where any channel is != 0. Returns 0 (and
 * an empty box) when every voxel is 0. */
int sm_crop_box(const float *x, int c, int d, int h, int w, int box[3][2]);

/* In place over n values: zscore (x - mean) / max(std, 1e-8) with the
 * values' own mean and biased std (in double), or ct per the card. */
void sm_normalize(float *x, size_t n, const segmamba_norm *norm);

/* Window starts along an axis of n >= roi voxels with the given step:
 * ceil((n - roi) / step) + 1 windows, start i = min(i * step, n - roi).
 * starts may be NULL; returns the count. */
int sm_window_starts(int n, int roi, int step, int *starts);

/* MONAI's Gaussian importance map (compute_importance_map, mode "gaussian",
 * sigma_scale 0.125): the product over axes of
 * exp(-(i - (roi-1)/2)^2 / (2 (0.125 roi)^2)), not normalised, clamped
 * below at max(its minimum, 1e-3). map holds roi[0]*roi[1]*roi[2] floats;
 * sides up to 4096 (the card's limit). */
void sm_gaussian_map(const int roi[3], float *map);

/* Flips c channels of a (d, h, w) volume in place along D (mask bit 1),
 * H (bit 2) and W (bit 4). */
void sm_flip(float *x, int c, int d, int h, int w, int mask);

#endif
