/*
 * Private to the library: what the front ends and the tests share with the
 * engine. Names with a double underscore are plumbing, never API.
 */
#ifndef FIFOLOCK_INTERNAL_H
#define FIFOLOCK_INTERNAL_H

#include "fifolock.h"

#if defined(__GNUC__) && !defined(_WIN32)
#define FIFOLOCK_HIDDEN __attribute__((visibility("hidden")))
#else
#define FIFOLOCK_HIDDEN /* a DLL exports only what is marked FIFOLOCK_API */
#endif

#if defined(_MSC_VER)
#include <intrin.h>
#endif

/* One pause of a spin-wait: tells the CPU that this thread only waits. */
static inline void fifolock__cpu_relax(void)
{
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_ia32_pause();
#elif defined(__GNUC__) && defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#elif defined(__GNUC__)
    __asm__ __volatile__("" ::: "memory");
#elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
    _mm_pause();
#elif defined(_MSC_VER) && defined(_M_ARM64)
    __yield();
#endif
}

/*
 * The queue, oldest first: its head (NULL if nobody waits) and the waiter
 * after `waiter` (NULL at the tail). Only while nobody changes the queue.
 */
static inline fifolock_waiter *fifolock__head(const fifolock *lock)
{
    return lock->head;
}

static inline fifolock_waiter *fifolock__next(const fifolock_waiter *waiter)
{
    return waiter->next;
}

/*
 * Counts one hold of `mode` on an idle lock (nobody holds, nobody waits)
 * without asking its predicate: for a hold that was already granted outside
 * the engine (fifolock_mt's fast path), which must never be taken back.
 * Returns 0, or EBUSY (and changes nothing) if the lock is not idle.
 */
FIFOLOCK_HIDDEN int fifolock__count_idle_hold(fifolock *lock, const fifolock_mode *mode);

/*
 * True if `mode` (with a predicate) is known, without asking it, to admit
 * one holder on a lock that nobody holds: the ready-made modes (src/modes.c).
 * False means "ask". This function can't fail.
 */
FIFOLOCK_HIDDEN bool fifolock__fits_idle(const fifolock_mode *mode);

/*
 * True if a request of `n` holds of `mode` would be refused by a lock that
 * nobody holds, so that it can never be granted (predicates are monotone:
 * fewer holders never make a mode incompatible). Every front end refuses
 * such a request at once with EDEADLK instead of queueing it. The mode is
 * asked as the engine asks a request (n questions, each with the ones before
 * counted, or one through fifolock_asked()), on an empty scratch table of
 * its own. False for a NULL mode, a mode without predicate, n == 0 and n
 * above UINT32_MAX (those are other errors). The engine's own calls ask the
 * same question on the lock's table, emptied for it. Allocates nothing;
 * this function can't fail. For queues kept outside a fifolock (shm, etcd).
 */
FIFOLOCK_HIDDEN bool fifolock__never_fits(const fifolock_mode *mode, size_t n);

/*
 * The engine's one allocation seam: every allocation of the library (the
 * hold table's overflow block, src/engine.c) goes through fifolock__alloc
 * when it is set, as realloc() would (size > 0) or free() would (size 0,
 * returning NULL); NULL (the default) means realloc() and free(). The unit
 * tests make allocation fail on demand through it, the fuzzer when an input
 * asks, the bench counts it. Process-wide: set it only while no lock is in
 * use; never set in a normal program.
 */
FIFOLOCK_HIDDEN extern void *(*fifolock__alloc)(void *p, size_t size);

/* Nonzero while `waiter` sits in a queue. */
FIFOLOCK_HIDDEN int fifolock__waiter_is_queued(const fifolock_waiter *waiter);

/*
 * Checks invariants I1-I3 of engine.c. Returns NULL when they hold, else a
 * short description of the first one broken. O(waiting * modes): for use
 * only inside assert() and in tests.
 */
FIFOLOCK_HIDDEN const char *fifolock__check_invariants(const fifolock *lock);

/*
 * One request in a queue kept outside a fifolock (shared memory, etcd):
 * `n` holds of `mode`; a NULL mode is one this process does not know, which
 * is never granted (and so never granted past).
 */
struct fifolock__entry {
    const fifolock_mode *mode;
    size_t n;
};

/*
 * The engine's grant rule over such a queue (src/rule.c): stores in
 * *granted how many entries, from the oldest, hold the lock. Returns 0,
 * EINVAL (NULL pointers, an entry with n == 0 or a mode without predicate;
 * *granted then counts the entries before it), ENOMEM or EAGAIN (as
 * fifolock_try_acquire()). Predicates must be monotone (see rule.c).
 */
FIFOLOCK_HIDDEN int fifolock__granted_prefix(const struct fifolock__entry *entries, size_t count,
                                             size_t *granted);

/*
 * The same with one conversion in the queue (src/rule.c): entry `conv`
 * (none if conv >= count) turns one hold of entry `from`'s mode (from <
 * conv) into one of its own mode (its n must be 1), asked of the engine as
 * fifolock_try_convert(); a refusal ends the prefix there. Returns as
 * fifolock__granted_prefix(), EINVAL also for from >= conv.
 */
FIFOLOCK_HIDDEN int fifolock__granted_prefix_convert(const struct fifolock__entry *entries,
                                                     size_t count, size_t conv, size_t from,
                                                     size_t *granted);

#endif
