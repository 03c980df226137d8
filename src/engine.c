/*
 * The engine: one FIFO queue of waiters, the hold counts, and the grant loop.
 * Every front end (event loops here, threads in mt.c, Python in python/) runs
 * on these functions; none of them queues or grants on its own.
 *
 * Invariants, true whenever no call on the lock is running (inside a grant
 * callback only I1 and I2 hold; I3 is restored before the outer call returns):
 *
 *   I1 (queue)   head..tail is a doubly linked list of exactly `waiting`
 *                waiters, each with state WAITING and lock == this lock;
 *                head->prev and tail->next are NULL; head == NULL iff
 *                waiting == 0.
 *   I2 (counts)  for every mode m, the entry of m in the hold table has
 *                held = number of current holders of m and queued = number
 *                of waiters of m in the queue; an entry exists iff
 *                held + queued > 0, no mode has two entries, and
 *                holds.total is the sum of held.
 *   I3 (no lost grant)  if the queue is not empty, the head's mode is not
 *                compatible with the current holds.
 *   I4 (FIFO)    waiters are granted in the order they joined the queue, and
 *                an acquire is granted at once only when the queue is empty.
 *
 * I3 and I4 together are the grant rule: after every change the engine
 * grants from the head while the head is compatible, and stops at the first
 * head that is not. Entries for queued modes exist before their waiters are
 * granted, so granting never allocates and never fails.
 *
 * Reentrancy: a grant callback may call acquire, release or cancel on the
 * same lock. `granting` marks a running grant loop; nested calls change the
 * queue and the counts but leave granting to the outer loop, which re-reads
 * the head after every callback. So callbacks run in queue order, one at a
 * time, and the stack stays flat however long the chain of grants.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>

#ifdef FIFOLOCK_DEBUG
#include <assert.h>
/* The walk is O(waiting * modes): long queues are checked when they shrink. */
#define CHECK(lock) assert((lock)->waiting > 256 || fifolock__check_invariants(lock) == NULL)
#else
#define CHECK(lock) ((void)0)
#endif

#define WAITER_IDLE 0u
#define WAITER_WAITING 0x57a17u /* unlikely in uninitialised memory */
#define WAITER_GRANTED 0x96a27u

/*
 * FIFOLOCK_MUTANT_* switches build a deliberate bug in, for the mutation
 * check (tests/mutants): it proves the tests catch each one. Never set them
 * otherwise.
 */

/* ---- hold table ---------------------------------------------------------- */

static struct fifolock_hold *hold_at(const fifolock_holds *h, uint32_t i)
{
    return i < FIFOLOCK_INLINE_MODES ? (struct fifolock_hold *)&h->inline_[i]
                                     : &h->more[i - FIFOLOCK_INLINE_MODES];
}

static struct fifolock_hold *hold_find(const fifolock_holds *h, const fifolock_mode *mode)
{
    uint32_t n = h->used, i;
    uint32_t k = n < FIFOLOCK_INLINE_MODES ? n : FIFOLOCK_INLINE_MODES;

    for (i = 0; i < k; i++)
        if (h->inline_[i].mode == mode)
            return (struct fifolock_hold *)&h->inline_[i];
    for (i = 0; i < n - k; i++)
        if (h->more[i].mode == mode)
            return &h->more[i];
    return NULL;
}

/* Finds the entry of `mode`, adding an empty one if there is none. */
static int hold_get(fifolock_holds *h, const fifolock_mode *mode, struct fifolock_hold **out)
{
    struct fifolock_hold *e = hold_find(h, mode);

    if (e == NULL) {
        if (h->used >= FIFOLOCK_INLINE_MODES) {
            uint32_t need = h->used - FIFOLOCK_INLINE_MODES + 1;
            if (need > h->more_cap) {
                uint32_t cap = h->more_cap ? h->more_cap * 2 : 4;
                int saved = errno; /* errno is the caller's: a failed realloc sets it */
                void *p = realloc(h->more, (size_t)cap * sizeof *h->more);
                errno = saved;
                if (p == NULL)
                    return ENOMEM;
                h->more = p;
                h->more_cap = cap;
            }
        }
        e = hold_at(h, h->used++);
        e->mode = mode;
        e->held = 0;
        e->queued = 0;
    }
    *out = e;
    return 0;
}

/* An idle lock owns no memory. */
static void hold_free_more(fifolock_holds *h)
{
    free(h->more);
    h->more = NULL;
    h->more_cap = 0;
}

/* Drops `e` if nobody holds or waits for its mode any more. */
static void hold_put(fifolock_holds *h, struct fifolock_hold *e)
{
    if (e->held != 0 || e->queued != 0)
        return;
    *e = *hold_at(h, --h->used);
    if (h->used == 0 && h->more != NULL)
        hold_free_more(h);
}

size_t fifolock_held(const fifolock_holds *holds, const fifolock_mode *mode)
{
    const struct fifolock_hold *e;

    if (holds == NULL)
        return 0;
    e = hold_find(holds, mode);
    return e ? e->held : 0;
}

