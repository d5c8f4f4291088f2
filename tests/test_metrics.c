/* Distance transform, surfaces, Dice and HD95 against brute force and
 * hand-computed cases; tests/test_metrics_medpy.py compares with scipy/medpy. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "clinical/metrics.h"

static uint64_t rng = 88172645463325252ull;
static uint32_t next_u32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

static void test_edt_brute_force(void)
{
    const int shapes[][3] = {{1, 1, 7}, {5, 6, 7}, {9, 4, 11}, {3, 13, 2}};
    const double spacings[][3] = {{1, 1, 1}, {2.5, 0.7, 1.3}, {0.3, 4, 1}};
    for (int s = 0; s < 4; s++)
        for (int p = 0; p < 3; p++)
            for (int density = 1; density <= 30; density *= 5) {
                const int d = shapes[s][0], h = shapes[s][1], w = shapes[s][2];
                const int n = d * h * w;
                uint8_t *set = calloc((size_t)n, 1);
                double *dist = malloc((size_t)n * sizeof *dist);
                for (int i = 0; i < n; i++) set[i] = next_u32() % 100 < (unsigned)density;
                CHECK(sm_distance_transform(set, d, h, w, spacings[p], dist) == SEGMAMBA_OK);
                double worst = 0;
                int any = 0;
                for (int i = 0; i < n; i++) any |= set[i];
                for (int a = 0; a < n; a++) {
                    double best = INFINITY;
                    for (int b = 0; b < n; b++)
                        if (set[b]) {
                            const double dz = (a / (h * w) - b / (h * w)) * spacings[p][0];
                            const double dy = (a / w % h - b / w % h) * spacings[p][1];
                            const double dx = (a % w - b % w) * spacings[p][2];
                            best = fmin(best, sqrt(dz * dz + dy * dy + dx * dx));
                        }
                    if (!any)
                        CHECK(isinf(dist[a]));
                    else
                        worst = fmax(worst, fabs(best - dist[a]));
                }
                CHECK_MSG(worst < 1e-9, "shape %d spacing %d density %d: error %g", s, p, density,
                          worst);
                free(set);
                free(dist);
            }
}

static void test_surface(void)
{
    uint8_t m[125] = {0}, s[125];
    for (int k = 1; k < 4; k++)
        for (int j = 1; j < 4; j++)
            for (int i = 1; i < 4; i++) m[k * 25 + j * 5 + i] = 1;
    sm_mask_surface(m, 5, 5, 5, s);
    int n = 0;
    for (int i = 0; i < 125; i++) n += s[i];
    CHECK(n == 26 && !s[2 * 25 + 2 * 5 + 2]); /* the centre is the only inner voxel */
    memset(m, 1, sizeof m);
    sm_mask_surface(m, 5, 5, 5, s);
    n = 0;
    for (int i = 0; i < 125; i++) n += s[i];
    CHECK(n == 125 - 27); /* the volume's edge counts as outside */
    /* a voxel whose only missing neighbours are diagonal is inside (6-neighbourhood) */
    memset(m, 1, sizeof m);
    m[1 * 25 + 1 * 5 + 1] = 0;
    sm_mask_surface(m, 5, 5, 5, s);
    CHECK(!s[2 * 25 + 2 * 5 + 2] && !s[1 * 25 + 2 * 5 + 2]); /* diagonal to the hole */
    CHECK(s[1 * 25 + 1 * 5 + 2] && s[2 * 25 + 1 * 5 + 1]);   /* face neighbours of it */
}

