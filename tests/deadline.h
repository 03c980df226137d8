/*
 * For the thread lock's tests: absolute CLOCK_MONOTONIC deadlines, as
 * fifolock_mt_timed_acquire() takes them.
 */
#ifndef FIFOLOCK_TESTS_DEADLINE_H
#define FIFOLOCK_TESTS_DEADLINE_H

#include <stdint.h>
#include <time.h>

/* Now plus `ns` nanoseconds (ns >= 0). */
static inline struct timespec in_ns(int64_t ns)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += (time_t)(ns / 1000000000);
    t.tv_nsec += (long)(ns % 1000000000);
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

static inline struct timespec in_ms(int64_t ms)
{
    return in_ns(ms * 1000000);
}

#endif
