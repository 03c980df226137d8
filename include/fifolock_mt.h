/*
 * fifolock_mt: the fifolock for POSIX threads.
 *
 * The same first-in-first-out lock as fifolock.h, with modes defined by the
 * user, for threads: fifolock_mt_acquire() blocks until the mode is granted,
 * fifolock_mt_try_acquire() never blocks, fifolock_mt_timed_acquire() gives
 * up at a deadline.
 *
 * Order. Requests are granted strictly in the order they are queued. A call
 * queues its request at once (under the lock's internal lock, a few
 * instructions in) when nobody waits; if others already wait, the thread
 * first yields the CPU once (sched_yield(), which may last a time slice on a
 * busy machine) and queues after that. So calls that overlap in time may
 * queue in either order, and a later call may overtake one that is still
 * yielding. Once a request is queued, no later request is granted before it,
 * even one whose mode would be compatible now; and since a thread yields at
 * most once before it queues, no thread starves. To order two threads,
 * start the second only once the first holds the lock or
 * fifolock_mt_waiting() shows it queued.
 * A grant is a direct handoff: the releasing thread counts the waiter as a
 * holder before the waiter even wakes, so no other thread can slip in
 * between.
 *
 * Every function is thread-safe. Nothing allocates per call; the lock itself
 * needs memory only to count more than FIFOLOCK_INLINE_MODES distinct modes at
 * once, and each call costs time in proportion to the number of distinct
 * modes held or queued at that moment (see fifolock.h). Errors are positive errno values returned by the function; errno itself
 * is never touched, nothing is printed and nothing aborts.
 *
 * Modes. A mode's predicate (`is_compatible`) runs under the lock's internal
 * lock, in whichever thread acquires, releases, queries or times out, and
 * is given the hold table of the fifolock that the fifolock_mt embeds, so it
 * may find its lock from it as fifolock.h says. (The ready-made modes take
 * an idle lock without running their predicate at all.) It must be quick and
 * pure (a function of the hold counts and of the mode's own fields only) and
 * must not call any fifolock_mt_* function; a hold once granted is kept even
 * if an impure predicate would now refuse it. It must be monotone (fewer
 * holders never make it incompatible: fifolock.h), so a request that a lock
 * nobody holds refuses can never be granted, and every call refuses it at
 * once with EDEADLK instead of blocking for ever (and everybody behind it).
 * A mode must stay where it is, unchanged, while it
 * is held or waited for. Hold counts belong to the lock, not to threads: any
 * thread may release a hold that another thread acquired (as with a
 * semaphore), and a thread that asks again for a mode it holds queues like
 * anyone else.
 *
 * Waiting threads sleep through the waiting layer (src/wait.h: futex on
 * Linux, WaitOnAddress on Windows, ...; docs/platforms.md). Deadlines are
 * absolute CLOCK_MONOTONIC times.
 */
#ifndef FIFOLOCK_MT_H
#define FIFOLOCK_MT_H

#include "fifolock.h"

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fifolock_mt fifolock_mt;

/**
 * A lock for threads. Embed it anywhere (at most 128 bytes); initialise it
 * with fifolock_mt_init() or, for one with static storage, with
 * FIFOLOCK_MT_INITIALIZER. It must not be moved or copied while anyone holds
 * or waits on it. All fields are private.
 */
struct fifolock_mt {
    /* private */
    uint64_t word;       /* internal lock and idle fast path (src/mt.c) */
    void *wake;          /* parked waiters granted under the internal lock */
    fifolock_lock engine;     /* the FIFO queue and the hold counts */
    unsigned step_aside; /* a grant went to a thread that is not running */
    unsigned queued;     /* a hint: how many waited when the internal lock was last dropped */
};

/* The internal word of an unheld lock that nobody waits on (src/mt.c: IDLE). */
#define FIFOLOCK_MT__IDLE 4u

/**
 * A static initializer, as PTHREAD_MUTEX_INITIALIZER: `static fifolock_mt
 * lock = FIFOLOCK_MT_INITIALIZER;` is the lock fifolock_mt_init() makes
 * (unheld, nobody waiting), ready before any code runs, so usable from
 * constructors and from any thread without a once-only init. A constant
 * expression, in C and in C++ (where fifolock::mutex and friends use it
 * for their constexpr constructors).
 */
