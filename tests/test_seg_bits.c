/* BINARY DICOM SEG Pixel Data (clinical/seg_bits.h) against the standard's
 * packing written out by hand (PS3.5 8.1.1: frames concatenated bit after
 * bit, least significant bit first) and against a bit-at-a-time model of
 * it, for every frame size remainder mod 8. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "clinical/seg_bits.h"

/* Three frames of 1x3 pixels: the stream is 101 110 001, so byte 0 holds
 * bits 1,0,1,1,1,0,0,0 (LSB first) = 0x1d and byte 1 holds the last 1;
 * 9 bits take 2 bytes, already even. */
static void test_hand_case(void)
{
    const uint8_t frames[3][3] = {{1, 0, 1}, {1, 1, 0}, {0, 0, 9}};
    CHECK(sm_seg_packed_bytes(3, 3) == 2);
    uint8_t packed[2] = {0, 0};
    for (size_t f = 0; f < 3; f++) sm_seg_pack_frame(packed, f, 3, frames[f]);
    CHECK(packed[0] == 0x1d && packed[1] == 0x01);
    uint8_t back[3];
    sm_seg_unpack_frame(packed, 2, 3, back);
    CHECK(back[0] == 0 && back[1] == 0 && back[2] == 1);
}

static void test_sizes(void)
{
    CHECK(sm_seg_packed_bytes(1, 1) == 2); /* 1 bit: 1 byte, padded to 2 */
    CHECK(sm_seg_packed_bytes(2, 8) == 2);
    CHECK(sm_seg_packed_bytes(3, 8) == 4); /* 3 bytes, padded */
    CHECK(sm_seg_packed_bytes(456, 217 * 181) ==
          2238790); /* 17,910,312 bits: 2,238,789 bytes, padded */
    CHECK(sm_seg_packed_bytes(0, 5) == 0);
    CHECK(sm_seg_packed_bytes(SIZE_MAX / 2, 4) == 0); /* overflow refused */
}

/* Random frames of every plane size 1..40 (all remainders mod 8), packed
 * one after another: each bit where a bit-at-a-time writer puts it, the
 * pad bits zero, and every frame unpacked unchanged. */
static void test_random_frames(void)
{
    check_seed(23);
    for (size_t plane = 1; plane <= 40; plane++)
        for (size_t n = 1; n <= 5; n++) {
            uint8_t *pix = malloc(n * plane), *back = malloc(plane);
            const size_t bytes = sm_seg_packed_bytes(n, plane);
            uint8_t *packed = calloc(bytes, 1), *model = calloc(bytes, 1);
            for (size_t i = 0; i < n * plane; i++) pix[i] = check_uniform(0, 1) < 0.5;
            for (size_t f = 0; f < n; f++) sm_seg_pack_frame(packed, f, plane, pix + f * plane);
            size_t bit = 0;
            for (size_t i = 0; i < n * plane; i++, bit++)
                if (pix[i]) model[bit / 8] = (uint8_t)(model[bit / 8] + (1 << (bit % 8)));
            CHECK_MSG(bytes == (n * plane + 7) / 8 + ((n * plane + 7) / 8) % 2, "plane %zu", plane);
            CHECK_MSG(memcmp(packed, model, bytes) == 0, "plane %zu, %zu frames", plane, n);
            for (size_t f = 0; f < n; f++) {
                sm_seg_unpack_frame(packed, f, plane, back);
                CHECK_MSG(memcmp(back, pix + f * plane, plane) == 0, "plane %zu frame %zu", plane,
                          f);
            }
            free(pix), free(back), free(packed), free(model);
        }
}

int main(void)
{
    test_hand_case();
    test_sizes();
    test_random_frames();
    return check_report("seg_bits");
}
