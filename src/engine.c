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
 * Never-fit requests: predicates must be monotone (fewer holders never make
 * a mode incompatible). So a request that a lock nobody holds would refuse
 * can never be granted, and at the head it would block the queue for ever:
 * every call refuses it with EDEADLK instead of queueing it (never_fits()),
 * asking only once the normal question said no or others wait. So no
 * queued request is one that could never be granted.
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

/* ---- memory ---------------------------------------------------------------- */

void *(*fifolock__alloc)(void *p, size_t size);

/* Resizes (size > 0) or frees (size 0) through the seam of internal.h. */
static void *mem_resize(void *p, size_t size)
{
    void *(*alloc)(void *, size_t) = fifolock__alloc;
    int saved = errno; /* errno is the caller's: a failed realloc sets it */
    void *q = NULL;

    if (alloc != NULL)
        q = alloc(p, size);
    else if (size != 0)
        q = realloc(p, size);
    else
        free(p);
    errno = saved;
    return q;
}

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
                void *p = mem_resize(h->more, (size_t)cap * sizeof *h->more);

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
    mem_resize(h->more, 0);
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

size_t fifolock_asked(const fifolock_holds *holds)
{
    if (holds == NULL || holds->asked <= 1)
        return 1;
    ((fifolock_holds *)holds)->answered = 1; /* the table is the lock's, never const */
    return holds->asked;
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

/* A conversion waits ahead of the whole queue (I5). */
static void queue_push_front(fifolock *lock, fifolock_waiter *w)
{
    w->prev = NULL;
    w->next = lock->head;
    if (lock->head)
        lock->head->prev = w;
    else
        lock->tail = w;
    lock->head = w;
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

/* ---- the questions asked of modes ---------------------------------------- */

/*
 * Whether `n` more holders of `mode` may join now. `e` is the mode's entry;
 * it may be NULL only when n == 1. Each one is asked with those before it
 * counted: the counts are raised for the question and put back after it.
 */
static inline bool admits(fifolock *lock, const fifolock_mode *mode, struct fifolock_hold *e, size_t n)
{
    fifolock_holds *h = &lock->holds;
    size_t k;
    bool ok;

    if (n == 1)
        return mode->is_compatible(mode, h);
    /* The first question: for all n, if the predicate reads fifolock_asked(). */
    h->asked = (uint32_t)n; /* n fits: the caller made room for n (hold_reserve) */
    h->answered = 0;
    ok = mode->is_compatible(mode, h);
    h->asked = 0;
    if (h->answered || !ok)
        return ok;
    /* It answered for the first one: ask for each of the others in turn. */
    for (k = 1; k < n && ok; k++) {
        e->held++;
        h->total++;
        ok = mode->is_compatible(mode, h);
    }
    e->held -= (uint32_t)(k - 1);
    h->total -= k - 1;
    return ok;
}

/* Whether `to` may join the holders other than one hold of `from` (held). */
static bool converts(fifolock *lock, const fifolock_mode *from, const fifolock_mode *to)
{
    struct fifolock_hold *f = hold_find(&lock->holds, from);
    bool ok;

    f->held--;
    lock->holds.total--;
    ok = to->is_compatible(to, &lock->holds);
    f->held++;
    lock->holds.total++;
    return ok;
}

/* Whether a queued request may be granted now (the head, or a check). */
static inline bool fits(fifolock *lock, const fifolock_waiter *w)
{
    if (w->from == NULL && w->n == 1) /* the common request: one question */
        return w->mode->is_compatible(w->mode, &lock->holds);
    if (w->from != NULL)
        return converts(lock, w->from, w->mode);
    return admits(lock, w->mode, hold_find(&lock->holds, w->mode), w->n);
}

/*
 * Whether n holds of `mode` would be refused even by a lock that nobody
 * holds: then, predicates being monotone (fewer holders never make a mode
 * incompatible), no release can ever make room and the request can never
 * be granted. Asked exactly as a request is (admits(): n questions, each
 * with the ones before counted, or one through fifolock_asked()), on
 * `lock`'s own table emptied for the question and put back after it, so a
 * predicate still finds its lock from `holds` (fifolock.h). Asked only
 * where the normal fit failed, so it costs nothing on the fast paths; a
 * ready-made mode that admits a first holder is not asked at all for one.
 * n above what a lock counts is not this question's (EAGAIN, elsewhere).
 * This function can't fail.
 */
static bool never_fits(fifolock *lock, const fifolock_mode *mode, size_t n)
{
    fifolock_holds saved;
    bool ok;

    if ((n == 1 && fifolock__fits_idle(mode)) || n > UINT32_MAX)
        return false;
    saved = lock->holds;
    lock->holds = (fifolock_holds){ 0 };
    if (n > 1) {
        /* admits() counts the ones before on the mode's entry: make it */
        lock->holds.inline_[0] = (struct fifolock_hold){ mode, 0, 0 };
        lock->holds.used = 1;
    }
    ok = admits(lock, mode, &lock->holds.inline_[0], n);
    lock->holds = saved;
    return !ok;
}

/* ---- granting ------------------------------------------------------------ */

/*
 * Moves a waiter's request from queued to held (the waiter was unlinked):
 * n holds of its mode, or, for a conversion, one hold of `from` becomes one
 * of `to` (the total stays).
 */
static inline void count_granted(fifolock_holds *h, const fifolock_waiter *w)
{
    struct fifolock_hold *e = hold_find(h, w->mode);

    if (w->n == 1 && w->from == NULL) { /* the common request */
        e->queued--;
        e->held++;
        h->total++;
        return;
    }

    e->queued -= (uint32_t)w->n;
    e->held += (uint32_t)w->n;
    if (w->from == NULL) {
        h->total += w->n;
        return;
    }
    e = hold_find(h, w->from);
    e->held--;
    hold_put(h, e);
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
    while ((w = lock->head) != NULL && fits(lock, w)) {
        queue_unlink(lock, w);
        count_granted(&lock->holds, w);
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
    mem_resize(lock->holds.more, 0); /* NULL when idle; kept for symmetry with init */
    *lock = (fifolock){ 0 };
    return 0;
}

static int valid_mode(const fifolock_mode *mode)
{
    return mode != NULL && mode->is_compatible != NULL;
}

/*
 * The entry of `mode`, with room to count `n` more of it (held + queued
 * stays within 32 bits). On error nothing changed: ENOMEM, EAGAIN.
 */
static int hold_reserve(fifolock_holds *h, const fifolock_mode *mode, size_t n,
                        struct fifolock_hold **out)
{
    struct fifolock_hold *e;
    int rc = hold_get(h, mode, &e);

    if (rc)
        return rc;
    if (n > UINT32_MAX || (uint64_t)e->held + e->queued + n > UINT32_MAX) {
        hold_put(h, e); /* drops it only if it was just made */
        return EAGAIN;
    }
    *out = e;
    return 0;
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
    rc = hold_reserve(&lock->holds, mode, 1, &e);
    if (rc)
        return rc;
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

/* Takes n holds of `mode` if they fit the holders now, whoever waits: 0 or EBUSY... */
static inline int take_if_fits(fifolock *lock, const fifolock_mode *mode, size_t n)
{
    struct fifolock_hold *e;
    int rc;

    if (n == 1) /* the common case asks first and counts after */
        return mode->is_compatible(mode, &lock->holds) ? take_now(lock, mode) : EBUSY;
    rc = hold_reserve(&lock->holds, mode, n, &e);
    if (rc)
        return rc;
    if (!admits(lock, mode, e, n)) {
        hold_put(&lock->holds, e);
        return EBUSY;
    }
    e->held += (uint32_t)n;
    lock->holds.total += n;
    return 0;
}

/* Both try calls; inlined, so that n == 1 costs what it did before weights. */
static inline int try_acquire_n(fifolock *lock, const fifolock_mode *mode, size_t n)
{
    int rc;

    if (lock == NULL || !valid_mode(mode) || n == 0)
        return EINVAL;
    rc = lock->head != NULL ? EBUSY : take_if_fits(lock, mode, n);
    if (rc == EBUSY && never_fits(lock, mode, n))
        rc = EDEADLK;
    CHECK(lock);
    return rc;
}

int fifolock_try_acquire_n(fifolock *lock, const fifolock_mode *mode, size_t n)
{
    return try_acquire_n(lock, mode, n);
}

int fifolock_try_acquire(fifolock *lock, const fifolock_mode *mode)
{
    return try_acquire_n(lock, mode, 1);
}

static inline int acquire_n(fifolock *lock, fifolock_waiter *waiter, const fifolock_mode *mode,
                            size_t n, fifolock_granted_fn *granted, void *arg)
{
    struct fifolock_hold *e;
    int rc;

    if (lock == NULL || waiter == NULL || !valid_mode(mode) || granted == NULL || n == 0)
        return EINVAL;
    if (waiter->state == WAITER_WAITING)
        return EINVAL; /* still queued; reusing it would corrupt that queue */

    if (lock->head == NULL) {
        rc = take_if_fits(lock, mode, n);
        if (rc == 0) {
            waiter->lock = lock;
            waiter->mode = mode;
            waiter->from = NULL;
            waiter->n = n;
            waiter->state = WAITER_GRANTED;
        }
        if (rc != EBUSY) {
            CHECK(lock);
            return rc;
        }
    }

    if (never_fits(lock, mode, n))
        return EDEADLK; /* it would wait for ever, and everybody behind it */
    if (lock->waiting == UINT32_MAX)
        return EAGAIN;
    rc = hold_reserve(&lock->holds, mode, n, &e);
    if (rc)
        return rc;
    e->queued += (uint32_t)n;
    waiter->lock = lock;
    waiter->mode = mode;
    waiter->from = NULL;
    waiter->n = n;
    waiter->granted = granted;
    waiter->arg = arg;
    waiter->state = WAITER_WAITING;
    queue_push(lock, waiter);
    CHECK(lock);
    return FIFOLOCK_WAITING;
}

int fifolock_acquire_n(fifolock *lock, fifolock_waiter *waiter, const fifolock_mode *mode,
                       size_t n, fifolock_granted_fn *granted, void *arg)
{
    return acquire_n(lock, waiter, mode, n, granted, arg);
}

int fifolock_acquire(fifolock *lock, fifolock_waiter *waiter, const fifolock_mode *mode,
                     fifolock_granted_fn *granted, void *arg)
{
    return acquire_n(lock, waiter, mode, 1, granted, arg);
}

static inline int release_n(fifolock *lock, const fifolock_mode *mode, size_t n)
{
    fifolock_holds *h;
    struct fifolock_hold *e;

    if (lock == NULL || mode == NULL || n == 0)
        return EINVAL;
    h = &lock->holds;
    if (n == 1 && h->used == 1 && h->inline_[0].mode == mode && lock->head == NULL) {
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
    /* A waiting conversion still holds one of its `from`: not this call's to drop. */
    if (e == NULL || e->held < n + (lock->head != NULL && lock->head->from == mode))
        return EPERM;
    e->held -= (uint32_t)n;
    h->total -= n;
    hold_put(h, e);
    if (lock->head != NULL)
        grant(lock);
    CHECK(lock);
    return 0;
}

int fifolock_release_n(fifolock *lock, const fifolock_mode *mode, size_t n)
{
    return release_n(lock, mode, n);
}

int fifolock_release(fifolock *lock, const fifolock_mode *mode)
{
    return release_n(lock, mode, 1);
}

/*
 * Switches one hold of `from` (held) to `to` now: 0, or ENOMEM/EAGAIN with
 * nothing changed. Then grants: `from` may have held the queue back.
 */
static int convert_now(fifolock *lock, const fifolock_mode *from, const fifolock_mode *to)
{
    struct fifolock_hold *e;
    int rc = hold_reserve(&lock->holds, to, 1, &e);

    if (rc)
        return rc;
    e->held++;
    e = hold_find(&lock->holds, from); /* after the reserve, which may move entries */
    e->held--;
    hold_put(&lock->holds, e);
    if (lock->head != NULL)
        grant(lock);
    return 0;
}

/* The checks common to both conversions: 0, EINVAL or EPERM. */
static int convert_check(fifolock *lock, const fifolock_mode *from, const fifolock_mode *to)
{
    const struct fifolock_hold *f;

    if (lock == NULL || from == NULL || !valid_mode(to))
        return EINVAL;
    f = hold_find(&lock->holds, from);
    /* The hold a waiting conversion keeps is not another conversion's to take. */
    return f == NULL || f->held <= (uint32_t)(lock->head != NULL && lock->head->from == from)
               ? EPERM
               : 0;
}

int fifolock_try_convert(fifolock *lock, const fifolock_mode *from, const fifolock_mode *to)
{
    int rc = convert_check(lock, from, to);

    if (rc)
        return rc;
    if (converts(lock, from, to))
        rc = convert_now(lock, from, to);
    else
        rc = never_fits(lock, to, 1) ? EDEADLK : EBUSY;
    CHECK(lock);
    return rc;
}

int fifolock_convert(fifolock *lock, fifolock_waiter *waiter, const fifolock_mode *from,
                     const fifolock_mode *to, fifolock_granted_fn *granted, void *arg)
{
    struct fifolock_hold *e;
    int rc = convert_check(lock, from, to);

    if (rc)
        return rc;
    if (waiter == NULL || granted == NULL || waiter->state == WAITER_WAITING)
        return EINVAL;
    if (converts(lock, from, to)) {
        rc = convert_now(lock, from, to);
        if (rc == 0) {
            waiter->lock = lock;
            waiter->mode = to;
            waiter->from = from;
            waiter->n = 1;
            waiter->state = WAITER_GRANTED;
        }
        CHECK(lock);
        return rc;
    }
    if (never_fits(lock, to, 1))
        return EDEADLK; /* it would wait ahead of everybody, for ever */
    if (lock->head != NULL && lock->head->from != NULL)
        return EDEADLK;
    if (lock->waiting == UINT32_MAX)
        return EAGAIN;
    rc = hold_reserve(&lock->holds, to, 1, &e);
    if (rc)
        return rc;
    e->queued++;
    waiter->lock = lock;
    waiter->mode = to;
    waiter->from = from;
    waiter->n = 1;
    waiter->granted = granted;
    waiter->arg = arg;
    waiter->state = WAITER_WAITING;
    queue_push_front(lock, waiter);
    CHECK(lock);
    return FIFOLOCK_WAITING;
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
    e->queued -= (uint32_t)waiter->n;
    hold_put(&lock->holds, e);
    /* Only a new head can be compatible: the old one was not (I3). */
    if (was_head && lock->head != NULL)
        grant(lock);
    CHECK(lock);
    return 0;
}

size_t fifolock_waiting(const fifolock *lock)
{
    return lock ? lock->waiting : 0;
}

bool fifolock_converting(const fifolock *lock)
{
    /* a waiting conversion is always the head (I1) */
    return lock != NULL && lock->head != NULL && lock->head->from != NULL;
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
        if (w->n == 0 || (w->from != NULL && (w != lock->head || w->n != 1)))
            return "queue: a conversion behind the head, or a request of 0";
        if (w->from != NULL && fifolock_held(h, w->from) == 0)
            return "queue: a conversion from a mode not held";
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
            q += w->mode == e->mode ? w->n : 0;
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
    if (!lock->granting && lock->head != NULL && fits((fifolock *)lock, lock->head))
        return "grant: compatible head left waiting";
    return NULL;
}