static void test_hand_cases(void)
{
    const double sp[3] = {2.0, 1.0, 0.7};
    segmamba_region_score r;
    /* two single voxels 3 apart along W: every distance is 3 * 0.7 */
    uint8_t a[4 * 5 * 6] = {0}, b[4 * 5 * 6] = {0};
    a[1 * 30 + 2 * 6 + 1] = 1;
    b[1 * 30 + 2 * 6 + 4] = 1;
    CHECK(segmamba_score_masks(a, b, 4, 5, 6, sp, 0, &r) == SEGMAMBA_OK);
    CHECK(r.dice == 0 && fabs(r.hd95 - 2.1) < 1e-12 && r.n_pred == 1 && r.n_ref == 1);
    /* ... and 2 apart along D plus 1 along H */
    memset(b, 0, sizeof b);
    b[3 * 30 + 3 * 6 + 1] = 1;
    CHECK(segmamba_score_masks(a, b, 4, 5, 6, sp, 0, &r) == SEGMAMBA_OK);
    CHECK(fabs(r.hd95 - sqrt(16.0 + 1.0)) < 1e-12);

    /* percentile interpolation: distances {1, 1, 2} -> position 1.9 -> 1.9 */
    uint8_t c[9] = {0}, e[9] = {0};
    c[0] = c[3] = 1;
    e[1] = 1;
    const double unit[3] = {1, 1, 1};
    CHECK(segmamba_score_masks(c, e, 1, 1, 9, unit, 0, &r) == SEGMAMBA_OK);
    CHECK(fabs(r.hd95 - 1.9) < 1e-12 && r.dice == 0);

    /* a 4^3 cube and the same cube one voxel further along D: per side 36
     * distances 0, 4 of min(spacing) = 0.7 (the far face's inner voxels are
     * inside the other cube), 16 of 2 (the face that sticks out). Sorted,
     * positions 105 and 106 of 112 are both 2. Dice: 2 * 48 / 128. */
    enum { N = 10 };
    static uint8_t p[N * N * N], q[N * N * N];
    memset(p, 0, sizeof p);
    memset(q, 0, sizeof q);
    for (int k = 2; k < 6; k++)
        for (int j = 2; j < 6; j++)
            for (int i = 2; i < 6; i++) {
                p[(k * N + j) * N + i] = 1;
                q[((k + 1) * N + j) * N + i] = 1;
            }
    CHECK(segmamba_score_masks(p, q, N, N, N, sp, 0, &r) == SEGMAMBA_OK);
    CHECK(fabs(r.dice - 0.75) < 1e-15 && fabs(r.hd95 - 2.0) < 1e-12);
    /* with D spacing 0.5 the outer faces are the nearest, 0.5 */
    const double sp2[3] = {0.5, 1.0, 0.7};
    CHECK(segmamba_score_masks(p, q, N, N, N, sp2, 0, &r) == SEGMAMBA_OK);
    CHECK(fabs(r.hd95 - 0.5) < 1e-12);
    /* identical masks */
    CHECK(segmamba_score_masks(p, p, N, N, N, sp, 0, &r) == SEGMAMBA_OK);
    CHECK(r.dice == 1 && r.hd95 == 0);
}

static void test_empty_rules(void)
{
    const double sp[3] = {1, 1, 1};
    uint8_t z[27] = {0}, one[27] = {0};
    one[13] = 1;
    segmamba_region_score r;
    CHECK(segmamba_score_masks(z, z, 3, 3, 3, sp, 0, &r) == SEGMAMBA_OK);
    CHECK(r.dice == 0 && r.hd95 == 50);
    CHECK(segmamba_score_masks(z, z, 3, 3, 3, sp, 1, &r) == SEGMAMBA_OK);
    CHECK(r.dice == 1 && r.hd95 == 0);
    for (int rule = 0; rule < 2; rule++) {
        CHECK(segmamba_score_masks(one, z, 3, 3, 3, sp, rule, &r) == SEGMAMBA_OK);
        CHECK(r.dice == 0 && r.hd95 == 50 && r.n_pred == 1 && r.n_ref == 0);
        CHECK(segmamba_score_masks(z, one, 3, 3, 3, sp, rule, &r) == SEGMAMBA_OK);
        CHECK(r.dice == 0 && r.hd95 == 50);
    }
    const double bad[3] = {1, 0, 1};
    CHECK(segmamba_score_masks(one, one, 3, 3, 3, bad, 0, &r) == SEGMAMBA_E_ARG);
}

static void test_regions(void)
{
    /* a row of labels: pred 0 1 3 3 2 0, ref 0 3 3 3 2 2 */
    const uint8_t pred[6] = {0, 1, 3, 3, 2, 0}, ref[6] = {0, 3, 3, 3, 2, 2};
    segmamba_region reg[5];
    segmamba_region_init_brats(reg);
    const uint8_t l1 = 1, l2 = 2;
    segmamba_region_init(&reg[3], "1", &l1, 1);
    segmamba_region_init(&reg[4], "2", &l2, 1);
    CHECK(strcmp(reg[0].name, "TC") == 0 && reg[0].member[1] && reg[0].member[3] &&
          !reg[0].member[2]);
    segmamba_region_score s[5];
    const double sp[3] = {1, 1, 1};
    CHECK(segmamba_score_regions(pred, ref, 1, 1, 6, sp, reg, 5, 0, s) == SEGMAMBA_OK);
    CHECK(s[0].dice == 1.0 && s[0].hd95 == 0);                    /* TC: 1,2,3 vs 1,2,3 */
    CHECK(fabs(s[1].dice - 8.0 / 9.0) < 1e-15);                   /* WT: 4 vs 5 voxels */
    CHECK(fabs(s[2].dice - 0.8) < 1e-15);                         /* ET: {2,3} vs {1,2,3} */
    CHECK(s[3].dice == 0 && s[3].hd95 == 50 && s[3].n_pred == 1); /* label 1 absent in ref */
    CHECK(fabs(s[4].dice - 2.0 / 3.0) < 1e-15);
}

int main(void)
{
    test_edt_brute_force();
    test_surface();
    test_hand_cases();
    test_empty_rules();
    test_regions();
    return check_report("metrics");
}
