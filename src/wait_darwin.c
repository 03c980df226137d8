/*
 * The waiting layer on macOS (wait.h). macOS 14.4 publishes
 * os_sync_wait_on_address (<os/os_sync_wait_on_address.h>); before it, the
 * same kernel service is __ulock_wait/__ulock_wake (macOS 10.12+), which
 * libc++'s std::atomic::wait and Rust's standard library use too. Both take
 * a relative timeout, so the absolute CLOCK_MONOTONIC deadline is turned
 * into one on each call; a wait that ends early is called again by mt.c,
 * which checks the deadline itself.
 *
 * Written against Apple's headers and documentation; not built or run by
 * this project's tests, which run on Linux (docs/porting.md).
 */
#include "wait.h"

#include <errno.h>
#include <stdbool.h>

#if defined(__has_include)
#if __has_include(<os/os_sync_wait_on_address.h>)
#include <os/clock.h>
#include <os/os_sync_wait_on_address.h>
#define HAVE_OS_SYNC 1
#endif
#endif

/* From xnu's bsd/sys/ulock.h (private, stable since 10.12). */
extern int __ulock_wait(uint32_t operation, void *addr, uint64_t value, uint32_t timeout_us);
extern int __ulock_wake(uint32_t operation, void *addr, uint64_t wake_value);
#define UL_COMPARE_AND_WAIT 1
#define ULF_WAKE_ALL 0x00000100
#define ULF_NO_ERRNO 0x01000000

const char fifolock__wait_layer[] = "darwin";

/* Nanoseconds left until `deadline`: 0 if it passed, -1 for none. */
static int64_t ns_until(const struct timespec *deadline)
{
    struct timespec now;
    int64_t ns;

    if (deadline == NULL)
        return -1;
    clock_gettime(CLOCK_MONOTONIC, &now);
    ns = (int64_t)(deadline->tv_sec - now.tv_sec) * 1000000000 + (deadline->tv_nsec - now.tv_nsec);
    return ns > 0 ? ns : 0;
}

int fifolock__wait(uint32_t *addr, uint32_t val, const struct timespec *deadline)
{
    int saved = errno, rc;
    int64_t ns = ns_until(deadline);

    if (ns == 0)
        return ETIMEDOUT;
#ifdef HAVE_OS_SYNC
    if (__builtin_available(macOS 14.4, *)) {
        if (ns < 0)
            rc = os_sync_wait_on_address(addr, val, sizeof val, OS_SYNC_WAIT_ON_ADDRESS_NONE);
        else
            rc = os_sync_wait_on_address_with_timeout(addr, val, sizeof val,
                                                      OS_SYNC_WAIT_ON_ADDRESS_NONE,
                                                      OS_CLOCK_MACH_ABSOLUTE_TIME, (uint64_t)ns);
        rc = rc < 0 ? errno : 0;
        errno = saved;
        return rc == ETIMEDOUT && ns_until(deadline) == 0 ? ETIMEDOUT : 0;
    }
#endif
    {
        /* Microseconds, rounded up; 0 means no timeout to __ulock_wait. */
        uint32_t us = ns < 0 ? 0 : ns >= (int64_t)UINT32_MAX * 1000 ? UINT32_MAX
                                                                     : (uint32_t)((ns + 999) / 1000);

        rc = __ulock_wait(UL_COMPARE_AND_WAIT | ULF_NO_ERRNO, addr, val, us);
        errno = saved;
        return rc == -ETIMEDOUT && ns_until(deadline) == 0 ? ETIMEDOUT : 0;
    }
}

static void wake(uint32_t *addr, bool all)
{
    int saved = errno;

#ifdef HAVE_OS_SYNC
    if (__builtin_available(macOS 14.4, *)) {
        if (all)
            (void)os_sync_wake_by_address_all(addr, sizeof *addr, OS_SYNC_WAKE_BY_ADDRESS_NONE);
        else
            (void)os_sync_wake_by_address_any(addr, sizeof *addr, OS_SYNC_WAKE_BY_ADDRESS_NONE);
        errno = saved;
        return;
    }
#endif
    (void)__ulock_wake(UL_COMPARE_AND_WAIT | ULF_NO_ERRNO | (all ? ULF_WAKE_ALL : 0), addr, 0);
    errno = saved;
}

void fifolock__wake_one(uint32_t *addr)
{
    wake(addr, false);
}

void fifolock__wake_all(uint32_t *addr)
{
    wake(addr, true);
}
