/*
 * Private to the library and its tests: knobs and probes of the shared-memory
 * front end (src/shm.c). Never API.
 */
#ifndef FIFOLOCK_SHM_INTERNAL_H
#define FIFOLOCK_SHM_INTERNAL_H

#include "fifolock_shm.h"
#include "internal.h"

/*
 * How a queued request waits (A2-A4 in src/shm.c): it polls its state `spin`
 * times with a pause instruction in between, then calls sched_yield() up to
 * `yield` times (none by default: on a crowded machine a yield hands the CPU
 * to other programs, and bench_shm's handoffs fell from millions to a few
 * hundred thousand a second), then sleeps on its futex, waking every `tick_ns` to look for
 * dead processes ahead of it (A6). `lock_spin`: tries of the internal lock
 * before sleeping on it. Read when a wait begins; tests and benchmarks set
 * them while nothing waits.
 */
struct fifolock_shm__tuning {
    unsigned spin;
    unsigned yield;
    unsigned lock_spin;
    unsigned tick_ns;
};

FIFOLOCK_HIDDEN extern struct fifolock_shm__tuning fifolock_shm__tuning;

/*
 * The defaults. A handoff between two processes that run takes well under a
 * microsecond, so the spin covers short critical sections; the tick bounds how long a
 * death can go unnoticed by a waiter (the goal: the living are granted within
 * 100 ms of a death).
 */
#define FIFOLOCK_SHM__SPIN 2000u
#define FIFOLOCK_SHM__YIELD 0u
#define FIFOLOCK_SHM__LOCK_SPIN 200u
#define FIFOLOCK_SHM__TICK_NS 20000000u

/*
 * Test seam: the process kills itself (SIGKILL) at crash point N of
 * src/shm.c, holding the internal lock in the middle of an update:
 *   1 L2, the fast hold published as an entry, before the CAS on `fast`
 *   2 L2, after that CAS, before the FROM_FAST mark is cleared
 *   3 A1, the entry published (its seq stored), before `count` is raised
 *   4 G1, an entry granted by CAS, before it is woken and the report cleared
 *   5 R1, the released entry removed, before G1 grants those behind it
 *   6 A5, granted (perhaps with a death report) but not yet HELD: the
 *     caller dies before its acquire returns (not under L)
 *   7 C1, fifolock_shm_consistent() between its two stores: the report's
 *     overflow count cleared, its item count not yet
 *   8 G1, the death report copied into an entry, before the CAS that grants
 *     it: the report was not given
 *   9 G1, a conversion switched (X1: its `from` entry lowered or removed),
 *     before the CAS that grants it
 */
FIFOLOCK_HIDDEN extern int fifolock_shm__crash_at;

/* Repairs of the internal lock this process made (EOWNERDEAD from L1). */
FIFOLOCK_HIDDEN extern unsigned long fifolock_shm__repairs;

/* This handle's slot in the file (which liveness byte it holds), or ~0. */
FIFOLOCK_HIDDEN uint32_t fifolock_shm__slot(const fifolock_shm *lock);

/* Requests sleeping on their futex right now (takes the internal lock). */
FIFOLOCK_HIDDEN size_t fifolock_shm__parked(fifolock_shm *lock);

#endif
