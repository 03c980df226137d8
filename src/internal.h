/*
 * Private to the library: what the front ends and the tests share with the
 * engine. Names with a double underscore are plumbing, never API.
 */
#ifndef FIFOLOCK_INTERNAL_H
#define FIFOLOCK_INTERNAL_H

#include "fifolock.h"

#if defined(__GNUC__)
#define FIFOLOCK_HIDDEN __attribute__((visibility("hidden")))
#else
#define FIFOLOCK_HIDDEN
#endif

/* Nonzero while `waiter` sits in a queue. */
FIFOLOCK_HIDDEN int fifolock__waiter_is_queued(const fifolock_waiter *waiter);

/*
 * Checks invariants I1-I3 of engine.c. Returns NULL when they hold, else a
 * short description of the first one broken. O(waiting * modes): for use
 * only inside assert() and in tests.
 */
FIFOLOCK_HIDDEN const char *fifolock__check_invariants(const fifolock *lock);

#endif
