/*
 * The thread front end: the engine (engine.c) behind an internal lock, with
 * waiting threads that spin, yield, then sleep on a futex. The engine alone
 * queues and grants; this file serialises calls into it, keeps one hold of an
 * idle lock outside it (the fast path), and tells threads what it decided.
 *
 * "futex_wait" and "futex_wake" below are the waiting layer's
 * fifolock__wait() and fifolock__wake_one() (wait.h): a futex on Linux,
 * WaitOnAddress on Windows, a parking table elsewhere; the protocol needs
 * only their contract, which the model assumes.
 *
 * The protocol below is also a Promela model, tests/model/fifolock_mt.pml,
 * checked with spin by tests/model/run_spin.sh (part of `make check`). Each
 * step name here (L1-L3, F1-F2, A1-A6, N1-N2, T1, G1-G4) labels the same
 * step there and the code that does it in this file; change them together.
 * A0 and G5 are sched_yield() hints that only delay a thread (after A0, a
 * timed call whose deadline passed meanwhile makes one last try under L, as
 * one whose deadline passed before the call does); the model leaves them
 * out, and D1 (destroy) too.
 *
 * Words
 *   lock->word   (64 bits) the internal lock L and the fast path:
 *                  LOCKED    L is held; then every other bit is 0 but SLEEPERS
 *                  SLEEPERS  threads may sleep on L's futex (the low 32 bits)
 *                  IDLE      L is free and the engine is idle: nobody holds
 *                            (but M, below) and nobody waits
 *                  M         the other bits: 0, or the mode of the one hold
 *                            taken by the fast path, which the engine does not
 *                            count (modes are 8-aligned; others never go fast)
 *                  DEAD      SLEEPERS alone: destroyed (D1); never otherwise,
 *                            as SLEEPERS is set only while LOCKED
 *   w->state     (32 bits) one per waiting call, in a `struct waiter` on the
 *                waiting thread's stack (it embeds the engine's waiter):
 *                  WAITING -> YIELDING -> PARKED -> WAKING -> GRANTED
 *                  WAITING -> PARKED                (when it does not yield)
 *                  PARKED -> NUDGED -> WAITING      (woken as the new head)
 *                  WAITING, YIELDING or NUDGED -> GRANTED   (told while awake)
 *   lock->wake   waiters granted while asleep, to wake once L is free.
 *   lock->step_aside  set under L when a grant went to a thread that yields,
 *                sleeps or was just woken (so is likely not on a CPU): G5.
 *   busy         a hint for the whole process (not a field of the lock: G5
 *                runs after L is dropped, when the lock may already be
 *                freed), read and written without L: the last sched_yield()
 *                timed here took long (other threads ran), so CPUs are
 *                crowded (then N1 is skipped).
 *   lock->queued a hint, written under L by L3 and read without L by A0: how
 *                many waited in the queue when L was last dropped.
 *
 * Invariants (K: the lock word; J: waiters)
 *   K1  Only the holder of L reads or writes the engine, lock->wake and
 *       lock->step_aside.
 *   K2  word == IDLE: L is free and the engine is idle.
 *   K3  word == M|IDLE: the same, plus exactly one hold of M that the engine
 *       does not count; the thread that took it may still hand it back (F2).
 *   K4  word == 0: L is free and every hold is counted by the engine.
 *   K5  lock->wake is empty whenever L is free (G3 empties it before L3).
 *   J1  w->state moves only along the arrows above. The waiting thread makes
 *       WAITING -> YIELDING -> PARKED, WAITING -> PARKED and NUDGED ->
 *       WAITING, each by CAS; other threads make the other moves, under L
 *       but for WAKING -> GRANTED.
 *   J2  Another thread touches a waiter's frame only (a) under L while the
 *       engine grants it (G2) or while it is the head of the queue (N1), and
 *       (b) while its state is WAKING (G4).
 *   J3  A waiting thread leaves its frame only once its state is GRANTED, or
 *       once fifolock_cancel() took it out of the queue under L: after that
 *       no grant can reach it (the engine grants only queued waiters, and
 *       only under L).
 *   From J1-J3: nobody touches a frame that has been left.
 *
 * The internal lock L: a three-state futex lock (Drepper, "Futexes are
 * tricky"), with the fast path in the same word
 *   L1 take   CAS word: u -> LOCKED (LOCKED|SLEEPERS once this thread slept),
 *             for any u without LOCKED but DEAD (then: EINVAL, see D1). If u
 *             was M|IDLE, count that hold in the engine now, as granted,
 *             without asking M's predicate again (a hold once granted is
 *             never taken back, even from an impure predicate). So under L
 *             the engine sees every hold.
 *   L2 sleep  after a bounded spin on LOCKED: CAS word LOCKED ->
 *             LOCKED|SLEEPERS, futex_wait(word, LOCKED|SLEEPERS), back to L1.
 *   L3 drop   old = XCHG(word, engine idle ? IDLE : 0); if old had SLEEPERS,
 *             futex_wake(word, 1).
 *   No lost wakeup on L: a thread sleeps only if the word still reads
 *   LOCKED|SLEEPERS when the kernel checks; SLEEPERS is cleared only by L3,
 *   which then wakes one sleeper, and that one takes L with SLEEPERS set
 *   again, so that its own L3 wakes the next. L is not fair (a woken sleeper
 *   competes again), but it is held only for one engine call, and a thread
 *   that spins on it retakes it within a few of them. The FIFO order of
 *   requests is the order in which they take L at A1.
 *
 * The fast path: one atomic instruction each way, no engine call
 *   F1 acquire   if M is a ready-made mode that admits a first holder
 *                (fifolock__fits_idle(), which asks no predicate): CAS word
 *                IDLE -> M|IDLE. Only from K2: nobody waits and M is
 *                compatible, exactly when the engine would grant at once; so
 *                FIFO order holds. A user's predicate is asked only under L,
 *                and always with the engine's own hold table, so that it may
 *                find its lock from it (fifolock.h); its modes take L.
 *   F2 release   CAS word M|IDLE -> IDLE.
 *   Every other call takes L (L1), which hands the uncounted hold to the
 *   engine first; a failed F2 then releases through the engine.
 *
 * Destroying
 *   D1 destroy   under L, fifolock_destroy() of the engine; if it says 0,
 *                XCHG word -> DEAD (L is never dropped) and, if SLEEPERS was
 *                set, wake every sleeper on L. A call that was waiting for L
 *                then finds DEAD instead of taking it, and fails with EINVAL
 *                without touching the engine; so does every later call until
 *                fifolock_mt_init(). This holds while the lock's memory is
 *                still there; the caller must not free it while other calls
 *                may be in progress (fifolock_mt.h).
 *
 * Acquiring with a wait (thread T, frame f, state s)
 *   A0 defer    if lock->queued says others wait, sched_yield() once: T is
 *               only slower to arrive; its request is made at A1. A hint
 *               only, like G5 (see defer()).
 *   A1 enqueue  under L: s = WAITING; fifolock_acquire() queues f's waiter
 *               and reports how many wait ahead. Drop L (L3).
 *   A2 spin     the head of the queue (none ahead) polls s with a pause
 *               instruction a bounded number of times. s == GRANTED: return 0.
 *               Then CAS s: WAITING -> YIELDING (if that fails, s is GRANTED:
 *               return 0) and call sched_yield() a bounded number of times
 *               (fewer when others wait ahead), polling s in between; stop
 *               early once a yield took very long (other threads ran on
 *               this CPU, so it is crowded and sleeping serves better). A
 *               waiter with others ahead does not spin, but yields the
 *               same way. Deadline passed, in any of these: T1.
 *   A3 park     CAS s: YIELDING (or WAITING) -> PARKED; if that fails, s is
 *               GRANTED: return 0.
 *   A4 sleep    futex_wait(s, PARKED, deadline). A wait that may be
 *               interrupted (fifolock_mt_*_interruptible) first asks
 *               its hook, and sleeps at most a slice (50 ms) before asking
 *               again; a yes withdraws the request as T1 does, with EINTR.
 *   A5 look     s == GRANTED: return 0. s == WAKING: A6. s == NUDGED: N2.
 *               s == PARKED: deadline passed -> T1; otherwise (spurious
 *               wakeup, signal) -> A4.
 *   A6 linger   poll s (pause, then sched_yield) until s == GRANTED: the
 *               granting thread is between G2 and the end of G4 and may still
 *               use f. Return 0.
 *
 * Timing out
 *   T1 cancel   take L; fifolock_cancel(f's waiter):
 *               0        f left the queue without a trace, and the engine
 *                        granted whoever it held back (G1-G2 run inside the
 *                        cancel). Drop L and wake them (G3-G4); ETIMEDOUT.
 *               EALREADY the grant won the race; s is GRANTED or WAKING.
 *                        Drop L, A6, return 0: the caller holds the lock.
 *
 * Granting (thread G, in fifolock_release or T1's fifolock_cancel, under L)
 *   G1 count    the engine moves f's waiter from the queue to the holders
 *               (held++), then calls granted(): grant before wake, so that
 *               nobody can take the lock between the decision and the handoff.
 *   G2 tell     CAS s: WAITING, YIELDING or NUDGED -> GRANTED (release),
 *               retried while s is one of those; then G is done with f. If s
 *               was PARKED instead: s = WAKING; push f on lock->wake. If s
 *               was anything but WAITING, set lock->step_aside.
 *   G3 drop     take the list off lock->wake; drop L (L3).
 *   G4 wake     for each f of the list: read its link, futex_wake(s), then
 *               s = GRANTED (release). After that store G never touches f.
 *   G5 step aside  a releasing thread that saw step_aside (it reads and clears
 *               it under L) calls sched_yield() once before returning, and
 *               times it (busy). On a CPU shared with the thread it
 *               handed the lock to, that thread runs now, before the releaser
 *               can queue again behind it; the lock then tends to go idle and
 *               each thread runs on the fast path in its own time slice,
 *               instead of every hold costing a switch. A hint only:
 *               correctness never depends on it. It does not touch the lock:
 *               once L is dropped and the wakes are done, another thread may
 *               take, release, destroy and free it.
 *
 * Nudging the next head (so that on idle CPUs it spins when its grant comes)
 *   N1 nudge    under L, after a release or a withdrawal changed the head of
 *               the queue, unless busy: if the new head's s is PARKED,
 *               CAS it to NUDGED and futex_wake(s), still under L (the head
 *               can't leave the queue, so its frame, without L).
 *   N2 rise     a waiter that finds s == NUDGED in A5 makes it WAITING by CAS
 *               (if that fails, s is GRANTED: return 0) and goes back to A2
 *               as the head.
 *
 * No lost wakeup for waiters: T sleeps (A4) only through futex_wait(s,
 * PARKED), which atomically checks s == PARKED and queues T in the kernel.
 * The moves away from PARKED are G2 and N1, and each is followed by a
 * futex_wake on s (G4's, or N1's own). If s still read PARKED when T was
 * queued, the move came later, so its wake finds T asleep and wakes it;
 * otherwise futex_wait returns at once and T sees NUDGED, WAKING or GRANTED.
 * A WAKING waiter never sleeps again (A6 only polls), so one wake is enough;
 * a NUDGED one sleeps again only after making s PARKED anew (A3), which a
 * later grant then sees. A wait with a deadline ends at it anyway and goes
 * through T1, where L orders it against any grant.
 *
 * Ordering: the release stores of G2/G4 pair with T's acquire loads of s, and
 * L1/L3 are acquire/release: what a holder wrote before releasing is seen by
 * the thread it hands the lock to.
 *
 * The lock's own word is used by futex_wake after L is dropped (L3), as in a
 * pthread mutex: a lock may be destroyed and freed as soon as it can be taken
 * and is idle, and a late wake on freed memory only ever causes a spurious
 * wakeup, which every futex wait here tolerates.
 */
