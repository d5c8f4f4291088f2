/* Resampling between voxel grids, as the official pipeline does it
 * (pipeline.h): the input to the card's spacing with skimage's cubic
 * B-spline, the logits back with torch's trilinear interpolation. */
#ifndef SM_RESAMPLE_H
#define SM_RESAMPLE_H

#include "core/error.h"

/* New grid side after resampling from spacing `from` to `to`:
 * round(from / to * n) (half to even, as Python's round), at least 1. */
int sm_resampled_side(int n, double from, double to);

/* Cubic B-spline resize of c channels from (in[0..2]) to (out[0..2]), as
 * skimage.transform.resize(order=3, mode="edge", anti_aliasing=False,
 * clip=True): output voxel j samples input coordinate (j + 0.5) * n_in /
 * n_out - 0.5; coefficients from the prefilter over the line extended by 12
 * edge copies each side (scipy's prefilter for mode "nearest"); the result
 * is clipped to each channel's input range. */
sm_status sm_resample_cubic(const float *src, int c, const int in[3], const int out[3], float *dst);

/* Trilinear resize as torch.nn.functional.interpolate(mode="trilinear",
 * align_corners=False, size=out): source coordinate (j + 0.5) * n_in / n_out
 * - 0.5 clamped at 0, neighbours clamped at the last voxel. */
sm_status sm_resample_linear(const float *src, int c, const int in[3], const int out[3],
                             float *dst);

#endif
