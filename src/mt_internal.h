/*
 * Private to the library and its tests: knobs and probes of the thread front
 * end (src/mt.c). Never API.
 */
#ifndef FIFOLOCK_MT_INTERNAL_H
#define FIFOLOCK_MT_INTERNAL_H

#include "fifolock_mt.h"
#include "internal.h"

/*
 * How a queued thread waits before it sleeps on its futex: the head of the
 * queue polls its word `spin` times with a pause instruction in between,
 * then calls sched_yield() `yield` times; a waiter with others ahead of it
 * only yields, at most `yield_behind` times. Either stops yielding early
 * once a sched_yield() took more than `shared_ns` nanoseconds (other threads
 * ran on this CPU meanwhile). `lock_spin`: polls of the internal lock before
 * a thread sleeps on it. `defer`: a thread that finds at least this many
 * waiting yields once before it queues (A0; 0: never). Read without L when
 * used (spin, yield and yield_behind when a wait begins); tests set them
 * while no thread uses the lock, e.g. spin and yield to 0 to make every
 * waiter sleep at once (`yield` caps `yield_behind` too).
 */
struct fifolock_mt__tuning {
    unsigned spin;
    unsigned yield;
    unsigned yield_behind;
    unsigned lock_spin;
    unsigned nudge; /* wake a sleeping waiter when it becomes the head (N1) */
    unsigned shared_ns;
    unsigned defer; /* A0: yield once before queueing behind this many (0: never) */
};

FIFOLOCK_HIDDEN extern struct fifolock_mt__tuning fifolock_mt__tuning;

/*
 * The defaults of fifolock_mt__tuning: the head spins for about what two or
 * three context switches cost (300 polls), then every waiter yields a while
 * before it sleeps (a yield of up to `shared_ns` does not end the yielding;
 * a longer one means the CPU is crowded, and sleeping serves better), and a
 * thread that would queue behind others yields once first (A0 in src/mt.c).
 * Why these values, and what each was measured to change (bench_mt spin=,
 * yield=, behind=, shared=, defer=): docs/performance.md, "How a waiting
 * thread waits".
 */
#define FIFOLOCK_MT__SPIN 300u
#define FIFOLOCK_MT__YIELD 50u
#define FIFOLOCK_MT__YIELD_BEHIND 20u
#define FIFOLOCK_MT__SHARED_NS 20000u
#define FIFOLOCK_MT__DEFER 1u
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
 * Take and drop the internal lock (steps L1 and L3 of src/mt.c), and tell
 * whether a thread announced it sleeps on it (SLEEPERS). For tests of the
 * internal lock's own wakeup (front ends use fifolock_mt_inspect() and the
 * fork hooks of fifolock_mt.h). Under L, call no fifolock_mt_* function of
 * the same lock.
 */
FIFOLOCK_HIDDEN void fifolock_mt__lock_internal(fifolock_mt *lock);
FIFOLOCK_HIDDEN void fifolock_mt__unlock_internal(fifolock_mt *lock);
FIFOLOCK_HIDDEN int fifolock_mt__internal_has_sleepers(fifolock_mt *lock);

/*
 * The mode of the i-th queued waiter (0 = head), or NULL if fewer are
 * queued. Takes the internal lock. For tests.
 */
FIFOLOCK_HIDDEN const fifolock_mode *fifolock_mt__queued_mode(fifolock_mt *lock, size_t i);

#endif
