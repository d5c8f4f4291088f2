/* OpenMP is optional: without it the pragmas are ignored (the build adds
 * -Wno-unknown-pragmas) and these helpers report a single thread. */
#ifndef SM_PARALLEL_H
#define SM_PARALLEL_H

#include "sm_config.h"

#if SM_HAVE_OPENMP
#include <omp.h>
static inline int sm_num_threads(void) { return omp_get_max_threads(); }
static inline int sm_thread_id(void) { return omp_get_thread_num(); }
#else
static inline int sm_num_threads(void) { return 1; }
static inline int sm_thread_id(void) { return 0; }
#endif

#endif
