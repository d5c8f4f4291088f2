/* Thread safety through the public API alone: two models of the tiny
 * fixture served by four threads at once (two threads per model, several
 * forwards each, a fifth thread opening and closing a model of its own
 * meanwhile), every output bit for bit the serial run's at the same thread
 * count, which the main thread sets once with segmamba_set_threads. Then
 * the kernel level is switched: open models keep the one they were opened
 * with. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "segmamba.h"

enum { MODELS = 2, WORKERS = 4, RUNS = 3, SIDE = 32 };

static const char *const MODEL = "tests/fixtures/tiny/model.safetensors";

static segmamba_model *models[MODELS];
static float *inputs[RUNS], *want[MODELS][RUNS];
static size_t in_floats, out_floats;
static atomic_int mismatches, failures;

static void *worker(void *arg)
{
    const int t = (int)(intptr_t)arg, m = t % MODELS;
    float *out = malloc(out_floats * sizeof *out);
    for (int round = 0; out && round < 2; round++)
        for (int r = 0; r < RUNS; r++) {
            const int k = (r + t) % RUNS; /* threads on one model interleave inputs */
            if (segmamba_forward(models[m], inputs[k], SIDE, SIDE, SIDE, out) != SEGMAMBA_OK) {
                fprintf(stderr, "thread %d: %s\n", t, segmamba_get_last_error());
                atomic_fetch_add(&failures, 1);
            } else if (memcmp(out, want[m][k], out_floats * sizeof *out) != 0) {
                atomic_fetch_add(&mismatches, 1);
            }
        }
    if (!out) atomic_fetch_add(&failures, 1);
    free(out);
    return NULL;
}

/* Opens, runs and closes a model of its own while the others run. */
static void *own_model(void *arg)
{
    (void)arg;
    segmamba_model *m = NULL;
    float *out = malloc(out_floats * sizeof *out);
    if (!out || segmamba_open(MODEL, NULL, &m) != SEGMAMBA_OK ||
        segmamba_forward(m, inputs[0], SIDE, SIDE, SIDE, out) != SEGMAMBA_OK) {
        fprintf(stderr, "own model: %s\n", segmamba_get_last_error());
        atomic_fetch_add(&failures, 1);
    } else if (memcmp(out, want[0][0], out_floats * sizeof *out) != 0) {
        atomic_fetch_add(&mismatches, 1);
    }
    segmamba_close(m);
    free(out);
    return NULL;
}

/* segmamba_set_isa after open: models[0] (opened at the initial level,
 * the CPU's best or SEGMAMBA_ISA's) keeps its output when the level drops
 * to scalar, and a model opened at scalar keeps its own when the level goes
 * back up to the best one; a model opened then may differ. Where the CPU
 * has a vector level, one of the two switches changes the kernels. */
static void test_level_kept(void)
{
    float *out = malloc(out_floats * sizeof *out), *scalar_out = malloc(out_floats * sizeof *out);
    segmamba_model *at_scalar = NULL, *at_best = NULL;
    CHECK(out && scalar_out);
    if (!out || !scalar_out) goto done;
    const char *level = segmamba_set_isa("scalar");
    CHECK(level && strcmp(level, "scalar") == 0);
    CHECK(segmamba_forward(models[0], inputs[0], SIDE, SIDE, SIDE, out) == SEGMAMBA_OK);
    CHECK_MSG(memcmp(out, want[0][0], out_floats * sizeof *out) == 0,
              "an open model's output changed with segmamba_set_isa(\"scalar\")");
    CHECK(segmamba_open(MODEL, NULL, &at_scalar) == SEGMAMBA_OK);
    if (!at_scalar) goto done;
    CHECK(segmamba_forward(at_scalar, inputs[0], SIDE, SIDE, SIDE, scalar_out) == SEGMAMBA_OK);
    /* A level the CPU lacks falls back: "avx512" is the best on x86-64,
     * "neon" on AArch64. */
    const char *best = segmamba_set_isa("avx512");
    if (strcmp(best, "scalar") == 0) best = segmamba_set_isa("neon");
    CHECK(segmamba_forward(at_scalar, inputs[0], SIDE, SIDE, SIDE, out) == SEGMAMBA_OK);
    CHECK_MSG(memcmp(out, scalar_out, out_floats * sizeof *out) == 0,
              "an open model's output changed with segmamba_set_isa(\"%s\")", best);
    CHECK(segmamba_open(MODEL, NULL, &at_best) == SEGMAMBA_OK);
    if (!at_best) goto done;
    CHECK(segmamba_forward(at_best, inputs[0], SIDE, SIDE, SIDE, out) == SEGMAMBA_OK);
    /* The switch must have changed the kernels, or the checks above could
     * not fail: a vector level's output differs from scalar's in rounding. */
    const int differs = memcmp(out, scalar_out, out_floats * sizeof *out) != 0;
    CHECK_MSG(differs == (strcmp(best, "scalar") != 0),
              "a model opened at %s %s one opened at scalar", best,
              differs ? "differs from" : "matches");
    fprintf(stderr,
            "level switched to scalar, then to %s: open models kept theirs; a model "
            "opened at %s %s one opened at scalar\n",
            best, best, differs ? "differs from" : "matches");
done:
    segmamba_close(at_scalar);
    segmamba_close(at_best);
    free(out);
    free(scalar_out);
}

