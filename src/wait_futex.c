/* The waiting layer on Linux: futex(2), private to the process (wait.h). */
#include "wait.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

const char fifolock__wait_layer[] = "futex";

int fifolock__wait(uint32_t *addr, uint32_t val, const struct timespec *deadline)
{
    int saved = errno, rc = 0;

    /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time (plain
     * FUTEX_WAIT a relative one). EAGAIN (*addr != val) and EINTR are
     * early returns the caller tolerates. */
    if (syscall(SYS_futex, addr, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, val, deadline, NULL,
                FUTEX_BITSET_MATCH_ANY) != 0)
        rc = errno;
    errno = saved;
    return rc == ETIMEDOUT ? ETIMEDOUT : 0;
}

static void wake(uint32_t *addr, int n)
{
    int saved = errno;

    syscall(SYS_futex, addr, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, n, NULL, NULL, 0);
    errno = saved;
}

void fifolock__wake_one(uint32_t *addr)
{
    wake(addr, 1);
}

void fifolock__wake_all(uint32_t *addr)
{
    wake(addr, INT_MAX);
}