#ifdef __cplusplus
#define FIFOLOCK_MT_INITIALIZER { FIFOLOCK_MT__IDLE, nullptr, {}, 0u, 0u }
#else
#define FIFOLOCK_MT_INITIALIZER { FIFOLOCK_MT__IDLE, NULL, { 0 }, 0u, 0u }
#endif

/**
 * Initialises `lock`: unheld, nobody waiting (what FIFOLOCK_MT_INITIALIZER
 * gives). Returns 0, or EINVAL for a NULL lock. No other call may use the
 * lock during this one.
 */
FIFOLOCK_API int fifolock_mt_init(fifolock_mt *lock);

/**
 * Finishes with `lock`. Returns 0; EBUSY if it is held or waited on (nothing
 * changes, the lock stays usable); EINVAL for a NULL lock or one already
 * destroyed.
 *
 * What the caller must guarantee, as for pthread_mutex_destroy(): no other
 * call on the lock is in progress or starts, except release calls that
 * already dropped their hold (the lock may be freed even if the thread that
 * released it last has not returned from fifolock_mt_release() yet).
 * Holders and queued waiters are detected (EBUSY); a call that has not yet
 * taken its place cannot be, and a call that raced with a successful destroy
 * fails with EINVAL instead of using the lock, as long as the lock's memory
 * is still there. Once this returned 0, every call on the lock fails with
 * EINVAL until fifolock_mt_init() makes it anew; its memory may be freed.
 */
FIFOLOCK_API int fifolock_mt_destroy(fifolock_mt *lock);

/**
 * Takes one hold of `mode` on `lock`, blocking the calling thread until it is
 * granted. If nobody is waiting and `mode` is compatible with the current
 * holders it is granted at once; otherwise the request joins the tail of the
 * queue (even if it would be compatible now; if others already wait, after
 * one sched_yield(): see Order above) and is granted when every earlier
 * request has been and the holders allow it. The thread at the head of the
 * queue spins briefly; a waiting thread then yields, then sleeps on a futex.
 * Signals do not interrupt the wait.
 *
 * Returns 0 (the caller holds `mode`; release it with fifolock_mt_release()),
 * or, with nothing changed: EINVAL for a NULL lock or mode or a mode without a
 * predicate; EDEADLK, without blocking, if `mode` can never be granted (a
 * lock nobody holds would refuse it); ENOMEM if the lock needs memory to count more than
 * FIFOLOCK_INLINE_MODES distinct modes at once and none is left; EAGAIN if
 * the mode's count would overflow. Thread-safe. Predicates run under the
 * internal lock, in this call or in the call that grants the request.
 */
FIFOLOCK_API int fifolock_mt_acquire(fifolock_mt *lock, const fifolock_mode *mode);

/**
 * Takes one hold of `mode` if that can happen now: nobody is waiting and
 * `mode` is compatible with the current holders. Never blocks, never queues.
 * Returns 0 (held now), EBUSY (not now; nothing changed), or EINVAL, EDEADLK,
 * ENOMEM, EAGAIN as fifolock_mt_acquire(). Thread-safe; the predicate runs
 * under the internal lock.
 */
FIFOLOCK_API int fifolock_mt_try_acquire(fifolock_mt *lock, const fifolock_mode *mode);

/**
 * As fifolock_mt_acquire(), but gives up at `deadline`, an absolute
 * CLOCK_MONOTONIC time. Returns 0 (held now) or ETIMEDOUT: the request left
 * the queue without a trace (waiters it held back are let through) and the
 * caller holds nothing. Never both: if the grant and the deadline race, the
 * grant wins and 0 is returned. A deadline already past behaves like
 * fifolock_mt_try_acquire() but reports ETIMEDOUT instead of EBUSY; so does
 * one that passes during the one yield before queueing (see Order). A
 * request that can never be granted is EDEADLK at once, deadline or not.
 * Errors as fifolock_mt_acquire(), plus EINVAL for a NULL deadline or one
 * whose tv_nsec is outside [0, 999999999]. Thread-safe; predicates run under
 * the internal lock, here or in the call that grants the request, and the
 * withdrawal of a timed-out head may grant the waiters behind it inside this
 * call.
 */
