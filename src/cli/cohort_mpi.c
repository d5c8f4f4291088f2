/* predict --list across the ranks of an MPI job (mpirun, srun): MPI is the
 * only transport, and only the CLI links it.
 *
 * Every rank loads the card, the list and the model itself (the files must
 * be on a file system they all see). Assignment is dynamic: a rank that
 * finishes a case sends its result to rank 0 and gets the next case index
 * back (-1: no more), so a slow case holds up only its own rank. Rank 0
 * writes the summary and also segments cases: a rank that only coordinated
 * would leave its cores idle (with 2 ranks on a 2-core machine, half of
 * it). It answers the other ranks between the network windows of its own
 * case (the pipeline's progress callback) and between cases, so a rank
 * waits for its next case about one window of rank 0's (or rank 0's
 * reading, writing and scoring of a case, which poll nothing).
 *
 * Waits sleep instead of blocking in MPI: a blocking MPI call polls at full
 * speed and would take a core from the threads computing on the same node. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cli.h"
#include "cohort.h"

enum { TAG_RESULT = 1, TAG_WORK = 2 };

static void wait_idle(MPI_Request *req)
{
    int done = 0;
    MPI_Test(req, &done, MPI_STATUS_IGNORE);
    while (!done) {
        const struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
        MPI_Test(req, &done, MPI_STATUS_IGNORE);
    }
}

typedef struct dispatcher {
    cohort *c;
    int next, n;
    int working; /* ranks other than 0 not yet told to stop */
} dispatcher;

/* Answers every rank that has reported: records its result (none on its
 * first request) and sends it the next case index, or -1. Returns how many
 * it answered. */
static int serve(dispatcher *d)
{
    int served = 0;
    for (;;) {
        int pending = 0;
        MPI_Status s;
        MPI_Iprobe(MPI_ANY_SOURCE, TAG_RESULT, MPI_COMM_WORLD, &pending, &s);
        if (!pending) return served;
        cohort_result r;
        MPI_Recv(&r, (int)sizeof r, MPI_BYTE, s.MPI_SOURCE, TAG_RESULT, MPI_COMM_WORLD,
                 MPI_STATUS_IGNORE);
        if (r.index >= 0) cohort_record(d->c, &r, s.MPI_SOURCE);
        int next = d->next < d->n ? d->next++ : -1;
        if (next < 0) d->working--;
        MPI_Send(&next, 1, MPI_INT, s.MPI_SOURCE, TAG_WORK, MPI_COMM_WORLD);
        served++;
    }
}

static void serve_poll(void *user) { serve(user); }

static void lead(cohort *c, int size)
{
    dispatcher d = {.c = c, .n = cohort_size(c), .working = size - 1};
    serve(&d);
    while (d.next < d.n) {
        cohort_result r;
        cohort_run_case(c, d.next++, &r, serve_poll, &d);
        cohort_record(c, &r, 0);
        serve(&d);
    }
    const struct timespec ms = {0, 1000000};
    while (d.working > 0)
        if (!serve(&d)) nanosleep(&ms, NULL);
}

static void work(cohort *c)
{
    cohort_result r = {.index = -1};
    for (;;) {
        MPI_Request req[2];
        int next = -1;
        MPI_Irecv(&next, 1, MPI_INT, 0, TAG_WORK, MPI_COMM_WORLD, &req[0]);
        MPI_Isend(&r, (int)sizeof r, MPI_BYTE, 0, TAG_RESULT, MPI_COMM_WORLD, &req[1]);
        wait_idle(&req[1]);
        wait_idle(&req[0]);
        if (next < 0) return;
        cohort_run_case(c, next, &r, NULL, NULL);
    }
}

int cohort_mpi_main(const cohort_options *o)
{
    int provided, rank, size;
    /* OpenMP threads run beside MPI; only the main thread calls it. */
    MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const double t0 = cli_now();

    /* Every rank must have set up before any starts: a rank that cannot
     * (a file not visible on its node) stops the job, with its message. */
    cohort *c = NULL;
    int st = (int)cohort_open(o, rank == 0, &c);
    int *all = malloc((size_t)size * sizeof *all);
    if (!all) {
        fprintf(stderr, "segmamba: error: rank %d of %d: out of memory\n", rank, size);
        MPI_Abort(MPI_COMM_WORLD, SEGMAMBA_E_NOMEM);
    }
    MPI_Request req;
    MPI_Iallgather(&st, 1, MPI_INT, all, 1, MPI_INT, MPI_COMM_WORLD, &req);
    wait_idle(&req);
    int rc = 0;
    for (int r = 0; r < size && !rc; r++) rc = all[r];
    if (st && (rank == 0 || !all[0]))
        fprintf(stderr, "segmamba: error: rank %d of %d: %s\n", rank, size, cli_last_error());
    free(all);

    if (!rc) {
        if (rank == 0) {
            lead(c, size);
            rc = cohort_finish(c, cli_now() - t0, size);
        } else {
            work(c);
        }
        /* Every rank exits with the run's code, which mpirun passes on. */
        MPI_Ibcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD, &req);
        wait_idle(&req);
    }
    cohort_close(c);
    MPI_Finalize();
    return rc;
}
