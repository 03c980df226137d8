/*
 * fifolock: first-in-first-out locks whose modes the user defines.
 *
 * A mode is a predicate over the lock's current hold counts ("how many holders
 * does each mode have right now?") that answers whether one more holder of
 * this mode may join. Mutexes, read/write locks, semaphores and intention
 * locks are all just modes. Requests are granted strictly in the order they
 * were made: a request never overtakes an earlier one that is still waiting.
 *
 * This header is the single-threaded lock for event loops. It never blocks,
 * allocates only to count more than FIFOLOCK_INLINE_MODES distinct modes at
 * once, and tells a waiter it got the lock by calling its `granted` callback. For POSIX threads see fifolock_mt.h.
 *
 * Errors are positive errno values returned by the function; errno itself is
 * never touched, nothing is printed and nothing aborts.
 */
#ifndef FIFOLOCK_H
#define FIFOLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * FIFOLOCK_API marks what the library exports. On Windows, a program that
 * uses the DLL (CMake: fifolock::fifolock) is compiled with FIFOLOCK_SHARED
 * so that the ready-made modes, which are data, are imported; with the
 * static library it is not.
 */
#if defined(_WIN32)
#if defined(FIFOLOCK_BUILDING)
#define FIFOLOCK_API __declspec(dllexport)
#elif defined(FIFOLOCK_SHARED)
#define FIFOLOCK_API __declspec(dllimport)
#else
#define FIFOLOCK_API
#endif
#elif defined(FIFOLOCK_BUILDING) && defined(__GNUC__)
#define FIFOLOCK_API __attribute__((visibility("default")))
#else
#define FIFOLOCK_API
#endif

#define FIFOLOCK_VERSION_MAJOR 1
#define FIFOLOCK_VERSION_MINOR 0
#define FIFOLOCK_VERSION_PATCH 0
#define FIFOLOCK_VERSION_STRING "1.0.0"

typedef struct fifolock_mode fifolock_mode;
typedef struct fifolock_holds fifolock_holds;
typedef struct fifolock_waiter fifolock_waiter;

/*
 * The event-loop lock has two names for one type: `fifolock` and
 * `fifolock_lock`. C++ keeps `fifolock` for the namespace of fifolock.hpp,
 * so there the type is `fifolock_lock` alone (its struct tag, the same
 * layout and the same functions: C symbols do not name struct tags), and
 * fifolock.h and fifolock.hpp may be included in either order.
 * `fifolock_c_lock` is its C++ name of fifolock.hpp 1.0, kept.
 */
#ifdef __cplusplus
typedef struct fifolock_lock fifolock_lock;
typedef fifolock_lock fifolock_c_lock;
#else
typedef struct fifolock fifolock;
typedef struct fifolock fifolock_lock;
#endif

/* ------------------------------------------------------------------------ */
/* Modes                                                                    */
/* ------------------------------------------------------------------------ */

/**
 * A mode of a lock: configuration, not state.
 *
 * A mode's identity is its address: the lock counts holders per
 * `fifolock_mode *`, so two structs with equal contents are two modes. Modes
 * need no registration and any number of them may be used on one lock.
 *
 * `is_compatible` says whether one more holder of `self` may join the current
 * holders. It must be a pure, quick function of `holds` and of `*self`: it
 * runs inside the lock's calls (for fifolock_mt, under its internal lock)
 * and must not call back into the lock. `holds` is always fifolock_holds_of()
 * of the lock that asks (for fifolock_mt, of the fifolock it embeds), so a
 * predicate may find its lock from it. A hold once granted is kept: an
 * impure predicate that would refuse it later never takes it back.
 *
 * It must also be monotone: fewer holders never make a mode incompatible
 * (if it admits one more beside some holders, it admits one beside any
 * part of them). Every ready-made mode is. So a request that a lock nobody
 * holds refuses (n above a semaphore's size, fifolock_write with n = 2, a
 * semaphore of 0) can never be granted: every call refuses it at once with
 * EDEADLK, queueing nothing, rather than let it wait for ever ahead of
 * everybody. To tell, the lock asks the predicate once more with its own
 * hold table emptied for the question (n times for n holds, with the ones
 * before counted), only when the usual question said no or others wait.
 *
 * Cost: a lock keeps one count per distinct mode held or queued and finds a
 * mode's count by a linear search, so each call (and each fifolock_held() in
 * a predicate) costs time in proportion to the number of distinct modes in
 * use on that lock at that moment: nothing to notice for the usual few, but
 * a lock with thousands of distinct modes at once is slow (10,000 distinct
 * modes: each call walks 10,000 entries).
 */