FIFOLOCK_API int fifolock_mt_timed_acquire(fifolock_mt *lock, const fifolock_mode *mode,
                                           const struct timespec *deadline);

/**
 * Drops one hold of `mode` and grants waiters from the head of the queue
 * while the head is compatible; they are counted as holders inside this call
 * and woken by it. Returns 0, EPERM if `mode` is not held (nothing changes),
 * or EINVAL for a NULL lock or mode. Any thread may release. When it hands
 * the lock to a thread that was yielding or asleep, it yields the CPU once
 * (sched_yield()) before returning, so that on a busy machine that thread
 * runs at once. Thread-safe; the predicates of the waiters at the head run
 * under the internal lock, in this call.
 */
FIFOLOCK_API int fifolock_mt_release(fifolock_mt *lock, const fifolock_mode *mode);

/* ------------------------------------------------------------------------ */
/* Weighted requests and conversions (the rules of fifolock.h)              */
/* ------------------------------------------------------------------------ */

/**
 * As fifolock_mt_acquire(), for `n` holds of `mode` at once, all or nothing:
 * a waiting request of n keeps its place in the queue and holds back those
 * behind it, even ones that would fit (a big request is never starved).
 * Release them with fifolock_mt_release_n(). Errors as fifolock_mt_acquire(),
 * plus EINVAL for n == 0 and EAGAIN if n more would overflow the mode's count;
 * EDEADLK at once if n holds would not fit a lock nobody holds (more than a
 * semaphore's size, fifolock_write with n = 2).
 */
FIFOLOCK_API int fifolock_mt_acquire_n(fifolock_mt *lock, const fifolock_mode *mode, size_t n);

/** As fifolock_mt_try_acquire(), for `n` holds at once: 0 or EBUSY (nothing taken),
    EDEADLK (never: as fifolock_mt_acquire_n()), EINVAL, ENOMEM, EAGAIN. */
FIFOLOCK_API int fifolock_mt_try_acquire_n(fifolock_mt *lock, const fifolock_mode *mode,
                                           size_t n);

/** As fifolock_mt_timed_acquire(), for `n` holds at once. */
FIFOLOCK_API int fifolock_mt_timed_acquire_n(fifolock_mt *lock, const fifolock_mode *mode,
                                             size_t n, const struct timespec *deadline);

/**
 * Drops `n` holds of `mode` at once, then grants as fifolock_mt_release().
 * Returns 0, EPERM if fewer than n are held (nothing changes), or EINVAL
 * (also for n == 0).
 */
FIFOLOCK_API int fifolock_mt_release_n(fifolock_mt *lock, const fifolock_mode *mode, size_t n);

/**
 * Turns one hold of `from` into one of `to` without letting go (downgrade a
 * write to a read; upgrade fifolock_upgradable to fifolock_write), blocking
 * until that can happen. At once if `to` may join the holders other than
 * this hold of `from` (waiters that `from` held back are then granted and
 * woken by this call). Otherwise the request waits ahead of the whole queue,
 * the caller keeping `from`; nothing else is granted meanwhile, and the
 * release that makes room switches it (the same direct handoff as a grant).
 *
 * Returns 0 (the caller holds `to`, not `from`), or, with nothing changed:
 * EPERM if `from` is not held; EDEADLK if it would have to wait and either
 * `to` can never be granted (a lock nobody else holds would refuse it) or
 * another conversion already waits on the lock (two readers that both
 * upgrade would wait for each other for ever); EINVAL for a NULL lock or mode, or `to`
 * without a predicate; ENOMEM, EAGAIN as fifolock_mt_acquire(). Thread-safe.
 * Which thread converts does not matter (holds belong to the lock), but one
 * that converts a hold it does not own takes it from whoever does.
 */
