/*
 * The waiting layer on FreeBSD (wait.h): _umtx_op(2), whose
 * UMTX_OP_WAIT_UINT_PRIVATE takes an absolute CLOCK_MONOTONIC deadline
 * (struct _umtx_time with UMTX_ABSTIME), as mt.c has it. FreeBSD 10+.
 *
 * Written against FreeBSD's manual page; not built or run by this
 * project's tests, which run on Linux (docs/porting.md).
 */
#include "wait.h"

#include <errno.h>
#include <limits.h>
#include <sys/types.h>
#include <sys/umtx.h>

const char fifolock__wait_layer[] = "umtx";

int fifolock__wait(uint32_t *addr, uint32_t val, const struct timespec *deadline)
{
    struct _umtx_time t;
    int saved = errno, rc = 0;

    if (deadline != NULL) {
        t._timeout = *deadline;
        t._flags = UMTX_ABSTIME;
        t._clockid = CLOCK_MONOTONIC;
    }
    if (_umtx_op(addr, UMTX_OP_WAIT_UINT_PRIVATE, val,
                 deadline != NULL ? (void *)sizeof t : NULL, deadline != NULL ? &t : NULL) != 0)
        rc = errno;
    errno = saved;
    return rc == ETIMEDOUT ? ETIMEDOUT : 0;
}

void fifolock__wake_one(uint32_t *addr)
{
    int saved = errno;

    (void)_umtx_op(addr, UMTX_OP_WAKE_PRIVATE, 1, NULL, NULL);
    errno = saved;
}

void fifolock__wake_all(uint32_t *addr)
{
    int saved = errno;

    (void)_umtx_op(addr, UMTX_OP_WAKE_PRIVATE, INT_MAX, NULL, NULL);
    errno = saved;
}
