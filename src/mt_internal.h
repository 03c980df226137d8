/*
 * Private to the library and its tests: knobs and probes of the thread front
 * end (src/mt.c). Never API.
 */
#ifndef FIFOLOCK_MT_INTERNAL_H
#define FIFOLOCK_MT_INTERNAL_H

#include "fifolock_mt.h"
#include "internal.h"

/*
 * How a queued thread waits before it sleeps on its futex: `spin` polls of
 * its word with a pause instruction in between, then `yield` calls of
 * sched_yield(). `lock_spin`: polls of the internal lock before a thread
 * sleeps on it. Read when a wait begins; tests set them while no thread
 * waits, e.g. spin = yield = 0 to make every waiter sleep at once.
 */
struct fifolock_mt__tuning {
    unsigned spin;
    unsigned yield;
    unsigned lock_spin;
};

FIFOLOCK_HIDDEN extern struct fifolock_mt__tuning fifolock_mt__tuning;

/* The defaults of fifolock_mt__tuning. */
#define FIFOLOCK_MT__SPIN 32u
#define FIFOLOCK_MT__YIELD 32u
#define FIFOLOCK_MT__LOCK_SPIN 100u

/*
 * Test seam: if set, called by a timed acquire whose deadline passed, just
 * before it takes the internal lock to withdraw its request (step T1 in
 * src/mt.c). A test can release the lock from there to force the grant to
 * win the race. NULL outside tests.
 */
FIFOLOCK_HIDDEN extern void (*fifolock_mt__on_timeout)(fifolock_mt *lock);

/*
 * Number of threads queued on `lock` that sleep on their futex right now.
 * Takes the internal lock. For tests: wait until a waiter sleeps before
 * releasing, to exercise the wakeup path.
 */
FIFOLOCK_HIDDEN size_t fifolock_mt__sleeping(fifolock_mt *lock);

/*
 * The mode of the i-th queued waiter (0 = head), or NULL if fewer are
 * queued. Takes the internal lock. For tests.
 */
FIFOLOCK_HIDDEN const fifolock_mode *fifolock_mt__queued_mode(fifolock_mt *lock, size_t i);

#endif