struct fifolock_mode {
    bool (*is_compatible)(const fifolock_mode *self, const fifolock_holds *holds);
    const char *name; /* for messages and tracing; may be NULL */
    size_t limit;     /* free parameter for the predicate, e.g. a semaphore's size */
};

/**
 * Number of current holders of exactly `mode` (0 for a mode never seen).
 * For use inside predicates and for introspection. This function can't fail;
 * a NULL `holds` or `mode` reads as 0.
 */
FIFOLOCK_API size_t fifolock_held(const fifolock_holds *holds, const fifolock_mode *mode);

/**
 * For a predicate: how many holders of its mode are being asked for at once
 * (n of a weighted request, fifolock_acquire_n(); 1 otherwise).
 *
 * A predicate that never calls this is asked once per holder, each time with
 * the ones before counted: n questions for a request of n. A predicate that
 * calls it answers for all n at once, and is asked once: whether n more
 * holders of its mode may join `holds` (the ready-made semaphore does so,
 * so taking a million units costs what taking one does). Its answer must be
 * the one that n single questions would give. This function can't fail; a
 * NULL `holds`, or a table outside a lock's call, reads as 1.
 */
FIFOLOCK_API size_t fifolock_asked(const fifolock_holds *holds);

/**
 * Total number of holders, of all modes together. This function can't fail;
 * a NULL `holds` reads as 0.
 */
FIFOLOCK_API size_t fifolock_held_total(const fifolock_holds *holds);

/**
 * Lists the modes held right now, in no particular order: stores up to `max`
 * of them in `modes[]` and their counts in `counts[]` (either array may be
 * NULL when `max` is 0), and returns how many distinct modes are held, which
 * may exceed `max`. This function can't fail.
 */
FIFOLOCK_API size_t fifolock_holds_list(const fifolock_holds *holds, const fifolock_mode **modes,
                                        size_t *counts, size_t max);

/** Exclusive: compatible only when no other fifolock_mutex is held. */
FIFOLOCK_API extern const fifolock_mode fifolock_mutex;
/** Shared: compatible unless fifolock_write is held. */
FIFOLOCK_API extern const fifolock_mode fifolock_read;
/** Exclusive: compatible only when neither fifolock_read nor fifolock_write is held. */
FIFOLOCK_API extern const fifolock_mode fifolock_write;

/**
 * Intention locks, with the standard matrix (a row may join the columns held):
 *
 *            IS   IX   S    SIX  X
 *      IS    yes  yes  yes  yes  no
 *      IX    yes  yes  no   no   no
 *      S     yes  no   yes  no   no
 *      SIX   yes  no   no   no   no
 *      X     no   no   no   no   no
 */
FIFOLOCK_API extern const fifolock_mode fifolock_is;
FIFOLOCK_API extern const fifolock_mode fifolock_ix;
FIFOLOCK_API extern const fifolock_mode fifolock_s;
FIFOLOCK_API extern const fifolock_mode fifolock_six;
FIFOLOCK_API extern const fifolock_mode fifolock_x;

/**
 * Upgradable read: shares with fifolock_read, excludes fifolock_write and
 * other upgradables (and fifolock_write excludes it). So at most one reader
 * at a time holds it, and that one may later convert it to fifolock_write
 * (fifolock_convert()) without letting go: two upgradable readers can't
 * wait for each other.
 */
FIFOLOCK_API extern const fifolock_mode fifolock_upgradable;

/**
 * Semaphore predicate: compatible while fewer than `self->limit` hold `self`;
 * for a weighted request of n, while held + n <= limit, in one question. So
 * a request of more than `limit` holds (or any on a semaphore of size 0)
 * never fits, and is refused at once with EDEADLK.
 */
FIFOLOCK_API bool fifolock_semaphore_is_compatible(const fifolock_mode *self,
                                                   const fifolock_holds *holds);

