/* Minimal assertions for the C unit tests: each failed check prints where and
 * why; main returns the failure count so meson reports the test as failed. */
#ifndef SM_TEST_CHECK_H
#define SM_TEST_CHECK_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures;
static int check_count;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        check_count++;                                                                             \
        if (!(cond)) {                                                                             \
            check_failures++;                                                                      \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        check_count++;                                                                             \
        if (!(cond)) {                                                                             \
            check_failures++;                                                                      \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

/* 1 when the message s (NULL counts as empty) contains part. */
static inline int check_contains(const char *s, const char *part)
{
    return s && strstr(s, part) != NULL;
}

/* A seeded xorshift generator, so that every run draws the same inputs. */
static uint64_t check_rng_state = 0x9e3779b97f4a7c15ull;

static inline void check_seed(uint64_t seed) { check_rng_state = seed ? seed : 1; }

/* Uniform in [lo, hi). */
static inline double check_uniform(double lo, double hi)
{
    check_rng_state ^= check_rng_state << 13;
    check_rng_state ^= check_rng_state >> 7;
    check_rng_state ^= check_rng_state << 17;
    return lo + (hi - lo) * (double)(check_rng_state >> 11) / 9007199254740992.0;
}

/* n floats drawn with check_uniform, or n copies of v; malloc'd (NULL when
 * out of memory). */
static inline float *check_random_floats(int64_t n, double lo, double hi)
{
    float *p = malloc((size_t)n * sizeof *p);
    for (int64_t i = 0; p && i < n; i++) p[i] = (float)check_uniform(lo, hi);
    return p;
}

static inline float *check_filled_floats(int64_t n, float v)
{
    float *p = malloc((size_t)n * sizeof *p);
    for (int64_t i = 0; p && i < n; i++) p[i] = v;
    return p;
}

static inline int check_report(const char *name)
{
    fprintf(stderr, "%s: %d checks, %d failed\n", name, check_count, check_failures);
    return check_failures ? 1 : 0;
}

#endif