#include "mt_internal.h"
#include "wait.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdbool.h>

#ifdef FIFOLOCK_DEBUG
#include <assert.h>
#define DEBUG_ASSERT(x) assert(x)
#else
#define DEBUG_ASSERT(x) ((void)0)
#endif

_Static_assert(sizeof(fifolock_mt) <= 128, "fifolock_mt must stay within 128 bytes");

#define W_LOCKED 1u
#define W_SLEEPERS 2u
#define W_IDLE FIFOLOCK_MT__IDLE /* FIFOLOCK_MT_INITIALIZER's word */
#define W_FLAGS 7u
/* Destroyed: no thread takes L any more. SLEEPERS never appears without LOCKED otherwise. */
#define W_DEAD W_SLEEPERS

#define S_WAITING 0u
#define S_YIELDING 1u
#define S_PARKED 2u
#define S_NUDGED 3u
#define S_WAKING 4u
#define S_GRANTED 5u

struct fifolock_mt__tuning fifolock_mt__tuning = { FIFOLOCK_MT__SPIN, FIFOLOCK_MT__YIELD,
                                                   FIFOLOCK_MT__YIELD_BEHIND,
                                                   FIFOLOCK_MT__LOCK_SPIN, 1,
                                                   FIFOLOCK_MT__SHARED_NS, FIFOLOCK_MT__DEFER };