size_t fifolock_held_total(const fifolock_holds *holds)
{
    return holds ? holds->total : 0;
}

size_t fifolock_holds_list(const fifolock_holds *holds, const fifolock_mode **modes,
                           size_t *counts, size_t max)
{
    size_t n = 0;
    uint32_t i;

    if (holds == NULL)
        return 0;
    for (i = 0; i < holds->used; i++) {
        const struct fifolock_hold *e = hold_at(holds, i);
        if (e->held == 0)
            continue;
        if (n < max) {
            if (modes)
                modes[n] = e->mode;
            if (counts)
                counts[n] = e->held;
        }
        n++;
    }
    return n;
}

/* ---- queue --------------------------------------------------------------- */

static void queue_push(fifolock *lock, fifolock_waiter *w)
{
    w->next = NULL;
    w->prev = lock->tail;
    if (lock->tail)
        lock->tail->next = w;
    else
        lock->head = w;
    lock->tail = w;
    lock->waiting++;
}

static void queue_unlink(fifolock *lock, fifolock_waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        lock->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        lock->tail = w->prev;
    lock->waiting--;
#ifdef FIFOLOCK_DEBUG
    /* A use after cancel or grant crashes here, not in someone else's queue. */
    w->next = (fifolock_waiter *)(uintptr_t)0xdead0001;
    w->prev = (fifolock_waiter *)(uintptr_t)0xdead0002;
#endif
}

/*
 * The grant rule. Runs until the head is incompatible or the queue is empty;
 * a nested call (from a callback) returns at once and the outer loop picks up
 * whatever the callback changed. Every granted waiter's count moves from
 * queued to held before its callback runs: grant first, then tell.
 */
static void grant(fifolock *lock)
{
    fifolock_waiter *w;

    if (lock->granting)
        return;
    lock->granting = 1;
    while ((w = lock->head) != NULL && w->mode->is_compatible(w->mode, &lock->holds)) {
        struct fifolock_hold *e = hold_find(&lock->holds, w->mode);

        queue_unlink(lock, w);
        e->queued--;
        e->held++;
        lock->holds.total++;
        w->state = WAITER_GRANTED;
        w->granted(w, w->arg);
    }
    lock->granting = 0;
    CHECK(lock);
}

/* ---- the public lock ----------------------------------------------------- */

void fifolock_init(fifolock *lock)
{
    if (lock == NULL)
        return;
    *lock = (fifolock){ 0 };
}

int fifolock_destroy(fifolock *lock)
{
    if (lock == NULL)
        return EINVAL;
    if (lock->head != NULL || lock->holds.used != 0 || lock->granting)
        return EBUSY;
    free(lock->holds.more); /* NULL when idle; kept for symmetry with init */
    *lock = (fifolock){ 0 };
    return 0;
}

static int valid_mode(const fifolock_mode *mode)
{
    return mode != NULL && mode->is_compatible != NULL;
}

/* Takes one hold of `mode` now (the caller checked it may). */
static int take_now(fifolock *lock, const fifolock_mode *mode)
{
    struct fifolock_hold *e;
    int rc;

    if (lock->holds.used == 0) {
        /* The uncontended case: a free lock gets its first holder. */
        lock->holds.inline_[0] = (struct fifolock_hold){ mode, 1, 0 };
        lock->holds.used = 1;
        lock->holds.total = 1;
        return 0;
    }
    rc = hold_get(&lock->holds, mode, &e);

    if (rc)
        return rc;
    if ((uint64_t)e->held + e->queued >= UINT32_MAX)
        return EAGAIN; /* an entry that exists can't be empty: nothing to undo */
    e->held++;
    lock->holds.total++;
    return 0;
}

int fifolock__count_idle_hold(fifolock *lock, const fifolock_mode *mode)
{
    if (lock->head != NULL || lock->holds.used != 0)
        return EBUSY;
    return take_now(lock, mode); /* on an idle lock: can't fail */
}

int fifolock_try_acquire(fifolock *lock, const fifolock_mode *mode)
{
    int rc;

    if (lock == NULL || !valid_mode(mode))
        return EINVAL;
    if (lock->head != NULL || !mode->is_compatible(mode, &lock->holds))
        return EBUSY;
    rc = take_now(lock, mode);
    CHECK(lock);
    return rc;
}