/** Initializer of a semaphore mode of `size` places: `fifolock_mode sem = FIFOLOCK_SEMAPHORE(3);` */
#define FIFOLOCK_SEMAPHORE(size) { fifolock_semaphore_is_compatible, "semaphore", (size) }

/* ------------------------------------------------------------------------ */
/* The lock (single-threaded, for event loops)                               */
/* ------------------------------------------------------------------------ */

/**
 * Returned by fifolock_acquire() (and fifolock_acquire_n(), fifolock_convert())
 * when the request was queued: a status, negative, so equal to no errno value.
 */
#define FIFOLOCK_WAITING (-1)

/** Modes whose counts a lock keeps without allocating. */
#define FIFOLOCK_INLINE_MODES 3

/**
 * Called exactly once when a queued request is granted. It runs inside the
 * fifolock_release() or fifolock_cancel() call (or the fifolock_acquire()
 * call made from another callback) that made room, after the hold counts
 * include the new holder. It may call any fifolock_* function on the same
 * lock, including acquiring, releasing and cancelling; those calls never run
 * callbacks themselves, the outer call does, in queue order, without
 * recursion. From the call on, the waiter's memory is the caller's again.
 */
typedef void fifolock_granted_fn(fifolock_waiter *waiter, void *arg);

/**
 * For waits that must end on something other than a deadline (a signal seen
 * by a language runtime, a cancelled task): the blocking front ends'
 * `_interruptible` calls ask `interrupted(arg)` before each sleep of a wait,
 * and a sleep lasts at most 50 ms. Nonzero withdraws the request as a
 * deadline would, leaving no trace, and the call returns EINTR (unless the
 * grant won the race: then it returns as granted). It runs on the waiting
 * thread, under no lock of this library; it must not call into the same lock.
 */
typedef int fifolock_interrupt_fn(void *arg);

/* One mode's counts. Private: read them with fifolock_held(). */
struct fifolock_hold {
    const fifolock_mode *mode;
    uint32_t held;   /* current holders of `mode` */
    uint32_t queued; /* waiters of `mode` in the queue */
};

/* Read-only view of a lock's hold counts. Fields private. */
struct fifolock_holds {
    uint32_t used;                /* entries in use: inline first, then more[] */
    uint32_t more_cap;            /* capacity of more[] */
    uint32_t asked;               /* > 1 while a weighted request is asked about */
    uint32_t answered;            /* set by fifolock_asked() during that question */
    size_t total;                 /* sum of held over all entries */
    struct fifolock_hold *more;   /* heap overflow, NULL while unused */
    struct fifolock_hold inline_[FIFOLOCK_INLINE_MODES];
};

/**
 * A lock. Embed it anywhere; initialise with fifolock_init(). It must not be
 * moved or copied while anyone holds or waits on it. All fields are private.
 * In C: `fifolock` or `fifolock_lock`; in C++: `fifolock_lock` (see above).
 */