void (*fifolock_mt__on_timeout)(fifolock_mt *lock);

/* One waiting call, on its thread's stack. */
struct waiter {
    fifolock_waiter w;  /* first: the engine hands this back to granted() */
    uint32_t state;     /* S_*, atomic */
    struct waiter *next; /* in lock->wake; written under L */
    fifolock_interrupt_fn *interrupted; /* asked before each sleep; NULL: never */
    void *interrupt_arg;
};

/* How long a wait that can be interrupted sleeps before it asks again. */
#define INTERRUPT_SLICE_NS 50000000

/* ---- small helpers ------------------------------------------------------- */

/* The low 32 bits of the 64-bit word: what the futex calls on L look at. */
static inline uint32_t *word_futex(fifolock_mt *lock)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return (uint32_t *)(void *)&lock->word + 1;
#else
    return (uint32_t *)(void *)&lock->word;
#endif
}

static bool deadline_passed_at(const struct timespec *deadline, const struct timespec *now)
{
    return deadline != NULL &&
           (now->tv_sec > deadline->tv_sec ||
            (now->tv_sec == deadline->tv_sec && now->tv_nsec >= deadline->tv_nsec));
}

static struct timespec in_ns_from_now(long ns)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_nsec += ns;
    while (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

static bool deadline_passed(const struct timespec *deadline)
{
    struct timespec now;

    if (deadline == NULL)
        return false;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return deadline_passed_at(deadline, &now);
}

static bool valid_mode(const fifolock_mode *mode)
{
    return mode != NULL && mode->is_compatible != NULL;
}

static inline uint32_t state_load(struct waiter *w)
{
    return __atomic_load_n(&w->state, __ATOMIC_ACQUIRE);
}

/* ---- the internal lock L ------------------------------------------------- */

static uint64_t ilock_slow(fifolock_mt *lock)
{
    unsigned limit = __atomic_load_n(&fifolock_mt__tuning.lock_spin, __ATOMIC_RELAXED);
    uint64_t take = W_LOCKED, w;
    unsigned spins = 0;

    for (;;) {
        w = __atomic_load_n(&lock->word, __ATOMIC_RELAXED);
        if (w == W_DEAD)
            return w; /* D1: destroyed while this thread waited for L */
        if (!(w & W_LOCKED)) {
            /* L1 */
            if (__atomic_compare_exchange_n(&lock->word, &w, take, false, __ATOMIC_ACQUIRE,
                                            __ATOMIC_RELAXED))
                return w;
            continue;
        }
        if (spins < limit) {
            spins++;
            fifolock__cpu_relax();
            continue;
        }
        /* L2 */
        if (!(w & W_SLEEPERS) &&
            !__atomic_compare_exchange_n(&lock->word, &w, w | W_SLEEPERS, false,
                                         __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            continue;
        fifolock__wait(word_futex(lock), (uint32_t)(W_LOCKED | W_SLEEPERS), NULL);
        take = W_LOCKED | W_SLEEPERS;
    }
}

/*
 * L1: takes L and makes the engine count the fast-path hold, if any, as it
 * was granted: without asking its predicate again. Returns 0, or EINVAL if
 * the lock was destroyed (D1; then L is not taken).
 */
static int ilock(fifolock_mt *lock)
{
    uint64_t w = __atomic_load_n(&lock->word, __ATOMIC_RELAXED);

    if (w == W_DEAD)
        return EINVAL;
    if ((w & W_LOCKED) ||
        !__atomic_compare_exchange_n(&lock->word, &w, W_LOCKED, false, __ATOMIC_ACQUIRE,
                                     __ATOMIC_RELAXED)) {
        w = ilock_slow(lock);
        if (w == W_DEAD)
            return EINVAL;
    }
    if (w & ~(uint64_t)W_FLAGS) {
        int rc = fifolock__count_idle_hold(
            &lock->engine, (const fifolock_mode *)(uintptr_t)(w & ~(uint64_t)W_FLAGS));
        DEBUG_ASSERT(rc == 0); /* K3: the engine is idle */
        (void)rc;
    }
    return 0;
}

/* L3 */
static void iunlock(fifolock_mt *lock)
{
    size_t waiting = fifolock_waiting(&lock->engine);
    unsigned queued = waiting > UINT_MAX ? UINT_MAX : (unsigned)waiting;
    uint64_t v = 0, old;

    if (__atomic_load_n(&lock->queued, __ATOMIC_RELAXED) != queued)
        __atomic_store_n(&lock->queued, queued, __ATOMIC_RELAXED); /* for A0 */
    if (waiting == 0 && fifolock_held_total(fifolock_holds_of(&lock->engine)) == 0)
        v = W_IDLE;
    old = __atomic_exchange_n(&lock->word, v, __ATOMIC_RELEASE);
    if (old & W_SLEEPERS)
        fifolock__wake_one(word_futex(lock));
}

/*
 * Whether the CPUs seem crowded: the last timed_yield() took long. Whether
 * other threads compete for the CPUs is a property of the machine, not of
 * one lock; and G5 must not touch its lock (see there). Atomic, relaxed.
 */
static unsigned char busy;

/*
 * sched_yield(), and a guess from how long it took: if other threads ran on
 * this CPU meanwhile, CPUs are crowded (busy, a hint read by N1). Returns
 * that guess. Touches no lock.
 */
static bool timed_yield(void)
{
    struct timespec t0, t1;
    int64_t ns;
    unsigned char crowded;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    sched_yield();
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ns = (int64_t)(t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec);
    crowded = ns > (int64_t)__atomic_load_n(&fifolock_mt__tuning.shared_ns, __ATOMIC_RELAXED);
    if (__atomic_load_n(&busy, __ATOMIC_RELAXED) != crowded)
        __atomic_store_n(&busy, crowded, __ATOMIC_RELAXED);
    return crowded;
}

/* G3: takes the waiters to wake, oldest grant first. Under L. */
static struct waiter *take_wake_list(fifolock_mt *lock)
{
    struct waiter *w = lock->wake, *rev = NULL, *next;

    lock->wake = NULL;
    for (; w != NULL; w = next) {
        next = w->next;
        w->next = rev;
        rev = w;
    }
    return rev;
}

/* G4: wakes sleeping waiters that were granted under L. Not under L. */
static void wake_list(struct waiter *w)
{
    struct waiter *next;

    for (; w != NULL; w = next) {
        next = w->next; /* before the store below: then the frame may go */
        fifolock__wake_one(&w->state);
        __atomic_store_n(&w->state, S_GRANTED, __ATOMIC_RELEASE);
    }
}

/* G3 and G4 after an engine call that may grant. */
static void iunlock_and_wake(fifolock_mt *lock)
{
    struct waiter *list = lock->wake ? take_wake_list(lock) : NULL;

    iunlock(lock);
    wake_list(list);
}

/*
 * N1: under L, after an engine call that changed the head of the queue: if
 * the new head sleeps, wake it now, so that it spins by the time its grant
 * comes instead of paying a wakeup then. Its frame can't go away meanwhile:
 * it is queued, and leaving the queue takes L.
 */
static void nudge_head(fifolock_mt *lock, const fifolock_waiter *old_head)
{
    struct waiter *h = (struct waiter *)fifolock__head(&lock->engine);
    uint32_t s = S_PARKED;

    if (h != NULL && &h->w != old_head &&
        __atomic_load_n(&fifolock_mt__tuning.nudge, __ATOMIC_RELAXED) &&
        !__atomic_load_n(&busy, __ATOMIC_RELAXED) &&
        __atomic_compare_exchange_n(&h->state, &s, S_NUDGED, false, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED))
        fifolock__wake_one(&h->state);
}

/* ---- granting and waiting ------------------------------------------------ */

/* G2: the engine's grant callback, run under L after G1. */
static void granted(fifolock_waiter *ew, void *arg)
{
    fifolock_mt *lock = arg;
    struct waiter *w = (struct waiter *)ew;
    uint32_t s = __atomic_load_n(&w->state, __ATOMIC_RELAXED);

    while (s == S_WAITING || s == S_YIELDING || s == S_NUDGED) {
        if (__atomic_compare_exchange_n(&w->state, &s, S_GRANTED, false, __ATOMIC_RELEASE,
                                        __ATOMIC_RELAXED)) {
            lock->step_aside |= s != S_WAITING;
            return;
        }
    }
    DEBUG_ASSERT(s == S_PARKED);
    __atomic_store_n(&w->state, S_WAKING, __ATOMIC_RELAXED);
    w->next = lock->wake;
    lock->wake = w;
    lock->step_aside = 1;
}

/* A6: waits until the granting thread is done with our frame. */
static void linger(struct waiter *w)
{
    unsigned i;

    for (i = 0; state_load(w) != S_GRANTED; i++) {
        if (i < 64)
            fifolock__cpu_relax();
        else
            sched_yield();
    }
}

/*
 * T1: the deadline passed while queued (or the wait was interrupted): the
 * request is withdrawn and `code` returned, unless the grant won the race.
 */
static int withdraw(fifolock_mt *lock, struct waiter *w, int code)
{
    void (*hook)(fifolock_mt *) = __atomic_load_n(&fifolock_mt__on_timeout, __ATOMIC_ACQUIRE);
    const fifolock_waiter *head;
    int rc;

    if (hook != NULL)
        hook(lock);
    rc = ilock(lock); /* can't fail: a queued waiter makes destroy EBUSY */
    DEBUG_ASSERT(rc == 0);
    head = fifolock__head(&lock->engine);
    rc = fifolock_cancel(&lock->engine, &w->w);
    nudge_head(lock, head);
    lock->step_aside = 0; /* this thread leaves the queue: no need */
    iunlock_and_wake(lock);
    if (rc == 0)
        return code;
    DEBUG_ASSERT(rc == EALREADY);
    linger(w);
    return 0;
}

/* A2-A6 */
static int wait_granted(fifolock_mt *lock, struct waiter *w, const struct timespec *deadline,
                        size_t ahead)
{
    unsigned spin = __atomic_load_n(&fifolock_mt__tuning.spin, __ATOMIC_RELAXED);
    unsigned yields = __atomic_load_n(&fifolock_mt__tuning.yield, __ATOMIC_RELAXED);
    unsigned i;
    uint32_t s;

    /*
     * A2. Only the head spins: its grant is one release away and the holder
     * is likely running. A waiter further back needs others to run first,
     * and its spinning would keep them off the CPU on a busy machine; it
     * yields at most `yield_behind` times, which lets them run yet keeps
     * it ready to run when its turn comes, then sleeps, and is woken when
     * it becomes the head (N1; if the CPUs are crowded, only at its grant).
     */
    if (ahead > 0) {
        unsigned behind = __atomic_load_n(&fifolock_mt__tuning.yield_behind, __ATOMIC_RELAXED);
        spin = 0;
        if (yields > behind)
            yields = behind;
    }
    for (;;) {
        for (i = 0; i < spin; i++) {
            if (state_load(w) == S_GRANTED)
                return 0;
            fifolock__cpu_relax();
            if ((i & 63) == 63 && deadline_passed(deadline))
                return withdraw(lock, w, ETIMEDOUT);
        }
        s = S_WAITING;
        if (yields > 0) {
            if (!__atomic_compare_exchange_n(&w->state, &s, S_YIELDING, false, __ATOMIC_ACQUIRE,
                                             __ATOMIC_ACQUIRE))
                return 0; /* s is GRANTED */
            s = S_YIELDING;
        }
        for (i = 0; i < yields; i++) {
            struct timespec t0;

            if (state_load(w) == S_GRANTED)
                return 0;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            if (deadline_passed_at(deadline, &t0))
                return withdraw(lock, w, ETIMEDOUT);
            /*
             * A very long yield means other threads ran on this CPU: it is
             * crowded, and the thread we wait for may well need it. Sleep.
             */
            if (timed_yield())
                break;
        }

        /* A3 */
        if (!__atomic_compare_exchange_n(&w->state, &s, S_PARKED, false, __ATOMIC_ACQUIRE,
                                         __ATOMIC_ACQUIRE))
            return 0; /* s is GRANTED */
        for (;;) {
            const struct timespec *until = deadline;
            struct timespec slice;
            int rc;

            if (w->interrupted != NULL) {
                /* asked before each sleep, which lasts a slice at most */
                if (w->interrupted(w->interrupt_arg))
                    return withdraw(lock, w, EINTR);
                slice = in_ns_from_now(INTERRUPT_SLICE_NS);
                if (deadline == NULL || !deadline_passed_at(deadline, &slice))
                    until = &slice;
            }
            rc = fifolock__wait(&w->state, S_PARKED, until); /* A4 */

            s = state_load(w); /* A5 */
            if (s == S_GRANTED)
                return 0;
            if (s == S_WAKING) {
                linger(w); /* A6 */
                return 0;
            }
            if (s == S_NUDGED) {
                /* N2: we are the head now; awake again, spin and yield as one */
                if (!__atomic_compare_exchange_n(&w->state, &s, S_WAITING, false,
                                                 __ATOMIC_ACQUIRE, __ATOMIC_ACQUIRE))
                    return 0; /* s is GRANTED */
                break;
            }
            if ((rc == ETIMEDOUT && until == deadline) || deadline_passed(deadline))
                return withdraw(lock, w, ETIMEDOUT);
        }
        spin = __atomic_load_n(&fifolock_mt__tuning.spin, __ATOMIC_RELAXED);
        yields = __atomic_load_n(&fifolock_mt__tuning.yield, __ATOMIC_RELAXED);
    }
}

/*
 * A0: a thread that would queue behind others lets the CPU go once before it
 * queues. On a crowded machine it is the threads that wait in the queue, not
 * those that run, that the lock has to wait for: a thread that is switched
 * out while queued stalls everybody behind it when its turn comes, while one
 * switched out before it queues stalls nobody. So the queue keeps to the
 * threads that run, and the lock often goes idle between them (then it is
 * taken on the fast path). The request is made, and its place in the queue
 * taken, when it is queued (A1); before that the thread is only slower to
 * arrive, by one sched_yield(). A hint only, from lock->queued, which L3
 * writes and which is read here without L.
 */
static bool defer(fifolock_mt *lock)
{
    unsigned behind = __atomic_load_n(&fifolock_mt__tuning.defer, __ATOMIC_RELAXED);

    if (behind == 0 || __atomic_load_n(&lock->queued, __ATOMIC_RELAXED) < behind)
        return false;
    sched_yield();
    return true;
}

static int try_acquire_slow(fifolock_mt *lock, const fifolock_mode *mode, size_t n)
{
    int rc;

    if (lock == NULL || !valid_mode(mode) || n == 0 || ilock(lock) != 0)
        return EINVAL;
    rc = fifolock_try_acquire_n(&lock->engine, mode, n);
    iunlock(lock);
    return rc;
}

/*
 * A timed call whose deadline has passed before it queued: one try, which
 * never queues; EBUSY becomes ETIMEDOUT.
 */
static int last_try(fifolock_mt *lock, const fifolock_mode *mode, size_t n)
{
    int rc = try_acquire_slow(lock, mode, n);

    return rc == EBUSY ? ETIMEDOUT : rc;
}

/* A0, A1, then A2-A6. `deadline` is NULL or in the future. */
static int acquire_slow(fifolock_mt *lock, const fifolock_mode *mode, size_t n,
                        const struct timespec *deadline,
                        fifolock_interrupt_fn *interrupted, void *arg)
{
    struct waiter w = { FIFOLOCK_WAITER_INIT, S_WAITING, NULL, interrupted, arg };
    size_t ahead;
    int rc;

    if (lock == NULL || !valid_mode(mode) || n == 0)
        return EINVAL;
    if (defer(lock) && deadline_passed(deadline))
        return last_try(lock, mode, n); /* the yield outlasted the deadline */
    if (ilock(lock) != 0)
        return EINVAL;
    rc = fifolock_acquire_n(&lock->engine, &w.w, mode, n, granted, lock);
    ahead = fifolock_waiting(&lock->engine);
    iunlock(lock);
    if (rc != FIFOLOCK_WAITING)
        return rc;
    return wait_granted(lock, &w, deadline, ahead - 1);
}

/* F1 (a user's predicate is asked only under L, with the lock's own holds) */
static inline bool fast_acquire(fifolock_mt *lock, const fifolock_mode *mode)
{
    uint64_t w = W_IDLE;

    return lock != NULL && mode != NULL && mode->is_compatible != NULL &&
           ((uintptr_t)mode & W_FLAGS) == 0 &&
           __atomic_load_n(&lock->word, __ATOMIC_RELAXED) == W_IDLE &&
           fifolock__fits_idle(mode) &&
           __atomic_compare_exchange_n(&lock->word, &w, (uintptr_t)mode | W_IDLE, false,
                                       __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}

static bool valid_deadline(const struct timespec *deadline)
{
    return deadline != NULL && deadline->tv_nsec >= 0 && deadline->tv_nsec < 1000000000L;
}

/* ---- the public lock ----------------------------------------------------- */

int fifolock_mt_init(fifolock_mt *lock)
{
    if (lock == NULL)
        return EINVAL;
    *lock = (fifolock_mt)FIFOLOCK_MT_INITIALIZER; /* one definition of a new lock */
    return 0;
}

/* D1 */
int fifolock_mt_destroy(fifolock_mt *lock)
{
    uint64_t old;
    int rc;

    if (lock == NULL || ilock(lock) != 0)
        return EINVAL;
    rc = fifolock_destroy(&lock->engine);
    if (rc != 0) {
        iunlock(lock);
        return rc;
    }
    old = __atomic_exchange_n(&lock->word, W_DEAD, __ATOMIC_RELEASE);
    if (old & W_SLEEPERS)
        fifolock__wake_all(word_futex(lock));
    return 0;
}

int fifolock_mt_acquire(fifolock_mt *lock, const fifolock_mode *mode)
{
    if (fast_acquire(lock, mode))
        return 0;
    return acquire_slow(lock, mode, 1, NULL, NULL, NULL);
}

int fifolock_mt_acquire_n(fifolock_mt *lock, const fifolock_mode *mode, size_t n)
{
    if (n == 1 && fast_acquire(lock, mode))
        return 0;
    return acquire_slow(lock, mode, n, NULL, NULL, NULL);
}

int fifolock_mt_try_acquire(fifolock_mt *lock, const fifolock_mode *mode)
{
    if (fast_acquire(lock, mode))
        return 0;
    return try_acquire_slow(lock, mode, 1);
}

int fifolock_mt_try_acquire_n(fifolock_mt *lock, const fifolock_mode *mode, size_t n)
{
    if (n == 1 && fast_acquire(lock, mode))
        return 0;
    return try_acquire_slow(lock, mode, n);
}

int fifolock_mt_timed_acquire_n(fifolock_mt *lock, const fifolock_mode *mode, size_t n,
                                const struct timespec *deadline)
{
    if (!valid_deadline(deadline))
        return EINVAL;
    if (n == 1 && fast_acquire(lock, mode))
        return 0;
    if (deadline_passed(deadline))
        return last_try(lock, mode, n);
    return acquire_slow(lock, mode, n, deadline, NULL, NULL);
}

int fifolock_mt_timed_acquire(fifolock_mt *lock, const fifolock_mode *mode,
                              const struct timespec *deadline)
{
    return fifolock_mt_timed_acquire_n(lock, mode, 1, deadline);
}

int fifolock_mt_release_n(fifolock_mt *lock, const fifolock_mode *mode, size_t n)
{
    uint64_t w = (uintptr_t)mode | W_IDLE;
    const fifolock_waiter *head;
    unsigned step_aside;
    int rc;

    if (lock == NULL || mode == NULL || n == 0)
        return EINVAL;
    /* F2 (a misaligned mode never went fast: its word can't match) */
    if (n == 1 && ((uintptr_t)mode & W_FLAGS) == 0 &&
        __atomic_compare_exchange_n(&lock->word, &w, W_IDLE, false, __ATOMIC_RELEASE,
                                    __ATOMIC_RELAXED))
        return 0;
    if (ilock(lock) != 0)
        return EINVAL;
    head = fifolock__head(&lock->engine);
    rc = fifolock_release_n(&lock->engine, mode, n);
    nudge_head(lock, head);
    step_aside = lock->step_aside;
    lock->step_aside = 0;
    iunlock_and_wake(lock);
    if (step_aside)
        timed_yield(); /* G5: `lock` may be gone by now */
    return rc;
}

int fifolock_mt_release(fifolock_mt *lock, const fifolock_mode *mode)
{
    return fifolock_mt_release_n(lock, mode, 1);
}

/*
 * C1: a conversion, under L like an acquire (A1): the engine switches the
 * hold now, or queues the request ahead of the whole queue; then it waits
 * as any waiter (A2-A6), and T1 withdraws it at its deadline (the caller
 * then keeps `from`). A switch made now may grant waiters that `from` held
 * back: they are woken as after a release (G3-G4). `try`: never waits.
 */
static int convert(fifolock_mt *lock, const fifolock_mode *from, const fifolock_mode *to,
                   bool try, const struct timespec *deadline,
                   fifolock_interrupt_fn *interrupted, void *arg)
{
    struct waiter w = { FIFOLOCK_WAITER_INIT, S_WAITING, NULL, interrupted, arg };
    const fifolock_waiter *head;
    unsigned step_aside;
    int rc;

    if (lock == NULL || from == NULL || !valid_mode(to) || ilock(lock) != 0)
        return EINVAL;
    head = fifolock__head(&lock->engine);
    if (try)
        rc = fifolock_try_convert(&lock->engine, from, to);
    else
        rc = fifolock_convert(&lock->engine, &w.w, from, to, granted, lock);
    nudge_head(lock, head); /* (not this thread: it is awake) */
    step_aside = lock->step_aside;
    lock->step_aside = 0;
    iunlock_and_wake(lock);
    if (step_aside)
        timed_yield(); /* G5 */
    if (rc != FIFOLOCK_WAITING)
        return rc;
    return wait_granted(lock, &w, deadline, 0);
}

int fifolock_mt_convert(fifolock_mt *lock, const fifolock_mode *from, const fifolock_mode *to)
{
    return convert(lock, from, to, false, NULL, NULL, NULL);
}

int fifolock_mt_try_convert(fifolock_mt *lock, const fifolock_mode *from,
                            const fifolock_mode *to)
{
    return convert(lock, from, to, true, NULL, NULL, NULL);
}

int fifolock_mt_timed_convert(fifolock_mt *lock, const fifolock_mode *from,
                              const fifolock_mode *to, const struct timespec *deadline)
{
    int rc;

    if (!valid_deadline(deadline))
        return EINVAL;
    if (!deadline_passed(deadline))
        return convert(lock, from, to, false, deadline, NULL, NULL);
    rc = convert(lock, from, to, true, NULL, NULL, NULL); /* past: one try */
    return rc == EBUSY ? ETIMEDOUT : rc;
}

int fifolock_mt_acquire_interruptible(fifolock_mt *lock, const fifolock_mode *mode, size_t n,
                                      const struct timespec *deadline,
                                      fifolock_interrupt_fn *interrupted, void *arg)
{
    if (deadline != NULL && !valid_deadline(deadline))
        return EINVAL;
    if (n == 1 && fast_acquire(lock, mode))
        return 0;
    if (deadline_passed(deadline))
        return last_try(lock, mode, n);
    return acquire_slow(lock, mode, n, deadline, interrupted, arg);
}

int fifolock_mt_convert_interruptible(fifolock_mt *lock, const fifolock_mode *from,
                                      const fifolock_mode *to, const struct timespec *deadline,
                                      fifolock_interrupt_fn *interrupted, void *arg)
{
    int rc;

    if (deadline != NULL && !valid_deadline(deadline))
        return EINVAL;
    if (!deadline_passed(deadline))
        return convert(lock, from, to, false, deadline, interrupted, arg);
    rc = convert(lock, from, to, true, NULL, NULL, NULL);
    return rc == EBUSY ? ETIMEDOUT : rc;
}

size_t fifolock_mt_waiting(fifolock_mt *lock)
{
    size_t n;

    if (lock == NULL || ilock(lock) != 0)
        return 0;
    n = fifolock_waiting(&lock->engine);
    iunlock(lock);
    return n;
}

size_t fifolock_mt_held(fifolock_mt *lock, const fifolock_mode *mode)
{
    size_t n;

    if (lock == NULL || mode == NULL || ilock(lock) != 0)
        return 0;
    n = fifolock_held(fifolock_holds_of(&lock->engine), mode);
    iunlock(lock);
    return n;
}

int fifolock_mt_inspect(fifolock_mt *lock, fifolock_mt_inspect_fn *fn, void *arg)
{
    if (lock == NULL || fn == NULL || ilock(lock) != 0)
        return EINVAL;
    fn(&lock->engine, arg); /* under L: holds and queue stand still */
    iunlock(lock);
    return 0;
}

const fifolock *fifolock_mt_engine(const fifolock_mt *lock)
{
    return lock ? &lock->engine : NULL;
}

/*
 * The fork hooks hold L across fork(): the child then inherits a whole
 * queue and whole counts, never L half way through a change. L is not
 * reentrant, so a second fifolock_mt_before_fork() would wait for ever;
 * the caller pairs them.
 */
int fifolock_mt_before_fork(fifolock_mt *lock)
{
    if (lock == NULL || ilock(lock) != 0)
        return EINVAL;
    return 0;
}

int fifolock_mt_after_fork(fifolock_mt *lock)
{
    uint64_t w;

    if (lock == NULL)
        return EINVAL;
    w = __atomic_load_n(&lock->word, __ATOMIC_RELAXED);
    if (w == W_DEAD)
        return EINVAL;
    if (!(w & W_LOCKED))
        return EPERM; /* no fifolock_mt_before_fork() holds L */
    iunlock(lock);
    return 0;
}

/* ---- probes for tests ---------------------------------------------------- */

size_t fifolock_mt__sleeping(fifolock_mt *lock)
{
    const fifolock_waiter *w;
    size_t n = 0;

    if (ilock(lock) != 0)
        return 0;
    for (w = fifolock__head(&lock->engine); w != NULL; w = fifolock__next(w))
        n += __atomic_load_n(&((const struct waiter *)w)->state, __ATOMIC_RELAXED) == S_PARKED;
    iunlock(lock);
    return n;
}

const fifolock_mode *fifolock_mt__queued_mode(fifolock_mt *lock, size_t i)
{
    const fifolock_mode *mode;
    const fifolock_waiter *w;

    if (ilock(lock) != 0)
        return NULL;
    for (w = fifolock__head(&lock->engine); w != NULL && i > 0; w = fifolock__next(w))
        i--;
    mode = w ? w->mode : NULL;
    iunlock(lock);
    return mode;
}

void fifolock_mt__lock_internal(fifolock_mt *lock)
{
    (void)ilock(lock);
}

void fifolock_mt__unlock_internal(fifolock_mt *lock)
{
    iunlock(lock);
}

int fifolock_mt__internal_has_sleepers(fifolock_mt *lock)
{
    return (__atomic_load_n(&lock->word, __ATOMIC_RELAXED) & W_SLEEPERS) != 0;
}
