/* The Pixel Data of a BINARY DICOM Segmentation (PS3.5 8.1.1, PS3.3
 * C.8.20.2; CP 1132): one bit per pixel, the frames concatenated with no
 * padding between them, so frame f starts at bit f * rows * columns of the
 * stream and, unless rows * columns is a multiple of 8, inside a byte;
 * within a byte the first pixel is the least significant bit; one zero byte
 * pads an odd total length. The SEG writer packs with it and decodes its own
 * output with it before anything is written; any reader of SEG in the
 * project decodes the same way. Private to src/clinical/. */
#ifndef SM_SEG_BITS_H
#define SM_SEG_BITS_H

#include <stddef.h>
#include <stdint.h>

/* The bytes of n frames of plane pixels (even); 0 when that overflows. */
size_t sm_seg_packed_bytes(size_t frames, size_t plane);

/* Sets frame f's bits in packed (zeroed beforehand, sm_seg_packed_bytes
 * long): bit on where pixels[i] != 0. */
void sm_seg_pack_frame(uint8_t *packed, size_t f, size_t plane, const uint8_t *pixels);

/* Frame f's pixels as 0/1 bytes. */
void sm_seg_unpack_frame(const uint8_t *packed, size_t f, size_t plane, uint8_t *pixels);

#endif