#ifdef __cplusplus
struct fifolock_lock {
#else
struct fifolock {
#endif
    /* private */
    fifolock_waiter *head; /* oldest waiter, NULL if none */
    fifolock_waiter *tail; /* newest waiter */
    uint32_t waiting;      /* waiters in the queue */
    uint32_t granting;     /* a grant loop is running on this lock */
    fifolock_holds holds;
};

/**
 * A request for a lock, allocated by the caller (on the stack, inside a
 * larger struct...). Before its first use it must be zeroed or set with
 * FIFOLOCK_WAITER_INIT (the lock reads its state to refuse a waiter that is
 * still queued). Pass it to fifolock_acquire(); while it is queued it must
 * stay where it is. Its memory may be reused once it was granted (acquire
 * returned 0, or `granted` ran) or cancelled, and it may be passed to
 * fifolock_acquire() again as it is. All fields are private but `data`.
 */
struct fifolock_waiter {
    /* public */
    void *data; /* for the caller; the lock never reads or writes it */
    /* private */
    fifolock_waiter *next;
    fifolock_waiter *prev;
    fifolock_lock *lock;
    const fifolock_mode *mode;
    fifolock_granted_fn *granted;
    void *arg;
    const fifolock_mode *from; /* a conversion: the mode it holds now; else NULL */
    size_t n;                  /* holds asked for */
    uint32_t state;
};

#define FIFOLOCK_WAITER_INIT { 0 }

/**
 * Initialises `lock`: unheld, nobody waiting. This function can't fail
 * (a NULL `lock` is ignored).
 */
FIFOLOCK_API void fifolock_init(fifolock_lock *lock);

/**
 * Finishes with `lock`. Returns 0, EBUSY if it is held or waited on (then
 * nothing changes and the lock stays usable), or EINVAL for a NULL lock.
 */
FIFOLOCK_API int fifolock_destroy(fifolock_lock *lock);

/**
 * Requests `mode` on `lock`.
 *
 * Returns 0 if the lock is held now: nobody was waiting and `mode` is
 * compatible with the current holders; `granted` is not called. Returns
 * FIFOLOCK_WAITING if the request joined the tail of the queue: `granted`
 * will run exactly once, from the release or cancel call that makes room
 * (never from inside this call, unless this call is itself made from a
 * callback, whose outer call then runs it). A compatible mode still queues
 * when anybody is waiting: that is what makes the lock fair.
 *
 * Errors (the lock and the waiter are left as they were, and `granted` is
 * never called): EINVAL for a NULL lock, waiter, mode or `granted`, a mode
 * without a predicate, or a waiter that is already queued; EDEADLK if
 * `mode` can never be granted (a lock nobody holds would refuse it: see
 * struct fifolock_mode); ENOMEM when the lock needs memory to count more
 * than FIFOLOCK_INLINE_MODES distinct modes at once and none is left;
 * EAGAIN if a mode's count would overflow.
 */
FIFOLOCK_API int fifolock_acquire(fifolock_lock *lock, fifolock_waiter *waiter,
                                  const fifolock_mode *mode, fifolock_granted_fn *granted,
                                  void *arg);

/**
 * Takes `mode` on `lock` if that can happen now: nobody is waiting and `mode`
 * is compatible with the current holders. Never queues, never calls a
 * callback. Returns 0 (held now), EBUSY, EDEADLK (never: a lock nobody
 * holds would refuse it, so it is not merely busy), EINVAL (NULL lock or
 * mode, mode without predicate), ENOMEM or EAGAIN (as for fifolock_acquire()).
 */
FIFOLOCK_API int fifolock_try_acquire(fifolock_lock *lock, const fifolock_mode *mode);

/**
 * Drops one hold of `mode`, then grants waiters from the head of the queue
 * while the head is compatible; their callbacks run inside this call, in
 * queue order. Returns 0, EPERM if `mode` is not held (nothing changes), or
 * EINVAL for a NULL lock or mode.
 */
FIFOLOCK_API int fifolock_release(fifolock_lock *lock, const fifolock_mode *mode);

/**
 * Withdraws a queued request. Returns 0 if it was waiting: it leaves the
 * queue in O(1), its callback will never run, and waiters that it held back
 * are granted inside this call (their callbacks run here). Returns EALREADY
 * if it was granted (by acquire at once, or later): the hold is the
 * caller's and must be released once, unless it already was (holds are
 * counts per mode: a second release drops somebody else's hold). Returns
 * EINVAL for a NULL lock or waiter, a waiter of another lock, or one that is
 * idle (never queued, or already cancelled). Nothing changes on error.
 */
FIFOLOCK_API int fifolock_cancel(fifolock_lock *lock, fifolock_waiter *waiter);

/* ------------------------------------------------------------------------ */
/* Weighted requests and conversions                                        */
/* ------------------------------------------------------------------------ */

/**
 * As fifolock_acquire(), for `n` holds of `mode` at once (a semaphore's n
 * permits). All or nothing: granted when n more holders of `mode` may join,
 * asked one after another with each one before counted (or at once, through
 * the mode's is_compatible_n). Waiting, it keeps its place in the queue like
 * any request and holds back everybody behind it, even requests that would
 * fit now: a big request is never starved by small ones. Release the holds
 * with fifolock_release_n() (or n fifolock_release() calls). Errors as
 * fifolock_acquire(), plus EINVAL for n == 0 and EAGAIN if n more would
 * overflow the mode's count; EDEADLK if n holds would not fit a lock nobody
 * holds (more than a semaphore's size, fifolock_write with n = 2).
 * fifolock_acquire() is this with n == 1.
 */
FIFOLOCK_API int fifolock_acquire_n(fifolock_lock *lock, fifolock_waiter *waiter,
                                    const fifolock_mode *mode, size_t n,
                                    fifolock_granted_fn *granted, void *arg);

/**
 * As fifolock_try_acquire(), for `n` holds at once, all or nothing: 0 or
 * EBUSY (nothing taken), EDEADLK (never, as fifolock_acquire_n()), EINVAL
 * (also for n == 0), ENOMEM, EAGAIN.
 */
FIFOLOCK_API int fifolock_try_acquire_n(fifolock_lock *lock, const fifolock_mode *mode, size_t n);

/**
 * Drops `n` holds of `mode` at once, then grants as fifolock_release().
 * Returns 0, EPERM if fewer than n are held (nothing changes), or EINVAL for
 * a NULL lock or mode or n == 0.
 */
FIFOLOCK_API int fifolock_release_n(fifolock_lock *lock, const fifolock_mode *mode, size_t n);

/**
 * Turns one hold of `from` into one hold of `to` without letting go: a
 * writer downgrades to a reader, an upgradable reader upgrades to a writer.
 *
 * Returns 0 if `to` may join the holders other than this one hold of `from`:
 * the switch is made now (`granted` is not called), and waiters that `from`
 * held back are granted inside this call (their callbacks run here).
 * Otherwise the conversion waits ahead of the whole queue (its caller already
 * holds the lock) and returns FIFOLOCK_WAITING: the caller keeps `from`,
 * nothing else is granted meanwhile and new requests queue behind it;
 * `granted` runs once, from the release or cancel call that made room, when
 * the switch is made. fifolock_cancel() withdraws a waiting conversion (0:
 * the caller still holds `from`) or says EALREADY (it holds `to`).
 *
 * Errors (nothing changes, `granted` is never called): EINVAL for NULL
 * pointers, `to` without a predicate or a waiter that is queued; EPERM if
 * `from` is not held; EDEADLK if the switch can't be made now and either
 * `to` can never be granted (a lock nobody else holds would refuse it: it
 * would wait ahead of everybody for ever) or another conversion already
 * waits on this lock (two readers that both upgrade would wait for each
 * other for ever); ENOMEM, EAGAIN as for fifolock_acquire().
 */
FIFOLOCK_API int fifolock_convert(fifolock_lock *lock, fifolock_waiter *waiter,
                                  const fifolock_mode *from, const fifolock_mode *to,
                                  fifolock_granted_fn *granted, void *arg);

/**
 * Turns one hold of `from` into `to` if that can happen now (as
 * fifolock_convert() returning 0); never waits. Returns 0, EBUSY (nothing
 * changed), EDEADLK (`to` can never be granted, as fifolock_convert()),
 * EPERM, EINVAL, ENOMEM or EAGAIN.
 */
FIFOLOCK_API int fifolock_try_convert(fifolock_lock *lock, const fifolock_mode *from,
                                      const fifolock_mode *to);

/** Number of queued requests (0 for NULL), a waiting conversion included. This function can't fail. */
FIFOLOCK_API size_t fifolock_waiting(const fifolock_lock *lock);

/**
 * Whether a conversion waits on `lock` (fifolock_convert() returned
 * FIFOLOCK_WAITING and it was neither switched nor cancelled yet): it waits
 * ahead of the whole queue, nothing else is granted meanwhile, and another
 * conversion would get EDEADLK. False for NULL. This function can't fail.
 */
FIFOLOCK_API bool fifolock_converting(const fifolock_lock *lock);

/**
 * The lock's hold counts, to read with fifolock_held() and
 * fifolock_holds_list(). Valid as long as the lock is. NULL for NULL.
 */
FIFOLOCK_API const fifolock_holds *fifolock_holds_of(const fifolock_lock *lock);

/**
 * A short English message for an error code returned by this library
 * ("the lock is held or waited on", ...); for another errno value (those the
 * etcd lock passes on, ECONNREFUSED, EACCES, EIO), strerror()'s. Never NULL.
 * This function can't fail.
 */
FIFOLOCK_API const char *fifolock_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif /* FIFOLOCK_H */
