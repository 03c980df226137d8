/*
 * The waiting layer on Windows 8 and later (wait.h): WaitOnAddress and
 * WakeByAddressSingle/All, in Synchronization.lib. They take a relative
 * timeout in milliseconds, so the absolute CLOCK_MONOTONIC deadline is
 * turned into one on each call (rounded up: never wake before the
 * deadline); a wait that ends early for that rounding or spuriously is
 * called again by mt.c, which checks the deadline itself.
 *
 * clock_gettime(CLOCK_MONOTONIC) is mingw-w64's (winpthreads), the clock
 * the thread lock's callers build their deadlines with.
 */
#include "wait.h"

#include <errno.h>
#include <windows.h>

const char fifolock__wait_layer[] = "win32";

static DWORD millis_until(const struct timespec *deadline)
{
    struct timespec now;
    int64_t ns;

    if (deadline == NULL)
        return INFINITE;
    clock_gettime(CLOCK_MONOTONIC, &now);
    ns = (int64_t)(deadline->tv_sec - now.tv_sec) * 1000000000 + (deadline->tv_nsec - now.tv_nsec);
    if (ns <= 0)
        return 0;
    if (ns >= (int64_t)(INFINITE - 1) * 1000000)
        return INFINITE - 1;
    return (DWORD)((ns + 999999) / 1000000);
}

int fifolock__wait(uint32_t *addr, uint32_t val, const struct timespec *deadline)
{
    int saved = errno, rc = 0;
    DWORD ms = millis_until(deadline);

    if (ms == 0)
        return ETIMEDOUT;
    if (!WaitOnAddress(addr, &val, sizeof val, ms) && GetLastError() == ERROR_TIMEOUT) {
        /* Rounded up, so the deadline has passed unless the clocks differ. */
        rc = millis_until(deadline) == 0 ? ETIMEDOUT : 0;
    }
    errno = saved;
    return rc;
}

void fifolock__wake_one(uint32_t *addr)
{
    WakeByAddressSingle(addr);
}

void fifolock__wake_all(uint32_t *addr)
{
    WakeByAddressAll(addr);
}
