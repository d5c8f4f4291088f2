/* Errors are values: a function that fails records a message for the calling
 * thread and returns the status; the CLI (or the embedding application) is
 * the one place that prints it. Library code never prints and never exits. */
#ifndef SM_ERROR_H
#define SM_ERROR_H

#include "segmamba.h"

typedef segmamba_status sm_status;

#if defined(__GNUC__)
#define SM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define SM_PRINTF(a, b)
#endif

/* Records the message for the current thread and returns code, so that a
 * failure is one line: return sm_fail(SEGMAMBA_E_FORMAT, "%s: ...", path); */
sm_status sm_fail(sm_status code, const char *fmt, ...) SM_PRINTF(2, 3);

/* Prefixes the current message with more context ("loading X: <old>"). */
sm_status sm_fail_wrap(sm_status code, const char *fmt, ...) SM_PRINTF(2, 3);

void sm_error_clear(void);

/* Propagates a non-OK status. */
#define SM_TRY(expr)                                                                               \
    do {                                                                                           \
        sm_status sm_try_status_ = (expr);                                                         \
        if (sm_try_status_ != SEGMAMBA_OK) return sm_try_status_;                                  \
    } while (0)

#endif