int main(void)
{
    /* Not the default (the cores), so that a thread the setting did not reach
     * would show: the results depend on the thread count. */
    segmamba_set_threads(3);
    for (int m = 0; m < MODELS; m++)
        if (segmamba_open(MODEL, NULL, &models[m]) != SEGMAMBA_OK) {
            fprintf(stderr, "%s\n", segmamba_get_last_error());
            return 1;
        }
    segmamba_config c;
    segmamba_get_config(models[0], &c);
    in_floats = (size_t)c.in_chans * SIDE * SIDE * SIDE;
    out_floats = (size_t)c.out_chans * SIDE * SIDE * SIDE;
    check_seed(20261204);
    for (int r = 0; r < RUNS; r++) {
        inputs[r] = malloc(in_floats * sizeof(float));
        for (size_t i = 0; inputs[r] && i < in_floats; i++)
            inputs[r][i] = (float)check_uniform(-2, 2);
    }
    /* The serial run, at the same thread count. */
    for (int m = 0; m < MODELS; m++)
        for (int r = 0; r < RUNS; r++) {
            want[m][r] = malloc(out_floats * sizeof(float));
            CHECK(inputs[r] && want[m][r] &&
                  segmamba_forward(models[m], inputs[r], SIDE, SIDE, SIDE, want[m][r]) ==
                      SEGMAMBA_OK);
        }
    /* The two models are the same weights: their serial outputs agree too. */
    for (int r = 0; r < RUNS; r++)
        CHECK(memcmp(want[0][r], want[1][r], out_floats * sizeof(float)) == 0);

    pthread_t th[WORKERS + 1];
    for (int t = 0; t < WORKERS; t++)
        CHECK(pthread_create(&th[t], NULL, worker, (void *)(intptr_t)t) == 0);
    CHECK(pthread_create(&th[WORKERS], NULL, own_model, NULL) == 0);
    for (int t = 0; t <= WORKERS; t++) pthread_join(th[t], NULL);
    CHECK_MSG(atomic_load(&failures) == 0, "%d forwards failed", atomic_load(&failures));
    CHECK_MSG(atomic_load(&mismatches) == 0,
              "%d of %d concurrent outputs differ from the serial "
              "run",
              atomic_load(&mismatches), WORKERS * 2 * RUNS + 1);
    fprintf(stderr,
            "%d threads x %d forwards on %d models, and one model opened, run and closed "
            "on its own thread: %d outputs differ from the serial run\n",
            WORKERS, 2 * RUNS, MODELS, atomic_load(&mismatches));
    test_level_kept();

    for (int m = 0; m < MODELS; m++) {
        segmamba_close(models[m]);
        for (int r = 0; r < RUNS; r++) free(want[m][r]);
    }
    for (int r = 0; r < RUNS; r++) free(inputs[r]);
    return check_report("test_threads");
}
