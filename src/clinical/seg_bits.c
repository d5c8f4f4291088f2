#include "clinical/seg_bits.h"

size_t sm_seg_packed_bytes(size_t frames, size_t plane)
{
    if (frames == 0 || plane == 0) return 0;
    if (plane > (SIZE_MAX - 16) / frames) return 0;
    const size_t bits = frames * plane;
    const size_t bytes = bits / 8 + (bits % 8 != 0);
    return bytes + (bytes & 1);
}

void sm_seg_pack_frame(uint8_t *packed, size_t f, size_t plane, const uint8_t *pixels)
{
    const size_t first = f * plane;
    for (size_t i = 0; i < plane; i++)
        if (pixels[i]) packed[(first + i) >> 3] |= (uint8_t)(1u << ((first + i) & 7));
}

void sm_seg_unpack_frame(const uint8_t *packed, size_t f, size_t plane, uint8_t *pixels)
{
    const size_t first = f * plane;
    for (size_t i = 0; i < plane; i++)
        pixels[i] = (packed[(first + i) >> 3] >> ((first + i) & 7)) & 1;
}