FIFOLOCK_API int fifolock_mt_convert(fifolock_mt *lock, const fifolock_mode *from,
                                     const fifolock_mode *to);

/**
 * As fifolock_mt_convert(), if the switch can be made now; never waits.
 * Returns 0, EBUSY (the caller still holds `from`), or the errors of
 * fifolock_mt_convert(); EDEADLK only for a `to` that can never be granted.
 */
FIFOLOCK_API int fifolock_mt_try_convert(fifolock_mt *lock, const fifolock_mode *from,
                                         const fifolock_mode *to);

/**
 * As fifolock_mt_convert(), but gives up at `deadline` (absolute,
 * CLOCK_MONOTONIC): ETIMEDOUT, and the caller still holds `from`; the
 * waiters the conversion held back are let through. If the switch and the
 * deadline race, exactly one wins: 0 with `to` held, or ETIMEDOUT with
 * `from` held, never both, never neither. A deadline already past behaves
 * like fifolock_mt_try_convert() but says ETIMEDOUT instead of EBUSY.
 * EINVAL also for a NULL deadline or a tv_nsec outside [0, 999999999].
 */
FIFOLOCK_API int fifolock_mt_timed_convert(fifolock_mt *lock, const fifolock_mode *from,
                                           const fifolock_mode *to,
                                           const struct timespec *deadline);

/* ------------------------------------------------------------------------ */
/* Waits that end on something else than a deadline                         */
/* ------------------------------------------------------------------------ */

/**
 * As fifolock_mt_timed_acquire_n() (a NULL `deadline`: none, as
 * fifolock_mt_acquire_n()), but before each sleep of its wait, and at least
 * every 50 ms while it waits, the calling thread asks `interrupted(arg)`
 * (see fifolock_interrupt_fn in fifolock.h; a NULL `interrupted` is never
 * asked, and the call is the plain one). Nonzero withdraws the request as
 * a deadline would, without a trace (waiters it held back are let through),
 * and the call returns EINTR with nothing held; if the grant won the race it
 * returns 0 and the caller holds the `n` holds. `interrupted` runs on the
 * calling thread, under no lock of this library; it must not call into
 * `lock`. It is not asked when the request is granted without sleeping.
 *
 * Returns 0, EINTR, ETIMEDOUT (the deadline passed: nothing held), or, with
 * nothing changed, the errors of fifolock_mt_timed_acquire_n(): EINVAL for
 * a NULL lock or mode, a mode without a predicate, n == 0, or a deadline
 * whose tv_nsec is outside [0, 999999999]; EDEADLK, ENOMEM, EAGAIN.
 * Thread-safe. For front ends whose waits must end on a signal (the Python
 * module's KeyboardInterrupt) or a cancelled task.
 */
FIFOLOCK_API int fifolock_mt_acquire_interruptible(fifolock_mt *lock, const fifolock_mode *mode,
                                                   size_t n, const struct timespec *deadline,
                                                   fifolock_interrupt_fn *interrupted,
                                                   void *arg);

/**
 * As fifolock_mt_timed_convert() (a NULL `deadline`: none, as
 * fifolock_mt_convert()), asking `interrupted(arg)` before each sleep as
 * fifolock_mt_acquire_interruptible() does. Nonzero withdraws the waiting
 * conversion: the call returns EINTR and the caller still holds `from`
 * (the waiters the conversion held back are let through); if the switch won
 * the race it returns 0 and the caller holds `to`. Never both, never
 * neither.
 *
 * Returns 0, EINTR, ETIMEDOUT (the caller still holds `from`), or, with
 * nothing changed, the errors of fifolock_mt_timed_convert(): EPERM,
 * EDEADLK, EINVAL (also for a tv_nsec outside [0, 999999999]), ENOMEM,
 * EAGAIN. Thread-safe.
 */
FIFOLOCK_API int fifolock_mt_convert_interruptible(fifolock_mt *lock, const fifolock_mode *from,
                                                   const fifolock_mode *to,
                                                   const struct timespec *deadline,
                                                   fifolock_interrupt_fn *interrupted,
                                                   void *arg);