int fifolock_acquire(fifolock *lock, fifolock_waiter *waiter, const fifolock_mode *mode,
                     fifolock_granted_fn *granted, void *arg)
{
    struct fifolock_hold *e;
    int rc;

    if (lock == NULL || waiter == NULL || !valid_mode(mode) || granted == NULL)
        return EINVAL;
    if (waiter->state == WAITER_WAITING)
        return EINVAL; /* still queued; reusing it would corrupt that queue */

#ifdef FIFOLOCK_MUTANT_GRANT_PAST_WAITER
    if (mode->is_compatible(mode, &lock->holds)) {
#else
    if (lock->head == NULL && mode->is_compatible(mode, &lock->holds)) {
#endif
        rc = take_now(lock, mode);
        if (rc == 0) {
            waiter->lock = lock;
            waiter->mode = mode;
            waiter->state = WAITER_GRANTED;
        }
        CHECK(lock);
        return rc;
    }

    rc = hold_get(&lock->holds, mode, &e);
    if (rc)
        return rc;
    if ((uint64_t)e->held + e->queued >= UINT32_MAX)
        return EAGAIN;
    e->queued++;
    waiter->lock = lock;
    waiter->mode = mode;
    waiter->granted = granted;
    waiter->arg = arg;
    waiter->state = WAITER_WAITING;
    queue_push(lock, waiter);
    CHECK(lock);
    return FIFOLOCK_WAITING;
}

int fifolock_release(fifolock *lock, const fifolock_mode *mode)
{
    fifolock_holds *h;
    struct fifolock_hold *e;

    if (lock == NULL || mode == NULL)
        return EINVAL;
    h = &lock->holds;
    if (h->used == 1 && h->inline_[0].mode == mode && lock->head == NULL) {
        /* The uncontended case: one mode held, nobody waiting (so queued == 0). */
        h->total--;
        if (--h->inline_[0].held == 0) {
            h->used = 0;
            if (h->more != NULL)
                hold_free_more(h);
        }
        CHECK(lock);
        return 0;
    }
    e = hold_find(h, mode);
#ifdef FIFOLOCK_MUTANT_WRONG_MODE_RELEASE
    /* Drops a hold of whichever mode comes first in the table. */
    if (e != NULL && e->held != 0 && h->inline_[0].held != 0)
        e = &h->inline_[0];
#endif
    if (e == NULL || e->held == 0)
        return EPERM;
    e->held--;
    h->total--;
    hold_put(h, e);
    if (lock->head != NULL)
        grant(lock);
    CHECK(lock);
    return 0;
}

int fifolock_cancel(fifolock *lock, fifolock_waiter *waiter)
{
    struct fifolock_hold *e;
    int was_head;

    if (lock == NULL || waiter == NULL || waiter->lock != lock)
        return EINVAL;
    if (waiter->state == WAITER_GRANTED)
        return EALREADY;
    if (waiter->state != WAITER_WAITING)
        return EINVAL;

    was_head = waiter == lock->head;
    queue_unlink(lock, waiter);
    waiter->state = WAITER_IDLE;
    e = hold_find(&lock->holds, waiter->mode);
    e->queued--;
    hold_put(&lock->holds, e);
    /* Only a new head can be compatible: the old one was not (I3). */
#ifndef FIFOLOCK_MUTANT_SKIP_GRANT_AFTER_CANCEL
    if (was_head && lock->head != NULL)
        grant(lock);
#else
    (void)was_head;
#endif
    CHECK(lock);
    return 0;
}

size_t fifolock_waiting(const fifolock *lock)
{
    return lock ? lock->waiting : 0;
}

const fifolock_holds *fifolock_holds_of(const fifolock *lock)
{
    return lock ? &lock->holds : NULL;
}

/* ---- internal helpers for front ends and tests --------------------------- */

int fifolock__waiter_is_queued(const fifolock_waiter *waiter)
{
    return waiter->state == WAITER_WAITING;
}

const char *fifolock__check_invariants(const fifolock *lock)
{
    const fifolock_holds *h = &lock->holds;
    const fifolock_waiter *w, *prev = NULL;
    size_t n = 0, total = 0;
    uint32_t i, j;

    /* I1 */
    for (w = lock->head; w != NULL; prev = w, w = w->next) {
        if (w->prev != prev)
            return "queue: prev link broken";
        if (w->state != WAITER_WAITING || w->lock != lock)
            return "queue: member not marked waiting on this lock";
        if (++n > lock->waiting)
            return "queue: longer than the waiting count";
    }
    if (prev != lock->tail)
        return "queue: tail is not the last member";
    if (n != lock->waiting)
        return "queue: shorter than the waiting count";

    /* I2 */
    if (h->used > FIFOLOCK_INLINE_MODES + h->more_cap)
        return "holds: more entries than room";
    for (i = 0; i < h->used; i++) {
        const struct fifolock_hold *e = hold_at(h, i);
        size_t q = 0;
        if (e->held == 0 && e->queued == 0)
            return "holds: empty entry kept";
        for (j = i + 1; j < h->used; j++)
            if (hold_at(h, j)->mode == e->mode)
                return "holds: mode counted twice";
        for (w = lock->head; w != NULL; w = w->next)
            q += w->mode == e->mode;
        if (q != e->queued)
            return "holds: queued count differs from the queue";
        total += e->held;
    }
    for (w = lock->head; w != NULL; w = w->next)
        if (hold_find(h, w->mode) == NULL)
            return "holds: queued mode without entry";
    if (total != h->total)
        return "holds: total differs from the sum";

    /* I3 */
    if (!lock->granting && lock->head != NULL &&
        lock->head->mode->is_compatible(lock->head->mode, h))
        return "grant: compatible head left waiting";
    return NULL;
}