/* ------------------------------------------------------------------------ */
/* For front ends built on fifolock_mt (language bindings)                  */
/* ------------------------------------------------------------------------ */

/**
 * Called by fifolock_mt_inspect() with the fifolock that the lock embeds,
 * under the lock's internal lock: the read-only queries of fifolock.h
 * (fifolock_holds_of(), fifolock_held(), fifolock_holds_list(),
 * fifolock_waiting(), fifolock_converting()) on `engine` all see one state.
 */
typedef void fifolock_mt_inspect_fn(const fifolock_lock *engine, void *arg);

/**
 * Calls `fn(engine, arg)` once, under the internal lock of `lock`, for a
 * consistent snapshot of its holds and queue (fifolock_mt_held() and
 * fifolock_mt_waiting() each see a moment of their own). `fn` runs on the
 * calling thread, where predicates run too: it must be quick, must not
 * change `engine`, and must not call any fifolock_mt_* function of the same
 * lock (the internal lock is not reentrant: that waits for ever). Other
 * threads' calls on `lock` wait meanwhile.
 *
 * Returns 0 once `fn` ran, or EINVAL (`fn` not called) for a NULL lock or
 * fn, or a destroyed lock. Thread-safe.
 */
FIFOLOCK_API int fifolock_mt_inspect(fifolock_mt *lock, fifolock_mt_inspect_fn *fn, void *arg);

/**
 * The fifolock that `lock` embeds, for the read-only queries of fifolock.h,
 * from a predicate that `lock` asks (it runs under the internal lock, so it
 * may read the lock it is asked about without fifolock_mt_inspect(), which
 * would wait for ever there). Anywhere else its contents change under other
 * threads' feet, and a hold taken by the idle fast path is not counted in
 * it until the next call: read it only where the internal lock is held
 * (from a predicate, or use fifolock_mt_inspect()). Never pass it to a
 * function that changes it. NULL for NULL; this function can't fail.
 */
FIFOLOCK_API const fifolock_lock *fifolock_mt_engine(const fifolock_mt *lock);

/**
 * Fork hooks, as for pthread_atfork(): fifolock_mt_before_fork() takes the
 * internal lock of `lock` (waiting, as any call does, for a call in progress
 * in another thread to leave it), so that a fork() made before the matching
 * fifolock_mt_after_fork() copies a whole queue and whole counts, never a
 * change half made. Call fifolock_mt_after_fork() after the fork in the
 * parent and in the child (in both, by the thread that forked). Between the
 * two, every other thread's call on `lock` waits, and the calling thread
 * must make no other call on it (it would wait for ever). What other threads
 * held or waited for stays held or queued in the child, where those threads
 * do not exist; what the forking thread held, it holds.
 *
 * fifolock_mt_before_fork() returns 0, or EINVAL for a NULL or destroyed
 * lock (then nothing is taken). fifolock_mt_after_fork() returns 0, EINVAL
 * for a NULL or destroyed lock, or EPERM if the internal lock is not held
 * at all (no fifolock_mt_before_fork() to match; nothing changes). Only
 * the thread that took it may call it: the internal lock has no owner to
 * check that against.
 */
FIFOLOCK_API int fifolock_mt_before_fork(fifolock_mt *lock);
FIFOLOCK_API int fifolock_mt_after_fork(fifolock_mt *lock);

/**
 * Number of threads queued on `lock` right now (0 for NULL): a snapshot that
 * may be stale by the time it is read. Thread-safe; it may run a predicate
 * under the internal lock. This function can't fail.
 */
FIFOLOCK_API size_t fifolock_mt_waiting(fifolock_mt *lock);

/**
 * Number of holders of exactly `mode` right now (0 for a NULL lock or mode, or
 * a mode never seen): a snapshot that may be stale by the time it is read.
 * Thread-safe; it may run a predicate under the internal lock. This function
 * can't fail.
 */
FIFOLOCK_API size_t fifolock_mt_held(fifolock_mt *lock, const fifolock_mode *mode);

#ifdef __cplusplus
}
#endif

#endif /* FIFOLOCK_MT_H */
