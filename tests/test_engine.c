/*
 * Unit tests of the engine: every public function of fifolock.h, its errors,
 * and the behaviour of each ready-made mode.
 *
 * Conventions: a test's name states the behaviour it checks. "Nothing
 * changes" is checked literally: a snapshot of the lock (its bytes, its
 * listed holds) is taken before a failing call and compared after it, the
 * invariants are checked, and the lock is then used again to show it works.
 */
#include "check.h"
#include "internal.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_PTR_EQ(a, b) CHECK_EQ((uintptr_t)(const void *)(a), (uintptr_t)(const void *)(b))
#define CHECK_OK(lock) CHECK_NULL_STR(fifolock__check_invariants(lock))

static size_t held(const fifolock *lock, const fifolock_mode *mode)
{
    return fifolock_held(fifolock_holds_of(lock), mode);
}

static size_t held_total(const fifolock *lock)
{
    return fifolock_held_total(fifolock_holds_of(lock));
}

/* ---- custom modes used by the tests ------------------------------------- */

static bool never_is_compatible(const fifolock_mode *self, const fifolock_holds *holds)
{
    (void)self;
    (void)holds;
    return false;
}

static bool alone_is_compatible(const fifolock_mode *self, const fifolock_holds *holds)
{
    (void)self;
    return fifolock_held_total(holds) == 0;
}

/* A mode that can never be granted: refused at once (EDEADLK), even by an idle lock. */
static const fifolock_mode never_mode = { never_is_compatible, "never", 0 };

/*
 * A predicate that breaks the contract (fifolock.h: predicates are pure and
 * monotone): it answers from a script, then "no" once the script runs out.
 * With "no" then "yes" a request waits on a lock that nobody holds, a state
 * no monotone mode can reach, for the tests of what such a queue refuses.
 */
static bool script_answers[8];
static size_t script_asked, script_len;

static bool scripted_is_compatible(const fifolock_mode *self, const fifolock_holds *holds)
{
    (void)self;
    (void)holds;
    return script_asked < script_len ? script_answers[script_asked++] : false;
}

static const fifolock_mode scripted_mode = { scripted_is_compatible, "scripted", 0 };

/* The next answers of scripted_mode: "no" to the normal question, "yes" to the idle one. */
static void script_no_then_yes(void)
{
    script_answers[0] = false;
    script_answers[1] = true;
    script_asked = 0;
    script_len = 2;
}
/* Exclusive against every mode, its own included. */
static const fifolock_mode alone_mode = { alone_is_compatible, "alone", 0 };
/* A mode without a predicate: invalid. */
static const fifolock_mode no_predicate = { NULL, "no predicate", 0 };

/* ---- a log of grant callbacks -------------------------------------------- */

/*
 * What a grant callback does besides being logged. The callback gets a
 * `struct job *` as its argument (or NULL: log only).
 */
enum job_kind { JOB_NOTHING, JOB_RELEASE, JOB_ACQUIRE, JOB_CANCEL, JOB_DESTROY, JOB_TRY };

struct job {
    int id;                     /* logged in grant order */
    enum job_kind kind;
    fifolock *lock;             /* the lock the job acts on */
    const fifolock_mode *mode;  /* JOB_RELEASE / JOB_ACQUIRE / JOB_TRY */
    fifolock_waiter *other;     /* JOB_ACQUIRE: the new request; JOB_CANCEL: its target */
    struct job *other_job;      /* JOB_ACQUIRE: the new request's job */
    int release_first;          /* JOB_DESTROY: release `mode` before destroying */
    int rc;                     /* what the job's call returned */
    int done;
};

#define MAX_LOG 64

static struct {
    size_t n;
    int id[MAX_LOG];
    fifolock_waiter *waiter[MAX_LOG];
    void *arg[MAX_LOG];
    unsigned depth, max_depth;
} glog;

static void log_reset(void)
{
    memset(&glog, 0, sizeof glog);
}

static void on_grant(fifolock_waiter *w, void *arg)
{
    struct job *job = arg;

    if (glog.n < MAX_LOG) {
        glog.id[glog.n] = job ? job->id : -1;
        glog.waiter[glog.n] = w;
        glog.arg[glog.n] = arg;
    }
    glog.n++;
    if (++glog.depth > glog.max_depth)
        glog.max_depth = glog.depth;
    if (job != NULL) {
        switch (job->kind) {
        case JOB_NOTHING:
            job->rc = 0;
            break;
        case JOB_RELEASE:
            job->rc = fifolock_release(job->lock, job->mode);
            break;
        case JOB_ACQUIRE:
            job->rc = fifolock_acquire(job->lock, job->other, job->mode, on_grant, job->other_job);
            break;
        case JOB_TRY:
            job->rc = fifolock_try_acquire(job->lock, job->mode);
            break;
        case JOB_CANCEL:
            job->rc = fifolock_cancel(job->lock, job->other);
            break;
        case JOB_DESTROY:
            if (job->release_first)
                CHECK_EQ(fifolock_release(job->lock, job->mode), 0);
            job->rc = fifolock_destroy(job->lock);
            break;
        }
        job->done++;
    }
    glog.depth--;
}

/* Checks that the log holds exactly the ids given, in that order. */
static void check_log(const int *ids, size_t n, int line)
{
    size_t i;
    int before = check_failures;

    CHECK_EQ(glog.n, n);
    for (i = 0; i < n && i < glog.n && i < MAX_LOG; i++)
        CHECK_EQ(glog.id[i], ids[i]);
    CHECK_LE(glog.max_depth, 1);
    if (check_failures != before)
        fprintf(stderr, "  (grant log checked at line %d)\n", line);
}

#define CHECK_LOG(...)                                                                   \
    do {                                                                                 \
        static const int ids_[] = { __VA_ARGS__ };                                       \
        check_log(ids_, sizeof ids_ / sizeof ids_[0], __LINE__);                         \
    } while (0)
#define CHECK_LOG_EMPTY() check_log(NULL, 0, __LINE__)

/* ---- "nothing changed" --------------------------------------------------- */

#define MAX_SNAP_MODES 64

struct snapshot {
    fifolock bytes;
    size_t n;
    const fifolock_mode *modes[MAX_SNAP_MODES];
    size_t counts[MAX_SNAP_MODES];
    size_t waiting, total;
};

static void sort_holds(const fifolock_mode **modes, size_t *counts, size_t n)
{
    size_t i, j;

    for (i = 1; i < n; i++)
        for (j = i; j > 0 && (uintptr_t)modes[j - 1] > (uintptr_t)modes[j]; j--) {
            const fifolock_mode *m = modes[j];
            size_t c = counts[j];
            modes[j] = modes[j - 1];
            counts[j] = counts[j - 1];
            modes[j - 1] = m;
            counts[j - 1] = c;
        }
}

static void snap_take(struct snapshot *s, const fifolock *lock)
{
    memcpy(&s->bytes, lock, sizeof *lock);
    s->n = fifolock_holds_list(fifolock_holds_of(lock), s->modes, s->counts, MAX_SNAP_MODES);
    sort_holds(s->modes, s->counts, s->n < MAX_SNAP_MODES ? s->n : MAX_SNAP_MODES);
    s->waiting = fifolock_waiting(lock);
    s->total = held_total(lock);
}

static void snap_check(const struct snapshot *s, const fifolock *lock, int line)
{
    struct snapshot now;
    size_t i;
    int before = check_failures;

    snap_take(&now, lock);
    CHECK_EQ(memcmp(&s->bytes, lock, sizeof *lock), 0);
    CHECK_EQ(now.n, s->n);
    for (i = 0; i < s->n && i < now.n && i < MAX_SNAP_MODES; i++) {
        CHECK_PTR_EQ(now.modes[i], s->modes[i]);
        CHECK_EQ(now.counts[i], s->counts[i]);
    }
    CHECK_EQ(now.waiting, s->waiting);
    CHECK_EQ(now.total, s->total);
    CHECK_OK(lock);
    if (check_failures != before)
        fprintf(stderr, "  (lock changed; checked at line %d)\n", line);
}

#define CHECK_UNCHANGED(s, lock) snap_check((s), (lock), __LINE__)

/*
 * A busy lock: held by 2 readers, a mutex, a semaphore and IS (four modes,
 * more than FIFOLOCK_INLINE_MODES), with a write, a read and a mutex request
 * queued in that order.
 */
struct busy {
    fifolock lock;
    fifolock_mode sem;
    fifolock_waiter w[3];
    struct job job[3];
};

static void busy_init(struct busy *b)
{
    static const fifolock_mode *const queued[3] = { &fifolock_write, &fifolock_read,
                                                     &fifolock_mutex };
    int i;

    memset(b, 0, sizeof *b);
    b->sem = (fifolock_mode)FIFOLOCK_SEMAPHORE(2);
    fifolock_init(&b->lock);
    CHECK_EQ(fifolock_try_acquire(&b->lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_try_acquire(&b->lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_try_acquire(&b->lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_try_acquire(&b->lock, &b->sem), 0);
    CHECK_EQ(fifolock_try_acquire(&b->lock, &fifolock_is), 0);
    for (i = 0; i < 3; i++) {
        b->job[i].id = i;
        CHECK_EQ(fifolock_acquire(&b->lock, &b->w[i], queued[i], on_grant, &b->job[i]),
                 FIFOLOCK_WAITING);
    }
    CHECK_EQ(fifolock_waiting(&b->lock), 3);
    CHECK_EQ(held_total(&b->lock), 5);
    CHECK_OK(&b->lock);
    log_reset();
}

/* Shows the busy lock still works: drains it in FIFO order and destroys it. */
static void busy_finish(struct busy *b)
{
    fifolock *lock = &b->lock;

    CHECK_EQ(fifolock_release(lock, &fifolock_read), 0);
    CHECK_LOG_EMPTY();
    CHECK_EQ(fifolock_release(lock, &fifolock_read), 0);
    CHECK_LOG(0);
    CHECK_EQ(held(lock, &fifolock_write), 1);
    CHECK_EQ(fifolock_release(lock, &fifolock_write), 0);
    CHECK_LOG(0, 1); /* the read is granted; the mutex behind it waits for the mutex */
    CHECK_EQ(fifolock_waiting(lock), 1);
    CHECK_EQ(fifolock_release(lock, &fifolock_mutex), 0);
    CHECK_LOG(0, 1, 2);
    CHECK_EQ(fifolock_waiting(lock), 0);
    CHECK_EQ(fifolock_release(lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_release(lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_release(lock, &b->sem), 0);
    CHECK_EQ(fifolock_release(lock, &fifolock_is), 0);
    CHECK_EQ(held_total(lock), 0);
    CHECK_OK(lock);
    CHECK_EQ(fifolock_destroy(lock), 0);
}

/* ---- basics --------------------------------------------------------------- */

static void mutex_blocks_mutex(void)
{
    fifolock lock;
    fifolock_waiter w = FIFOLOCK_WAITER_INIT;

    log_reset();
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_mutex), EBUSY);
    CHECK_EQ(fifolock_acquire(&lock, &w, &fifolock_mutex, on_grant, NULL), FIFOLOCK_WAITING);
    CHECK_EQ(held(&lock, &fifolock_mutex), 1);
    CHECK_EQ(fifolock_release(&lock, &fifolock_mutex), 0);
    CHECK_EQ(glog.n, 1);
    CHECK_EQ(held(&lock, &fifolock_mutex), 1);
    CHECK_EQ(fifolock_release(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_mutex), EPERM);
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void two_locks_are_independent(void)
{
    fifolock a, b;
    fifolock_waiter wa = FIFOLOCK_WAITER_INIT, wb = FIFOLOCK_WAITER_INIT;
    struct job ja = { .id = 1 }, jb = { .id = 2 };

    log_reset();
    fifolock_init(&a);
    fifolock_init(&b);
    CHECK_EQ(fifolock_try_acquire(&a, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_try_acquire(&b, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_acquire(&a, &wa, &fifolock_mutex, on_grant, &ja), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_acquire(&b, &wb, &fifolock_mutex, on_grant, &jb), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_waiting(&a), 1);
    CHECK_EQ(fifolock_waiting(&b), 1);
    CHECK_EQ(fifolock_release(&b, &fifolock_mutex), 0);
    CHECK_LOG(2);
    CHECK_EQ(fifolock_waiting(&a), 1);
    CHECK_EQ(held(&a, &fifolock_mutex), 1);
    CHECK_EQ(fifolock_cancel(&b, &wa), EINVAL); /* wa waits on a, not b */
    CHECK_EQ(fifolock_release(&a, &fifolock_mutex), 0);
    CHECK_LOG(2, 1);
    CHECK_EQ(fifolock_release(&a, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_release(&b, &fifolock_mutex), 0);
    CHECK_OK(&a);
    CHECK_OK(&b);
    CHECK_EQ(fifolock_destroy(&a), 0);
    CHECK_EQ(fifolock_destroy(&b), 0);
}

static void acquire_on_a_free_lock_returns_0_without_calling_back(void)
{
    fifolock lock;
    fifolock_waiter w = FIFOLOCK_WAITER_INIT;
    struct job job = { .id = 7 };

    log_reset();
    fifolock_init(&lock);
    CHECK_EQ(fifolock_acquire(&lock, &w, &fifolock_read, on_grant, &job), 0);
    CHECK_EQ(held(&lock, &fifolock_read), 1);
    CHECK_EQ(fifolock_waiting(&lock), 0);
    /* a compatible mode is granted at once too, while nobody waits */
    CHECK_EQ(fifolock_acquire(&lock, &w, &fifolock_read, on_grant, &job), 0);
    CHECK_EQ(held(&lock, &fifolock_read), 2);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_LOG_EMPTY(); /* not called, not even later */
    CHECK_EQ(job.done, 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void acquire_on_a_held_lock_queues_and_returns_waiting(void)
{
    fifolock lock;
    fifolock_waiter w1 = FIFOLOCK_WAITER_INIT, w2 = FIFOLOCK_WAITER_INIT;

    log_reset();
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_acquire(&lock, &w1, &fifolock_read, on_grant, NULL), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_waiting(&lock), 1);
    CHECK_EQ(fifolock_acquire(&lock, &w2, &fifolock_write, on_grant, NULL), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_waiting(&lock), 2);
    CHECK_EQ(held(&lock, &fifolock_read), 0); /* queued is not held */
    CHECK_EQ(held(&lock, &fifolock_write), 1);
    CHECK_TRUE(fifolock__waiter_is_queued(&w1));
    CHECK_TRUE(fifolock__waiter_is_queued(&w2));
    CHECK_LOG_EMPTY();
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_cancel(&lock, &w2), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_write), 0);
    CHECK_EQ(glog.n, 1);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void granted_runs_once_inside_the_release_that_made_room(void)
{
    fifolock lock;
    fifolock_waiter w1 = FIFOLOCK_WAITER_INIT, w2 = FIFOLOCK_WAITER_INIT;
    struct job j1 = { .id = 1 }, j2 = { .id = 2 };

    log_reset();
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_acquire(&lock, &w1, &fifolock_mutex, on_grant, &j1), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_acquire(&lock, &w2, &fifolock_mutex, on_grant, &j2), FIFOLOCK_WAITING);
    CHECK_LOG_EMPTY();

    /* Single-threaded: if the log grew during this call, the call ran it. */
    CHECK_EQ(fifolock_release(&lock, &fifolock_mutex), 0);
    CHECK_LOG(1);
    CHECK_PTR_EQ(glog.waiter[0], &w1);
    CHECK_PTR_EQ(glog.arg[0], &j1);
    CHECK_EQ(j1.done, 1);
    CHECK_EQ(fifolock_waiting(&lock), 1);

    CHECK_EQ(fifolock_release(&lock, &fifolock_mutex), 0);
    CHECK_LOG(1, 2);
    CHECK_PTR_EQ(glog.waiter[1], &w2);
    CHECK_PTR_EQ(glog.arg[1], &j2);

    CHECK_EQ(fifolock_release(&lock, &fifolock_mutex), 0);
    CHECK_LOG(1, 2); /* exactly once each */
    CHECK_EQ(j1.done, 1);
    CHECK_EQ(j2.done, 1);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static struct {
    const fifolock *lock;
    size_t held_read, held_write, waiting, total;
    int queued;
    const char *invariants;
} seen;

static void record_what_callback_sees(fifolock_waiter *w, void *arg)
{
    (void)arg;
    seen.held_read = held(seen.lock, &fifolock_read);
    seen.held_write = held(seen.lock, &fifolock_write);
    seen.waiting = fifolock_waiting(seen.lock);
    seen.total = held_total(seen.lock);
    seen.queued = fifolock__waiter_is_queued(w);
    seen.invariants = fifolock__check_invariants(seen.lock);
}

static void granted_callback_sees_its_own_hold_and_has_left_the_queue(void)
{
    fifolock lock;
    fifolock_waiter w1 = FIFOLOCK_WAITER_INIT, w2 = FIFOLOCK_WAITER_INIT;

    fifolock_init(&lock);
    memset(&seen, 0, sizeof seen);
    seen.lock = &lock;
    seen.queued = -1;
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_acquire(&lock, &w1, &fifolock_read, record_what_callback_sees, NULL),
             FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_acquire(&lock, &w2, &fifolock_write, record_what_callback_sees, NULL),
             FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_release(&lock, &fifolock_write), 0);
    CHECK_EQ(seen.held_read, 1);
    CHECK_EQ(seen.held_write, 0);
    CHECK_EQ(seen.waiting, 1);
    CHECK_EQ(seen.total, 1);
    CHECK_EQ(seen.queued, 0);
    CHECK_NULL_STR(seen.invariants);
    CHECK_EQ(fifolock_cancel(&lock, &w2), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

/* ---- cancellation --------------------------------------------------------- */

static void cancel_before_the_grant_withdraws_the_request(void)
{
    fifolock lock;
    fifolock_waiter w = FIFOLOCK_WAITER_INIT;
    struct job job = { .id = 1 };

    log_reset();
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_acquire(&lock, &w, &fifolock_mutex, on_grant, &job), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_waiting(&lock), 1);
    CHECK_EQ(fifolock_cancel(&lock, &w), 0);
    CHECK_EQ(fifolock_waiting(&lock), 0);
    CHECK_FALSE(fifolock__waiter_is_queued(&w));
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_release(&lock, &fifolock_mutex), 0);
    CHECK_LOG_EMPTY(); /* never runs */
    CHECK_EQ(held_total(&lock), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0); /* the cancelled mode left nothing behind */
}

static void cancel_after_the_grant_is_ealready_and_the_hold_remains(void)
{
    fifolock lock;
    fifolock_waiter w = FIFOLOCK_WAITER_INIT;

    log_reset();
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_acquire(&lock, &w, &fifolock_write, on_grant, NULL), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_release(&lock, &fifolock_write), 0);
    CHECK_EQ(glog.n, 1);
    CHECK_EQ(fifolock_cancel(&lock, &w), EALREADY);
    CHECK_EQ(held(&lock, &fifolock_write), 1);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_read), EBUSY);
    CHECK_EQ(fifolock_destroy(&lock), EBUSY);
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_release(&lock, &fifolock_write), 0);
    CHECK_EQ(held_total(&lock), 0);
    CHECK_EQ(glog.n, 1);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void cancel_of_a_request_granted_at_once_is_ealready(void)
{
    fifolock lock;
    fifolock_waiter w = FIFOLOCK_WAITER_INIT;

    log_reset();
    fifolock_init(&lock);
    CHECK_EQ(fifolock_acquire(&lock, &w, &fifolock_mutex, on_grant, NULL), 0);
    CHECK_EQ(fifolock_cancel(&lock, &w), EALREADY);
    CHECK_EQ(held(&lock, &fifolock_mutex), 1);
    CHECK_EQ(fifolock_release(&lock, &fifolock_mutex), 0);
    CHECK_LOG_EMPTY();
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void cancelled_head_unblocks_readers_behind_it(void)
{
    fifolock lock;
    fifolock_waiter w[5];
    struct job job[5];
    static const fifolock_mode *const mode[5] = { &fifolock_write, &fifolock_read,
                                                   &fifolock_read, &fifolock_write,
                                                   &fifolock_read };
    int i;

    memset(w, 0, sizeof w);
    memset(job, 0, sizeof job);
    log_reset();
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_read), 0);
    for (i = 0; i < 5; i++) {
        job[i].id = i;
        CHECK_EQ(fifolock_acquire(&lock, &w[i], mode[i], on_grant, &job[i]), FIFOLOCK_WAITING);
    }
    CHECK_EQ(fifolock_cancel(&lock, &w[0]), 0);
    /* inside the cancel: both reads granted, the write behind them stops the loop */
    CHECK_LOG(1, 2);
    CHECK_EQ(held(&lock, &fifolock_read), 3);
    CHECK_EQ(fifolock_waiting(&lock), 2);
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_LOG(1, 2);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_LOG(1, 2, 3);
    CHECK_EQ(fifolock_release(&lock, &fifolock_write), 0);
    CHECK_LOG(1, 2, 3, 4);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void cancelling_a_non_head_waiter_grants_nothing(void)
{
    fifolock lock;
    fifolock_waiter w[4];
    struct job job[4];
    static const fifolock_mode *const mode[4] = { &fifolock_write, &fifolock_read,
                                                   &fifolock_read, &fifolock_mutex };
    int i;

    memset(w, 0, sizeof w);
    memset(job, 0, sizeof job);
    log_reset();
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_read), 0);
    for (i = 0; i < 4; i++) {
        job[i].id = i;
        CHECK_EQ(fifolock_acquire(&lock, &w[i], mode[i], on_grant, &job[i]), FIFOLOCK_WAITING);
    }
    CHECK_EQ(fifolock_cancel(&lock, &w[1]), 0);
    CHECK_LOG_EMPTY();
    CHECK_EQ(fifolock_cancel(&lock, &w[3]), 0); /* the tail */
    CHECK_LOG_EMPTY();
    CHECK_EQ(fifolock_waiting(&lock), 2);
    CHECK_EQ(held(&lock, &fifolock_read), 1);
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_LOG(0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_write), 0);
    CHECK_LOG(0, 2);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

/* ---- FIFO ------------------------------------------------------------------ */

static void reads_released_out_of_order_still_block_a_waiting_write(void)
{
    fifolock lock;
    fifolock_waiter r1 = FIFOLOCK_WAITER_INIT, r2 = FIFOLOCK_WAITER_INIT,
                    wr = FIFOLOCK_WAITER_INIT;
    struct job jw = { .id = 3 };

    log_reset();
    fifolock_init(&lock);
    CHECK_EQ(fifolock_acquire(&lock, &r1, &fifolock_read, on_grant, NULL), 0);
    CHECK_EQ(fifolock_acquire(&lock, &r2, &fifolock_read, on_grant, NULL), 0);
    CHECK_EQ(fifolock_acquire(&lock, &wr, &fifolock_write, on_grant, &jw), FIFOLOCK_WAITING);
    /* the later read finishes first: one read is still held, the write waits */
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_LOG_EMPTY();
    CHECK_EQ(fifolock_waiting(&lock), 1);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_LOG(3);
    CHECK_EQ(held(&lock, &fifolock_write), 1);
    CHECK_EQ(fifolock_release(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void a_write_is_not_preferred_over_an_earlier_read(void)
{
    fifolock lock;
    fifolock_waiter r = FIFOLOCK_WAITER_INIT, wr = FIFOLOCK_WAITER_INIT;
    struct job jr = { .id = 1 }, jw = { .id = 2 };

    log_reset();
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_acquire(&lock, &r, &fifolock_read, on_grant, &jr), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_acquire(&lock, &wr, &fifolock_write, on_grant, &jw), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_release(&lock, &fifolock_write), 0);
    CHECK_LOG(1);
    CHECK_EQ(held(&lock, &fifolock_read), 1);
    CHECK_EQ(held(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_waiting(&lock), 1);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_LOG(1, 2);
    CHECK_EQ(fifolock_release(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void a_compatible_newcomer_queues_behind_a_waiter(void)
{
    fifolock lock;
    fifolock_waiter wr = FIFOLOCK_WAITER_INIT, rd = FIFOLOCK_WAITER_INIT,
                    mx = FIFOLOCK_WAITER_INIT;
    struct job jw = { .id = 1 }, jr = { .id = 2 }, jm = { .id = 3 };

    log_reset();
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_acquire(&lock, &wr, &fifolock_write, on_grant, &jw), FIFOLOCK_WAITING);
    /* read is compatible with the read held, yet it must not pass the write */
    CHECK_EQ(fifolock_acquire(&lock, &rd, &fifolock_read, on_grant, &jr), FIFOLOCK_WAITING);
    /* nor may a mode that ignores read and write altogether */
    CHECK_EQ(fifolock_acquire(&lock, &mx, &fifolock_mutex, on_grant, &jm), FIFOLOCK_WAITING);
    CHECK_EQ(held(&lock, &fifolock_read), 1);
    CHECK_EQ(held(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_waiting(&lock), 3);
    CHECK_LOG_EMPTY();
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_LOG(1);
    CHECK_EQ(fifolock_release(&lock, &fifolock_write), 0);
    CHECK_LOG(1, 2, 3); /* read, then the mutex, which read does not block */
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void try_acquire_is_ebusy_while_anybody_waits(void)
{
    fifolock lock;
    fifolock_waiter wr = FIFOLOCK_WAITER_INIT;
    struct snapshot s;

    log_reset();
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_acquire(&lock, &wr, &fifolock_write, on_grant, NULL), FIFOLOCK_WAITING);
    snap_take(&s, &lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_read), EBUSY);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_mutex), EBUSY);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_write), EBUSY);
    CHECK_UNCHANGED(&s, &lock);
    CHECK_EQ(fifolock_cancel(&lock, &wr), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_read), 0); /* nobody waits now */
    CHECK_EQ(held(&lock, &fifolock_read), 3);
    CHECK_LOG_EMPTY();
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

/* ---- recipes ---------------------------------------------------------------- */

static void reads_share_and_write_excludes(void)
{
    fifolock lock;
    int i;

    fifolock_init(&lock);
    for (i = 0; i < 10; i++)
        CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_read), 0);
    CHECK_EQ(held(&lock, &fifolock_read), 10);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_write), EBUSY);
    for (i = 0; i < 10; i++)
        CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_read), EBUSY);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_write), EBUSY);
    /* read/write and the mutex are separate recipes: they ignore each other */
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_write), 0);
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void check_semaphore_admits_exactly(size_t n)
{
    fifolock lock;
    fifolock_mode sem = FIFOLOCK_SEMAPHORE(n);
    fifolock_waiter w = FIFOLOCK_WAITER_INIT;
    size_t i;

    log_reset();
    fifolock_init(&lock);
    for (i = 0; i < n; i++)
        CHECK_EQ(fifolock_try_acquire(&lock, &sem), 0);
    CHECK_EQ(held(&lock, &sem), n);
    CHECK_EQ(fifolock_try_acquire(&lock, &sem), EBUSY);
    CHECK_EQ(fifolock_acquire(&lock, &w, &sem, on_grant, NULL), FIFOLOCK_WAITING);
    CHECK_EQ(held(&lock, &sem), n);
    CHECK_EQ(fifolock_release(&lock, &sem), 0);
    CHECK_EQ(glog.n, 1); /* the place freed went to the waiter */
    CHECK_EQ(held(&lock, &sem), n);
    CHECK_EQ(fifolock_try_acquire(&lock, &sem), EBUSY);
    for (i = 0; i < n; i++)
        CHECK_EQ(fifolock_release(&lock, &sem), 0);
    CHECK_EQ(fifolock_release(&lock, &sem), EPERM);
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void semaphore_of_1_admits_1(void)
{
    check_semaphore_admits_exactly(1);
}

static void semaphore_of_3_admits_3(void)
{
    check_semaphore_admits_exactly(3);
}

static void semaphore_initializer_fills_the_mode(void)
{
    static const fifolock_mode s5 = FIFOLOCK_SEMAPHORE(5);
    fifolock_mode s0 = FIFOLOCK_SEMAPHORE(0);
    fifolock lock;

    CHECK_TRUE(s5.is_compatible == fifolock_semaphore_is_compatible);
    CHECK_EQ(s5.limit, 5);
    CHECK_TRUE(s5.name != NULL && strcmp(s5.name, "semaphore") == 0);
    /* a semaphore of no places admits nobody, ever: refused at once */
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &s0), EDEADLK);
    CHECK_FALSE(fifolock_semaphore_is_compatible(&s0, fifolock_holds_of(&lock)));
    CHECK_TRUE(fifolock_semaphore_is_compatible(&s5, fifolock_holds_of(&lock)));
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void semaphores_are_distinct_modes_by_address(void)
{
    fifolock lock;
    fifolock_mode a = FIFOLOCK_SEMAPHORE(1), b = FIFOLOCK_SEMAPHORE(1);

    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &a), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &b), 0); /* equal contents, another mode */
    CHECK_EQ(fifolock_try_acquire(&lock, &a), EBUSY);
    CHECK_EQ(held(&lock, &a), 1);
    CHECK_EQ(held(&lock, &b), 1);
    CHECK_EQ(fifolock_release(&lock, &a), 0);
    CHECK_EQ(fifolock_release(&lock, &a), EPERM);
    CHECK_EQ(fifolock_release(&lock, &b), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

/* The standard matrix, written out again: row may join column. */
static const fifolock_mode *const intention[5] = { &fifolock_is, &fifolock_ix, &fifolock_s,
                                                   &fifolock_six, &fifolock_x };
static const char *const intention_name[5] = { "IS", "IX", "S", "SIX", "X" };
static const char *const may_join[5] = {
    /* IS IX S SIX X */
    "yyyyn", /* IS */
    "yynnn", /* IX */
    "ynynn", /* S */
    "ynnnn", /* SIX */
    "nnnnn", /* X */
};

static void intention_matrix_holds_for_all_25_pairs(void)
{
    int a, b;

    for (a = 0; a < 5; a++)
        for (b = 0; b < 5; b++) {
            fifolock lock;
            int want = may_join[b][a] == 'y' ? 0 : EBUSY;
            int rc, before = check_failures;

            fifolock_init(&lock);
            CHECK_EQ(fifolock_try_acquire(&lock, intention[a]), 0);
            CHECK_EQ(intention[b]->is_compatible(intention[b], fifolock_holds_of(&lock)),
                     want == 0);
            rc = fifolock_try_acquire(&lock, intention[b]);
            CHECK_EQ(rc, want);
            /* the matrix is symmetric: check it really is read both ways */
            CHECK_EQ(may_join[a][b], may_join[b][a]);
            if (rc == 0)
                CHECK_EQ(fifolock_release(&lock, intention[b]), 0);
            CHECK_EQ(fifolock_release(&lock, intention[a]), 0);
            CHECK_EQ(fifolock_destroy(&lock), 0);
            if (check_failures != before)
                fprintf(stderr, "  (holding %s, trying %s)\n", intention_name[a],
                        intention_name[b]);
        }
}

static void intention_modes_held_together_admit_only_what_all_allow(void)
{
    unsigned set;
    int tried = 0;

    /* every set of modes that can be held together; twice each where it may */
    for (set = 1; set < 32; set++) {
        fifolock lock;
        int a, b, ok = 1;

        for (a = 0; a < 5; a++)
            for (b = 0; b < 5; b++)
                if (a != b && (set >> a & 1) && (set >> b & 1) && may_join[a][b] != 'y')
                    ok = 0;
        if (!ok)
            continue;
        tried++;
        fifolock_init(&lock);
        for (a = 0; a < 5; a++)
            if (set >> a & 1) {
                CHECK_EQ(fifolock_try_acquire(&lock, intention[a]), 0);
                CHECK_EQ(fifolock_try_acquire(&lock, intention[a]),
                         may_join[a][a] == 'y' ? 0 : EBUSY);
            }
        for (b = 0; b < 5; b++) {
            int want = 0, before = check_failures;
            for (a = 0; a < 5; a++)
                if ((set >> a & 1) && may_join[b][a] != 'y')
                    want = EBUSY;
            CHECK_EQ(fifolock_try_acquire(&lock, intention[b]), want);
            if (want == 0)
                CHECK_EQ(fifolock_release(&lock, intention[b]), 0);
            if (check_failures != before)
                fprintf(stderr, "  (held set 0x%x, trying %s)\n", set, intention_name[b]);
        }
        for (a = 0; a < 5; a++)
            if (set >> a & 1) {
                CHECK_EQ(held(&lock, intention[a]), may_join[a][a] == 'y' ? 2 : 1);
                while (held(&lock, intention[a]) > 0)
                    CHECK_EQ(fifolock_release(&lock, intention[a]), 0);
            }
        CHECK_EQ(fifolock_destroy(&lock), 0);
    }
    /* {}, IS, IX, S, SIX, X, IS+IX, IS+S, IS+SIX: 8 non-empty sets */
    CHECK_EQ(tried, 8);
}

static void s_waits_while_is_and_ix_are_held_and_is_granted_after_ix_leaves(void)
{
    fifolock lock;
    fifolock_waiter w = FIFOLOCK_WAITER_INIT, six = FIFOLOCK_WAITER_INIT;
    struct job js = { .id = 1 }, jsix = { .id = 2 };

    log_reset();
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_is), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_ix), 0);
    CHECK_EQ(fifolock_acquire(&lock, &w, &fifolock_s, on_grant, &js), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_acquire(&lock, &six, &fifolock_six, on_grant, &jsix), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_release(&lock, &fifolock_is), 0);
    CHECK_LOG_EMPTY(); /* IX alone still keeps S out */
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_is), EBUSY); /* IS would fit, but queues */
    CHECK_EQ(fifolock_release(&lock, &fifolock_ix), 0);
    CHECK_LOG(1); /* S in; SIX behind it conflicts with S */
    CHECK_EQ(held(&lock, &fifolock_s), 1);
    CHECK_EQ(fifolock_release(&lock, &fifolock_s), 0);
    CHECK_LOG(1, 2);
    CHECK_EQ(fifolock_release(&lock, &fifolock_six), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void intention_waiters_behind_x_are_granted_while_compatible(void)
{
    fifolock lock;
    fifolock_waiter w[4];
    struct job job[4];
    static const fifolock_mode *const mode[4] = { &fifolock_is, &fifolock_ix, &fifolock_s,
                                                   &fifolock_is };
    int i;

    memset(w, 0, sizeof w);
    memset(job, 0, sizeof job);
    log_reset();
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_x), 0);
    for (i = 0; i < 4; i++) {
        job[i].id = i;
        CHECK_EQ(fifolock_acquire(&lock, &w[i], mode[i], on_grant, &job[i]), FIFOLOCK_WAITING);
    }
    CHECK_EQ(fifolock_release(&lock, &fifolock_x), 0);
    CHECK_LOG(0, 1); /* IS and IX; S conflicts with IX and the IS behind S waits */
    CHECK_EQ(fifolock_waiting(&lock), 2);
    CHECK_EQ(fifolock_release(&lock, &fifolock_ix), 0);
    CHECK_LOG(0, 1, 2, 3);
    CHECK_EQ(held(&lock, &fifolock_is), 2);
    CHECK_EQ(held(&lock, &fifolock_s), 1);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_six), EBUSY);
    CHECK_EQ(fifolock_release(&lock, &fifolock_is), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_is), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_s), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void custom_mode_sees_every_holder(void)
{
    fifolock lock;
    fifolock_waiter w = FIFOLOCK_WAITER_INIT;

    log_reset();
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &alone_mode), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &alone_mode), EBUSY);
    CHECK_EQ(fifolock_release(&lock, &alone_mode), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_is), 0);
    CHECK_EQ(fifolock_acquire(&lock, &w, &alone_mode, on_grant, NULL), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_release(&lock, &fifolock_is), 0);
    CHECK_EQ(glog.n, 1);
    CHECK_EQ(held(&lock, &alone_mode), 1);
    CHECK_EQ(fifolock_release(&lock, &alone_mode), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

/* ---- reentrancy -------------------------------------------------------------- */

static void callback_that_acquires_is_granted_at_once_when_the_queue_is_empty(void)
{
    fifolock lock;
    fifolock_waiter w1 = FIFOLOCK_WAITER_INIT, w2 = FIFOLOCK_WAITER_INIT;
    struct job j2 = { .id = 2 };
    struct job j1 = { .id = 1, .kind = JOB_ACQUIRE, .lock = &lock, .mode = &fifolock_read,
                      .other = &w2, .other_job = &j2 };

    log_reset();
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_acquire(&lock, &w1, &fifolock_read, on_grant, &j1), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_release(&lock, &fifolock_write), 0);
    CHECK_EQ(j1.rc, 0);
    CHECK_LOG(1); /* w2 got it at once: its callback is not called */
    CHECK_EQ(held(&lock, &fifolock_read), 2);
    CHECK_EQ(fifolock_waiting(&lock), 0);
    CHECK_EQ(fifolock_cancel(&lock, &w2), EALREADY);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void callback_that_acquires_queues_behind_other_waiters(void)
{
    fifolock lock;
    fifolock_waiter w1 = FIFOLOCK_WAITER_INIT, w2 = FIFOLOCK_WAITER_INIT,
                    w3 = FIFOLOCK_WAITER_INIT;
    struct job j2 = { .id = 2 }, j3 = { .id = 3 };
    struct job j1 = { .id = 1, .kind = JOB_ACQUIRE, .lock = &lock, .mode = &fifolock_read,
                      .other = &w3, .other_job = &j3 };

    log_reset();
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_acquire(&lock, &w1, &fifolock_read, on_grant, &j1), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_acquire(&lock, &w2, &fifolock_write, on_grant, &j2), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_release(&lock, &fifolock_write), 0);
    /* read would be compatible, but the write queued before it */
    CHECK_EQ(j1.rc, FIFOLOCK_WAITING);
    CHECK_LOG(1);
    CHECK_EQ(fifolock_waiting(&lock), 2);
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_LOG(1, 2);
    CHECK_EQ(fifolock_release(&lock, &fifolock_write), 0);
    CHECK_LOG(1, 2, 3);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void callback_that_releases_lets_the_next_waiter_in_without_nesting(void)
{
    fifolock lock;
    fifolock_waiter w[3];
    struct job job[3];
    int i;

    memset(w, 0, sizeof w);
    log_reset();
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_mutex), 0);
    for (i = 0; i < 3; i++) {
        job[i] = (struct job){ .id = i, .kind = i < 2 ? JOB_RELEASE : JOB_NOTHING,
                               .lock = &lock, .mode = &fifolock_mutex };
        CHECK_EQ(fifolock_acquire(&lock, &w[i], &fifolock_mutex, on_grant, &job[i]),
                 FIFOLOCK_WAITING);
    }
    CHECK_EQ(fifolock_release(&lock, &fifolock_mutex), 0);
    CHECK_LOG(0, 1, 2); /* one after another, never one inside another */
    CHECK_EQ(job[0].rc, 0);
    CHECK_EQ(job[1].rc, 0);
    CHECK_EQ(held(&lock, &fifolock_mutex), 1);
    CHECK_EQ(fifolock_waiting(&lock), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void callback_that_cancels_a_later_waiter_keeps_it_from_being_granted(void)
{
    fifolock lock;
    fifolock_waiter w[4];
    struct job job[4];
    static const fifolock_mode *const mode[4] = { &fifolock_read, &fifolock_read,
                                                   &fifolock_read, &fifolock_write };
    int i;

    memset(w, 0, sizeof w);
    memset(job, 0, sizeof job);
    log_reset();
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_write), 0);
    for (i = 0; i < 4; i++) {
        job[i].id = i;
        CHECK_EQ(fifolock_acquire(&lock, &w[i], mode[i], on_grant, &job[i]), FIFOLOCK_WAITING);
    }
    job[0].kind = JOB_CANCEL;
    job[0].lock = &lock;
    job[0].other = &w[2];
    CHECK_EQ(fifolock_release(&lock, &fifolock_write), 0);
    CHECK_EQ(job[0].rc, 0);
    CHECK_LOG(0, 1);
    CHECK_EQ(held(&lock, &fifolock_read), 2);
    CHECK_EQ(fifolock_waiting(&lock), 1);
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_LOG(0, 1, 3);
    CHECK_EQ(fifolock_release(&lock, &fifolock_write), 0);
    CHECK_EQ(job[2].done, 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void callback_that_cancels_the_new_head_lets_the_outer_call_grant_past_it(void)
{
    fifolock lock;
    fifolock_waiter w[3];
    struct job job[3];
    static const fifolock_mode *const mode[3] = { &fifolock_read, &fifolock_write,
                                                   &fifolock_read };
    int i;

    memset(w, 0, sizeof w);
    memset(job, 0, sizeof job);
    log_reset();
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_write), 0);
    for (i = 0; i < 3; i++) {
        job[i].id = i;
        CHECK_EQ(fifolock_acquire(&lock, &w[i], mode[i], on_grant, &job[i]), FIFOLOCK_WAITING);
    }
    job[0].kind = JOB_CANCEL;
    job[0].lock = &lock;
    job[0].other = &w[1]; /* the write, head once w[0] is granted */
    CHECK_EQ(fifolock_release(&lock, &fifolock_write), 0);
    CHECK_EQ(job[0].rc, 0);
    CHECK_LOG(0, 2); /* w[2] granted after w[0]'s callback returned: depth stays 1 */
    CHECK_EQ(held(&lock, &fifolock_read), 2);
    CHECK_EQ(fifolock_waiting(&lock), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void callback_that_cancels_its_own_request_is_ealready(void)
{
    fifolock lock;
    fifolock_waiter w = FIFOLOCK_WAITER_INIT;
    struct job job = { .id = 1, .kind = JOB_CANCEL, .lock = &lock, .other = &w };

    log_reset();
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_acquire(&lock, &w, &fifolock_mutex, on_grant, &job), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_release(&lock, &fifolock_mutex), 0);
    CHECK_EQ(job.rc, EALREADY);
    CHECK_EQ(held(&lock, &fifolock_mutex), 1);
    CHECK_EQ(fifolock_release(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void callback_that_tries_sees_the_queue(void)
{
    fifolock lock;
    fifolock_waiter w1 = FIFOLOCK_WAITER_INIT, w2 = FIFOLOCK_WAITER_INIT;
    struct job j1 = { .id = 1, .kind = JOB_TRY, .lock = &lock, .mode = &fifolock_read };
    struct job j2 = { .id = 2, .kind = JOB_TRY, .lock = &lock, .mode = &fifolock_read };
    fifolock_waiter w3 = FIFOLOCK_WAITER_INIT;

    log_reset();
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_acquire(&lock, &w1, &fifolock_read, on_grant, &j1), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_acquire(&lock, &w3, &fifolock_write, on_grant, NULL), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_release(&lock, &fifolock_write), 0);
    CHECK_EQ(j1.rc, EBUSY); /* the write still waits */
    CHECK_EQ(fifolock_cancel(&lock, &w3), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_write), EBUSY);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_acquire(&lock, &w2, &fifolock_read, on_grant, &j2), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_release(&lock, &fifolock_write), 0);
    CHECK_EQ(j2.rc, 0); /* nobody waits any more: a second read joins */
    CHECK_EQ(held(&lock, &fifolock_read), 2);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void callback_may_release_another_lock_whose_waiters_run_inside_it(void)
{
    fifolock a, b;
    fifolock_waiter wa = FIFOLOCK_WAITER_INIT, wb = FIFOLOCK_WAITER_INIT;
    struct job jb = { .id = 2 };
    struct job ja = { .id = 1, .kind = JOB_RELEASE, .lock = &b, .mode = &fifolock_mutex };

    log_reset();
    fifolock_init(&a);
    fifolock_init(&b);
    CHECK_EQ(fifolock_try_acquire(&a, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_try_acquire(&b, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_acquire(&a, &wa, &fifolock_mutex, on_grant, &ja), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_acquire(&b, &wb, &fifolock_mutex, on_grant, &jb), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_release(&a, &fifolock_mutex), 0);
    /* b's grant loop is b's own: it runs inside the release of b */
    CHECK_EQ(glog.n, 2);
    CHECK_EQ(glog.id[0], 1);
    CHECK_EQ(glog.id[1], 2);
    CHECK_EQ(glog.max_depth, 2);
    CHECK_EQ(fifolock_waiting(&b), 0);
    CHECK_EQ(fifolock_release(&a, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_release(&b, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_destroy(&a), 0);
    CHECK_EQ(fifolock_destroy(&b), 0);
}

/* The chain: every callback records its place and the stack, then releases. */
#define CHAIN 100000

static struct {
    fifolock *lock;
    size_t n;
    size_t *order;
    uintptr_t lo, hi;
} chain;

static void chain_granted(fifolock_waiter *w, void *arg)
{
    uintptr_t sp = (uintptr_t)__builtin_frame_address(0);

    (void)w;
    if (chain.n < CHAIN)
        chain.order[chain.n] = (size_t)(uintptr_t)arg;
    chain.n++;
    if (sp < chain.lo)
        chain.lo = sp;
    if (sp > chain.hi)
        chain.hi = sp;
    fifolock_release(chain.lock, &fifolock_mutex);
}

static void long_chain_of_releasing_callbacks_is_granted_in_order_on_a_flat_stack(void)
{
    fifolock lock;
    fifolock_waiter *w = calloc(CHAIN, sizeof *w);
    size_t i, misplaced = 0;

    chain.order = calloc(CHAIN, sizeof *chain.order);
    CHECK_TRUE(w != NULL && chain.order != NULL);
    if (w == NULL || chain.order == NULL)
        goto out;
    chain.lock = &lock;
    chain.n = 0;
    chain.lo = UINTPTR_MAX;
    chain.hi = 0;
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_mutex), 0);
    for (i = 0; i < CHAIN; i++)
        if (fifolock_acquire(&lock, &w[i], &fifolock_mutex, chain_granted, (void *)(uintptr_t)i) !=
            FIFOLOCK_WAITING)
            misplaced++;
    CHECK_EQ(misplaced, 0);
    CHECK_EQ(fifolock_waiting(&lock), CHAIN);
    CHECK_EQ(fifolock_release(&lock, &fifolock_mutex), 0);
    CHECK_EQ(chain.n, CHAIN);
    for (i = 0; i < CHAIN && i < chain.n; i++)
        if (chain.order[i] != i)
            misplaced++;
    CHECK_EQ(misplaced, 0);
    /* every callback ran at the same depth: a recursive grant would spread */
    CHECK_EQ(chain.hi - chain.lo, 0);
    CHECK_EQ(fifolock_waiting(&lock), 0);
    CHECK_EQ(held_total(&lock), 0);
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_destroy(&lock), 0);
out:
    free(chain.order);
    free(w);
}

/* ---- destroy ----------------------------------------------------------------- */

static void destroy_of_an_idle_lock_returns_0(void)
{
    fifolock lock;
    fifolock_waiter w = FIFOLOCK_WAITER_INIT;

    fifolock_init(&lock);
    CHECK_EQ(fifolock_destroy(&lock), 0);
    /* a destroyed lock may be initialised again */
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_acquire(&lock, &w, &fifolock_mutex, on_grant, NULL), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_cancel(&lock, &w), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void destroy_of_a_held_lock_is_ebusy_and_changes_nothing(void)
{
    fifolock lock;
    struct snapshot s;

    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_read), 0);
    snap_take(&s, &lock);
    CHECK_EQ(fifolock_destroy(&lock), EBUSY);
    CHECK_UNCHANGED(&s, &lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);

    {
        struct busy b;
        busy_init(&b);
        snap_take(&s, &b.lock);
        CHECK_EQ(fifolock_destroy(&b.lock), EBUSY);
        CHECK_UNCHANGED(&s, &b.lock);
        busy_finish(&b);
    }
}

static void destroy_of_a_waited_on_lock_is_ebusy_and_changes_nothing(void)
{
    fifolock lock;
    fifolock_waiter w = FIFOLOCK_WAITER_INIT;
    struct snapshot s;

    log_reset();
    fifolock_init(&lock);
    /* nobody holds it; one request waits (a predicate that breaks the contract) */
    script_no_then_yes();
    CHECK_EQ(fifolock_acquire(&lock, &w, &scripted_mode, on_grant, NULL), FIFOLOCK_WAITING);
    CHECK_EQ(held_total(&lock), 0);
    snap_take(&s, &lock);
    CHECK_EQ(fifolock_destroy(&lock), EBUSY);
    CHECK_UNCHANGED(&s, &lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_mutex), EBUSY); /* still queued */
    CHECK_EQ(fifolock_cancel(&lock, &w), 0);
    CHECK_LOG_EMPTY();
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void destroy_inside_a_grant_callback_is_ebusy(void)
{
    fifolock lock;
    fifolock_waiter w1 = FIFOLOCK_WAITER_INIT, w2 = FIFOLOCK_WAITER_INIT;
    /* the first releases its own hold, so the lock looks idle from inside */
    struct job j1 = { .id = 1, .kind = JOB_DESTROY, .lock = &lock, .mode = &fifolock_mutex,
                      .release_first = 1 };
    struct job j2 = { .id = 2, .kind = JOB_DESTROY, .lock = &lock };

    log_reset();
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_acquire(&lock, &w1, &fifolock_mutex, on_grant, &j1), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_release(&lock, &fifolock_mutex), 0);
    CHECK_EQ(j1.rc, EBUSY);
    CHECK_LOG(1);
    CHECK_EQ(held_total(&lock), 0);
    CHECK_OK(&lock);
    /* and it is still a working lock */
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_acquire(&lock, &w2, &fifolock_mutex, on_grant, &j2), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_release(&lock, &fifolock_mutex), 0);
    CHECK_EQ(j2.rc, EBUSY); /* held by the callback's own request */
    CHECK_LOG(1, 2);
    CHECK_EQ(fifolock_release(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

/* ---- bad input ----------------------------------------------------------------- */

static void null_arguments_are_einval_and_change_nothing(void)
{
    struct busy b;
    struct snapshot s;
    fifolock_waiter fresh = FIFOLOCK_WAITER_INIT, copy;

    busy_init(&b);
    snap_take(&s, &b.lock);
    copy = fresh;
    CHECK_EQ(fifolock_acquire(NULL, &fresh, &fifolock_read, on_grant, NULL), EINVAL);
    CHECK_EQ(fifolock_acquire(&b.lock, NULL, &fifolock_read, on_grant, NULL), EINVAL);
    CHECK_EQ(fifolock_acquire(&b.lock, &fresh, NULL, on_grant, NULL), EINVAL);
    CHECK_EQ(fifolock_acquire(&b.lock, &fresh, &fifolock_read, NULL, NULL), EINVAL);
    CHECK_EQ(memcmp(&fresh, &copy, sizeof fresh), 0);
    CHECK_EQ(fifolock_try_acquire(NULL, &fifolock_read), EINVAL);
    CHECK_EQ(fifolock_try_acquire(&b.lock, NULL), EINVAL);
    CHECK_EQ(fifolock_release(NULL, &fifolock_read), EINVAL);
    CHECK_EQ(fifolock_release(&b.lock, NULL), EINVAL);
    CHECK_EQ(fifolock_cancel(NULL, &b.w[0]), EINVAL);
    CHECK_EQ(fifolock_cancel(&b.lock, NULL), EINVAL);
    CHECK_EQ(fifolock_destroy(NULL), EINVAL);
    fifolock_init(NULL); /* ignored */
    CHECK_UNCHANGED(&s, &b.lock);
    CHECK_LOG_EMPTY();
    busy_finish(&b);
}

static void mode_without_predicate_is_einval_and_changes_nothing(void)
{
    struct busy b;
    struct snapshot s;
    fifolock lock;
    fifolock_waiter w = FIFOLOCK_WAITER_INIT;

    busy_init(&b);
    snap_take(&s, &b.lock);
    CHECK_EQ(fifolock_acquire(&b.lock, &w, &no_predicate, on_grant, NULL), EINVAL);
    CHECK_EQ(fifolock_try_acquire(&b.lock, &no_predicate), EINVAL);
    /* never held, so releasing it is refused too */
    CHECK_NE(fifolock_release(&b.lock, &no_predicate), 0);
    CHECK_UNCHANGED(&s, &b.lock);
    CHECK_FALSE(fifolock__waiter_is_queued(&w));
    busy_finish(&b);

    /* on an idle lock too (the "grant at once" path) */
    fifolock_init(&lock);
    CHECK_EQ(fifolock_acquire(&lock, &w, &no_predicate, on_grant, NULL), EINVAL);
    CHECK_EQ(fifolock_try_acquire(&lock, &no_predicate), EINVAL);
    CHECK_EQ(held_total(&lock), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void releasing_an_unheld_mode_is_eperm_and_changes_nothing(void)
{
    struct busy b;
    struct snapshot s;
    fifolock lock;

    busy_init(&b);
    snap_take(&s, &b.lock);
    CHECK_EQ(fifolock_release(&b.lock, &fifolock_x), EPERM);     /* never seen */
    CHECK_EQ(fifolock_release(&b.lock, &fifolock_write), EPERM); /* only queued */
    CHECK_EQ(fifolock_release(&b.lock, &never_mode), EPERM);
    CHECK_UNCHANGED(&s, &b.lock);
    CHECK_LOG_EMPTY();
    busy_finish(&b);

    /* releasing more often than acquired */
    fifolock_init(&lock);
    CHECK_EQ(fifolock_release(&lock, &fifolock_mutex), EPERM);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    snap_take(&s, &lock);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), EPERM);
    CHECK_UNCHANGED(&s, &lock);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void cancelling_a_waiter_of_another_lock_is_einval(void)
{
    struct busy b;
    struct snapshot s, s_other;
    fifolock other;
    fifolock_waiter w = FIFOLOCK_WAITER_INIT, copy;

    busy_init(&b);
    fifolock_init(&other);
    CHECK_EQ(fifolock_try_acquire(&other, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_acquire(&other, &w, &fifolock_mutex, on_grant, NULL), FIFOLOCK_WAITING);
    snap_take(&s, &b.lock);
    snap_take(&s_other, &other);
    copy = w;
    CHECK_EQ(fifolock_cancel(&b.lock, &w), EINVAL);
    CHECK_EQ(fifolock_cancel(&other, &b.w[1]), EINVAL);
    CHECK_UNCHANGED(&s, &b.lock);
    CHECK_UNCHANGED(&s_other, &other);
    CHECK_EQ(memcmp(&w, &copy, sizeof w), 0);
    CHECK_LOG_EMPTY();
    busy_finish(&b);
    CHECK_EQ(fifolock_cancel(&other, &w), 0);
    CHECK_EQ(fifolock_release(&other, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_destroy(&other), 0);
}

static void cancelling_an_idle_waiter_is_einval(void)
{
    struct busy b;
    struct snapshot s;
    fifolock_waiter zeroed, init = FIFOLOCK_WAITER_INIT;

    memset(&zeroed, 0, sizeof zeroed);
    busy_init(&b);
    snap_take(&s, &b.lock);
    CHECK_EQ(fifolock_cancel(&b.lock, &zeroed), EINVAL);
    CHECK_EQ(fifolock_cancel(&b.lock, &init), EINVAL);
    CHECK_UNCHANGED(&s, &b.lock);
    busy_finish(&b);
}

static void cancelling_a_waiter_twice_is_einval_the_second_time(void)
{
    struct busy b;
    struct snapshot s;

    busy_init(&b);
    CHECK_EQ(fifolock_cancel(&b.lock, &b.w[2]), 0); /* the tail: grants nothing */
    CHECK_EQ(fifolock_waiting(&b.lock), 2);
    snap_take(&s, &b.lock);
    CHECK_EQ(fifolock_cancel(&b.lock, &b.w[2]), EINVAL);
    CHECK_UNCHANGED(&s, &b.lock);
    /* the cancelled request may be made again, and is served in its new place */
    CHECK_EQ(fifolock_acquire(&b.lock, &b.w[2], &fifolock_mutex, on_grant, &b.job[2]),
             FIFOLOCK_WAITING);
    CHECK_OK(&b.lock);
    busy_finish(&b);
}

static void acquiring_with_a_waiter_still_queued_is_einval(void)
{
    struct busy b;
    struct snapshot s, s_other;
    fifolock other;
    fifolock_waiter copy;

    busy_init(&b);
    fifolock_init(&other);
    snap_take(&s, &b.lock);
    snap_take(&s_other, &other);
    copy = b.w[1];
    /* on the same lock, in another mode, and on another lock */
    CHECK_EQ(fifolock_acquire(&b.lock, &b.w[1], &fifolock_read, on_grant, NULL), EINVAL);
    CHECK_EQ(fifolock_acquire(&b.lock, &b.w[1], &fifolock_x, on_grant, NULL), EINVAL);
    CHECK_EQ(fifolock_acquire(&other, &b.w[1], &fifolock_mutex, on_grant, NULL), EINVAL);
    CHECK_EQ(memcmp(&b.w[1], &copy, sizeof copy), 0);
    CHECK_UNCHANGED(&s, &b.lock);
    CHECK_UNCHANGED(&s_other, &other);
    CHECK_EQ(fifolock_destroy(&other), 0);
    busy_finish(&b);
}

static void waiter_memory_is_reusable_after_grant_and_after_cancel(void)
{
    fifolock lock;
    fifolock_waiter w = FIFOLOCK_WAITER_INIT;
    struct job j1 = { .id = 1 }, j2 = { .id = 2 }, j3 = { .id = 3 };

    log_reset();
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_acquire(&lock, &w, &fifolock_mutex, on_grant, &j1), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_cancel(&lock, &w), 0);
    CHECK_EQ(fifolock_acquire(&lock, &w, &fifolock_mutex, on_grant, &j2), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_release(&lock, &fifolock_mutex), 0);
    CHECK_LOG(2);
    CHECK_EQ(fifolock_acquire(&lock, &w, &fifolock_mutex, on_grant, &j3), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_release(&lock, &fifolock_mutex), 0);
    CHECK_LOG(2, 3);
    CHECK_EQ(fifolock_release(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_acquire(&lock, &w, &fifolock_mutex, on_grant, &j3), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void waiter_data_is_never_touched(void)
{
    fifolock lock;
    fifolock_waiter w = FIFOLOCK_WAITER_INIT;
    int mine;

    w.data = &mine;
    fifolock_init(&lock);
    CHECK_EQ(fifolock_acquire(&lock, &w, &fifolock_mutex, on_grant, NULL), 0);
    CHECK_PTR_EQ(w.data, &mine);
    CHECK_EQ(fifolock_acquire(&lock, &w, &fifolock_mutex, on_grant, NULL), FIFOLOCK_WAITING);
    CHECK_PTR_EQ(w.data, &mine);
    CHECK_EQ(fifolock_cancel(&lock, &w), 0);
    CHECK_PTR_EQ(w.data, &mine);
    CHECK_EQ(fifolock_acquire(&lock, &w, &fifolock_mutex, on_grant, NULL), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_release(&lock, &fifolock_mutex), 0);
    CHECK_PTR_EQ(w.data, &mine);
    CHECK_EQ(fifolock_release(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

/* ---- many modes --------------------------------------------------------------------- */

#define MANY 50

static void fifty_modes_held_at_once_are_counted_and_released_right(void)
{
    fifolock lock;
    fifolock_mode sem[MANY];
    const fifolock_mode *modes[MANY + 1];
    size_t counts[MANY + 1], i, n, total = 0, bad = 0;
    int round;

    for (i = 0; i < MANY; i++)
        sem[i] = (fifolock_mode)FIFOLOCK_SEMAPHORE(i % 4 + 1);
    fifolock_init(&lock);
    for (round = 0; round < 2; round++) { /* twice: the table grows again after shrinking */
        for (i = 0; i < MANY; i++) {
            size_t k;
            for (k = 0; k < sem[i].limit; k++)
                bad += fifolock_try_acquire(&lock, &sem[i]) != 0;
            bad += fifolock_try_acquire(&lock, &sem[i]) != EBUSY;
            total += sem[i].limit;
        }
        CHECK_EQ(bad, 0);
        CHECK_EQ(held_total(&lock), total);
        for (i = 0; i < MANY; i++)
            CHECK_EQ(held(&lock, &sem[i]), sem[i].limit);
        n = fifolock_holds_list(fifolock_holds_of(&lock), modes, counts, MANY + 1);
        CHECK_EQ(n, MANY);
        for (i = 0; i < n && i < MANY; i++) {
            const fifolock_mode *m = modes[i];
            size_t j;
            CHECK_TRUE(m >= &sem[0] && m < &sem[MANY]);
            if (m >= &sem[0] && m < &sem[MANY])
                CHECK_EQ(counts[i], m->limit);
            for (j = 0; j < i; j++)
                CHECK_TRUE(modes[j] != m);
        }
        CHECK_OK(&lock);
        /* release one place of every mode from the middle out, then the rest */
        for (i = 0; i < MANY; i++) {
            size_t k = (i * 7 + 3) % MANY; /* a permutation: 7 and 50 are coprime */
            bad += fifolock_release(&lock, &sem[k]) != 0;
            total--;
            bad += held(&lock, &sem[k]) != sem[k].limit - 1;
        }
        CHECK_EQ(bad, 0);
        CHECK_EQ(held_total(&lock), total);
        CHECK_OK(&lock);
        for (i = MANY; i-- > 0;) {
            while (held(&lock, &sem[i]) > 0) {
                bad += fifolock_release(&lock, &sem[i]) != 0;
                total--;
            }
            bad += fifolock_release(&lock, &sem[i]) != EPERM;
        }
        CHECK_EQ(bad, 0);
        CHECK_EQ(total, 0);
        CHECK_EQ(held_total(&lock), 0);
        CHECK_EQ(fifolock_holds_list(fifolock_holds_of(&lock), NULL, NULL, 0), 0);
        CHECK_OK(&lock);
    }
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void fifty_modes_queued_at_once_are_granted_right(void)
{
    fifolock lock;
    fifolock_mode sem[MANY];
    fifolock_waiter w[MANY], blocker = FIFOLOCK_WAITER_INIT;
    struct job job[MANY];
    size_t i, bad = 0;

    memset(w, 0, sizeof w);
    log_reset();
    fifolock_init(&lock);
    /* a request that can't be granted yet keeps the semaphores behind it */
    CHECK_EQ(fifolock_try_acquire(&lock, &alone_mode), 0);
    CHECK_EQ(fifolock_acquire(&lock, &blocker, &alone_mode, on_grant, NULL), FIFOLOCK_WAITING);
    for (i = 0; i < MANY; i++) {
        sem[i] = (fifolock_mode)FIFOLOCK_SEMAPHORE(1);
        job[i] = (struct job){ .id = (int)i };
        bad += fifolock_acquire(&lock, &w[i], &sem[i], on_grant, &job[i]) != FIFOLOCK_WAITING;
    }
    CHECK_EQ(bad, 0);
    CHECK_EQ(fifolock_waiting(&lock), MANY + 1);
    CHECK_EQ(held_total(&lock), 1);
    CHECK_OK(&lock);
    /* cancel every third one, then the blocker: the rest get in */
    for (i = 0; i < MANY; i += 3)
        bad += fifolock_cancel(&lock, &w[i]) != 0;
    CHECK_EQ(bad, 0);
    CHECK_EQ(glog.n, 0);
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_cancel(&lock, &blocker), 0);
    CHECK_EQ(fifolock_waiting(&lock), 0);
    CHECK_EQ(glog.n, MANY - (MANY + 2) / 3);
    for (i = 0; i < glog.n && i < MAX_LOG; i++)
        bad += glog.id[i] != (int)(i / 2 * 3 + 1 + i % 2);
    CHECK_EQ(bad, 0);
    for (i = 0; i < MANY; i++) {
        bad += held(&lock, &sem[i]) != (i % 3 != 0);
        if (i % 3 != 0)
            bad += fifolock_release(&lock, &sem[i]) != 0;
    }
    CHECK_EQ(bad, 0);
    CHECK_EQ(fifolock_release(&lock, &alone_mode), 0);
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

/*
 * The library's allocations, through its one seam (fifolock__alloc): fail
 * on demand, as a real out-of-memory realloc() does (errno = ENOMEM).
 */
static int realloc_fails;

static void *test_alloc(void *p, size_t n)
{
    if (n == 0) {
        free(p);
        return NULL;
    }
    if (realloc_fails) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(p, n);
}


static void errno_is_kept_when_the_hold_table_cannot_grow(void)
{
    fifolock lock;
    fifolock_mode sem[4];
    fifolock_waiter w = FIFOLOCK_WAITER_INIT;
    int i;

    fifolock__alloc = test_alloc;
    for (i = 0; i < 4; i++)
        sem[i] = (fifolock_mode)FIFOLOCK_SEMAPHORE(1);
    fifolock_init(&lock);
    for (i = 0; i < FIFOLOCK_INLINE_MODES; i++)
        CHECK_EQ(fifolock_try_acquire(&lock, &sem[i]), 0);
    realloc_fails = 1;
    errno = 4242;
    CHECK_EQ(fifolock_try_acquire(&lock, &sem[3]), ENOMEM);
    CHECK_EQ(errno, 4242);
    CHECK_EQ(fifolock_acquire(&lock, &w, &sem[3], on_grant, NULL), ENOMEM);
    CHECK_EQ(errno, 4242);
    realloc_fails = 0;
    CHECK_EQ(fifolock_try_acquire(&lock, &sem[3]), 0);
    CHECK_EQ(errno, 4242);
    for (i = 0; i < 4; i++)
        CHECK_EQ(fifolock_release(&lock, &sem[i]), 0);
    CHECK_EQ(errno, 4242);
    CHECK_EQ(fifolock_destroy(&lock), 0);
    fifolock__alloc = NULL;
}

static void out_of_memory_for_the_hold_table_is_enomem_and_changes_nothing(void)
{
    fifolock lock;
    fifolock_mode sem[9];
    fifolock_waiter w = FIFOLOCK_WAITER_INIT, copy;
    struct snapshot s;
    int i;

    fifolock__alloc = test_alloc;
    log_reset();
    for (i = 0; i < 9; i++)
        sem[i] = (fifolock_mode)FIFOLOCK_SEMAPHORE(1);
    fifolock_init(&lock);
    for (i = 0; i < FIFOLOCK_INLINE_MODES; i++)
        CHECK_EQ(fifolock_try_acquire(&lock, &sem[i]), 0);
    /* the inline table is full: the next mode needs memory */
    realloc_fails = 1;
    snap_take(&s, &lock);
    copy = w;
    CHECK_EQ(fifolock_try_acquire(&lock, &sem[3]), ENOMEM);
    CHECK_EQ(fifolock_acquire(&lock, &w, &sem[3], on_grant, NULL), ENOMEM);
    CHECK_UNCHANGED(&s, &lock);
    CHECK_EQ(memcmp(&w, &copy, sizeof w), 0);
    /* modes it counts already need nothing */
    CHECK_EQ(fifolock_try_acquire(&lock, &sem[0]), EBUSY);
    CHECK_EQ(fifolock_acquire(&lock, &w, &sem[0], on_grant, NULL), FIFOLOCK_WAITING);
    /* now the queued path needs memory */
    snap_take(&s, &lock);
    {
        fifolock_waiter w2 = FIFOLOCK_WAITER_INIT;
        CHECK_EQ(fifolock_acquire(&lock, &w2, &sem[4], on_grant, NULL), ENOMEM);
        CHECK_FALSE(fifolock__waiter_is_queued(&w2));
    }
    CHECK_UNCHANGED(&s, &lock);
    realloc_fails = 0;
    CHECK_EQ(fifolock_cancel(&lock, &w), 0);
    for (i = FIFOLOCK_INLINE_MODES; i < 7; i++) /* fills the first block of 4 */
        CHECK_EQ(fifolock_try_acquire(&lock, &sem[i]), 0);
    realloc_fails = 1;
    snap_take(&s, &lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &sem[7]), ENOMEM); /* growing fails */
    CHECK_UNCHANGED(&s, &lock);
    realloc_fails = 0;
    CHECK_EQ(fifolock_try_acquire(&lock, &sem[7]), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &sem[8]), 0);
    for (i = 0; i < 9; i++)
        CHECK_EQ(fifolock_release(&lock, &sem[i]), 0);
    CHECK_LOG_EMPTY();
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_destroy(&lock), 0);
    fifolock__alloc = NULL;
}
#define ENOMEM_TESTS                                                                     \
    TEST(out_of_memory_for_the_hold_table_is_enomem_and_changes_nothing),                \
        TEST(errno_is_kept_when_the_hold_table_cannot_grow),

/*
 * White-box: 2^32 holders can't be made in a test, so the count of one mode
 * is set just below the limit by hand (total kept consistent).
 */
static void a_count_that_would_overflow_is_eagain_and_changes_nothing(void)
{
    fifolock lock;
    fifolock_mode big = FIFOLOCK_SEMAPHORE(SIZE_MAX);
    fifolock_waiter w = FIFOLOCK_WAITER_INIT, blocker = FIFOLOCK_WAITER_INIT, copy;
    struct fifolock_hold *e = &lock.holds.inline_[0];
    struct snapshot s;

    log_reset();
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &big), 0);
    CHECK_PTR_EQ(e->mode, &big);
    CHECK_EQ(e->held, 1);
    e->held = UINT32_MAX - 1;
    lock.holds.total = UINT32_MAX - 1;
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &big), 0);
    CHECK_EQ(held(&lock, &big), UINT32_MAX);
    snap_take(&s, &lock);
    copy = w;
    CHECK_EQ(fifolock_try_acquire(&lock, &big), EAGAIN);
    CHECK_EQ(fifolock_acquire(&lock, &w, &big, on_grant, NULL), EAGAIN);
    CHECK_UNCHANGED(&s, &lock);
    CHECK_EQ(memcmp(&w, &copy, sizeof w), 0);
    /* the queued path counts waiters of the mode too */
    CHECK_EQ(fifolock_acquire(&lock, &blocker, &alone_mode, on_grant, NULL), FIFOLOCK_WAITING);
    snap_take(&s, &lock);
    CHECK_EQ(fifolock_acquire(&lock, &w, &big, on_grant, NULL), EAGAIN);
    CHECK_UNCHANGED(&s, &lock);
    CHECK_FALSE(fifolock__waiter_is_queued(&w));
    CHECK_EQ(fifolock_cancel(&lock, &blocker), 0);
    CHECK_EQ(fifolock_release(&lock, &big), 0);
    CHECK_EQ(held(&lock, &big), UINT32_MAX - 1);
    CHECK_EQ(fifolock_try_acquire(&lock, &big), 0); /* room again */
    e->held = 1;
    lock.holds.total = 1;
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_release(&lock, &big), 0);
    CHECK_LOG_EMPTY();
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

/* ---- introspection ------------------------------------------------------------------- */

static void held_reads_zero_for_null_and_unseen_modes(void)
{
    fifolock lock;

    fifolock_init(&lock);
    CHECK_EQ(fifolock_held(NULL, &fifolock_read), 0);
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), NULL), 0);
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), &fifolock_read), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), &fifolock_read), 2);
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), &fifolock_write), 0);
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), NULL), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), &fifolock_read), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void held_total_counts_every_holder(void)
{
    fifolock lock;
    fifolock_waiter w = FIFOLOCK_WAITER_INIT;

    fifolock_init(&lock);
    CHECK_EQ(fifolock_held_total(NULL), 0);
    CHECK_EQ(held_total(&lock), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_is), 0);
    CHECK_EQ(held_total(&lock), 4);
    CHECK_EQ(fifolock_acquire(&lock, &w, &fifolock_write, on_grant, NULL), FIFOLOCK_WAITING);
    CHECK_EQ(held_total(&lock), 4); /* a waiter is no holder */
    CHECK_EQ(fifolock_cancel(&lock, &w), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_EQ(held_total(&lock), 3);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_is), 0);
    CHECK_EQ(held_total(&lock), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void holds_list_reports_held_modes_only_and_respects_max(void)
{
    fifolock lock;
    fifolock_waiter w = FIFOLOCK_WAITER_INIT;
    const fifolock_mode *modes[6];
    size_t counts[6], i;
    int seen_read = 0, seen_mutex = 0, seen_s = 0, seen_is = 0, unexpected = 0;

    fifolock_init(&lock);
    CHECK_EQ(fifolock_holds_list(NULL, modes, counts, 6), 0);
    CHECK_EQ(fifolock_holds_list(fifolock_holds_of(&lock), modes, counts, 6), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_s), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_is), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_is), 0);
    CHECK_EQ(fifolock_acquire(&lock, &w, &fifolock_write, on_grant, NULL), FIFOLOCK_WAITING);
    for (i = 0; i < 6; i++) {
        modes[i] = &never_mode;
        counts[i] = 12345;
    }
    CHECK_EQ(fifolock_holds_list(fifolock_holds_of(&lock), modes, counts, 6), 4);
    for (i = 0; i < 4; i++) {
        if (modes[i] == &fifolock_read && counts[i] == 3)
            seen_read++;
        else if (modes[i] == &fifolock_mutex && counts[i] == 1)
            seen_mutex++;
        else if (modes[i] == &fifolock_s && counts[i] == 1)
            seen_s++;
        else if (modes[i] == &fifolock_is && counts[i] == 2)
            seen_is++;
        else
            unexpected++;
    }
    CHECK_EQ(unexpected, 0);
    CHECK_EQ(seen_read + seen_mutex + seen_s + seen_is, 4);
    CHECK_EQ(seen_read * seen_mutex * seen_s * seen_is, 1);
    CHECK_PTR_EQ(modes[4], &never_mode); /* untouched beyond the count */
    CHECK_EQ(counts[4], 12345);

    /* a short array: only `max` entries written, the full count returned */
    for (i = 0; i < 6; i++) {
        modes[i] = &never_mode;
        counts[i] = 12345;
    }
    CHECK_EQ(fifolock_holds_list(fifolock_holds_of(&lock), modes, counts, 2), 4);
    CHECK_TRUE(modes[0] != &never_mode && modes[1] != &never_mode);
    CHECK_PTR_EQ(modes[2], &never_mode);
    CHECK_EQ(counts[2], 12345);
    CHECK_EQ(fifolock_holds_list(fifolock_holds_of(&lock), NULL, NULL, 0), 4);
    CHECK_EQ(fifolock_holds_list(fifolock_holds_of(&lock), modes, NULL, 6), 4);
    CHECK_EQ(fifolock_holds_list(fifolock_holds_of(&lock), NULL, counts, 6), 4);

    CHECK_EQ(fifolock_cancel(&lock, &w), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_holds_list(fifolock_holds_of(&lock), modes, counts, 6), 2);
    CHECK_EQ(fifolock_release(&lock, &fifolock_s), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_is), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_is), 0);
    CHECK_EQ(fifolock_holds_list(fifolock_holds_of(&lock), modes, counts, 6), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void holds_of_and_waiting_accept_null(void)
{
    fifolock lock;
    fifolock_waiter w = FIFOLOCK_WAITER_INIT;
    const fifolock_holds *h;

    fifolock_init(&lock);
    CHECK_TRUE(fifolock_holds_of(NULL) == NULL);
    CHECK_EQ(fifolock_waiting(NULL), 0);
    CHECK_EQ(fifolock_waiting(&lock), 0);
    h = fifolock_holds_of(&lock);
    CHECK_TRUE(h != NULL);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_mutex), 0);
    CHECK_PTR_EQ(fifolock_holds_of(&lock), h); /* the same view, live */
    CHECK_EQ(fifolock_held(h, &fifolock_mutex), 1);
    CHECK_EQ(fifolock_acquire(&lock, &w, &fifolock_mutex, on_grant, NULL), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_waiting(&lock), 1);
    CHECK_EQ(fifolock_cancel(&lock, &w), 0);
    CHECK_EQ(fifolock_waiting(&lock), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_held(h, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void strerror_describes_every_code(void)
{
    static const int named[] = { EBUSY, EPERM, EINVAL, EALREADY };
    size_t i, j;
    int e;

    for (e = -5; e < 200; e++) {
        const char *msg = fifolock_strerror(e);
        CHECK_TRUE(msg != NULL && msg[0] != '\0');
    }
    CHECK_TRUE(fifolock_strerror(FIFOLOCK_WAITING) != NULL);
    for (i = 0; i < 4; i++)
        for (j = 0; j < 4; j++)
            if (i != j)
                CHECK_TRUE(strcmp(fifolock_strerror(named[i]), fifolock_strerror(named[j])) != 0);
    for (i = 0; i < 4; i++) {
        CHECK_TRUE(strcmp(fifolock_strerror(named[i]), fifolock_strerror(0)) != 0);
        CHECK_TRUE(strcmp(fifolock_strerror(named[i]), fifolock_strerror(12345)) != 0);
    }
    CHECK_TRUE(strcmp(fifolock_strerror(ENOMEM), fifolock_strerror(EAGAIN)) != 0);
    CHECK_TRUE(strcmp(fifolock_strerror(ENOMEM), fifolock_strerror(12345)) != 0);
    CHECK_TRUE(strcmp(fifolock_strerror(EAGAIN), fifolock_strerror(12345)) != 0);
}

/* The version is written once (fifolock.h); its string must say its numbers. */
/* fifolock_lock is the C++ name of the lock, and a C one beside `fifolock`. */
static void fifolock_lock_is_another_name_of_fifolock(void)
{
    fifolock lock;
    fifolock_lock *alias = &lock; /* a warning, so an error, if the types differed */

    CHECK_TRUE(_Generic(alias, fifolock *: 1, default: 0));
    fifolock_init(alias);
    CHECK_EQ(fifolock_try_acquire(alias, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), &fifolock_mutex), 1);
    CHECK_EQ(fifolock_release(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_destroy(alias), 0);
}

static void version_string_matches_its_numbers(void)
{
    char expected[64];

    snprintf(expected, sizeof expected, "%d.%d.%d", FIFOLOCK_VERSION_MAJOR,
             FIFOLOCK_VERSION_MINOR, FIFOLOCK_VERSION_PATCH);
    CHECK_EQ(strcmp(FIFOLOCK_VERSION_STRING, expected), 0);
}

RUN_TESTS(TEST(version_string_matches_its_numbers), TEST(fifolock_lock_is_another_name_of_fifolock), TEST(mutex_blocks_mutex), TEST(two_locks_are_independent),
          TEST(acquire_on_a_free_lock_returns_0_without_calling_back),
          TEST(acquire_on_a_held_lock_queues_and_returns_waiting),
          TEST(granted_runs_once_inside_the_release_that_made_room),
          TEST(granted_callback_sees_its_own_hold_and_has_left_the_queue),
          TEST(cancel_before_the_grant_withdraws_the_request),
          TEST(cancel_after_the_grant_is_ealready_and_the_hold_remains),
          TEST(cancel_of_a_request_granted_at_once_is_ealready),
          TEST(cancelled_head_unblocks_readers_behind_it),
          TEST(cancelling_a_non_head_waiter_grants_nothing),
          TEST(reads_released_out_of_order_still_block_a_waiting_write),
          TEST(a_write_is_not_preferred_over_an_earlier_read),
          TEST(a_compatible_newcomer_queues_behind_a_waiter),
          TEST(try_acquire_is_ebusy_while_anybody_waits), TEST(reads_share_and_write_excludes),
          TEST(semaphore_of_1_admits_1), TEST(semaphore_of_3_admits_3),
          TEST(semaphore_initializer_fills_the_mode),
          TEST(semaphores_are_distinct_modes_by_address),
          TEST(intention_matrix_holds_for_all_25_pairs),
          TEST(intention_modes_held_together_admit_only_what_all_allow),
          TEST(s_waits_while_is_and_ix_are_held_and_is_granted_after_ix_leaves),
          TEST(intention_waiters_behind_x_are_granted_while_compatible),
          TEST(custom_mode_sees_every_holder),
          TEST(callback_that_acquires_is_granted_at_once_when_the_queue_is_empty),
          TEST(callback_that_acquires_queues_behind_other_waiters),
          TEST(callback_that_releases_lets_the_next_waiter_in_without_nesting),
          TEST(callback_that_cancels_a_later_waiter_keeps_it_from_being_granted),
          TEST(callback_that_cancels_the_new_head_lets_the_outer_call_grant_past_it),
          TEST(callback_that_cancels_its_own_request_is_ealready),
          TEST(callback_that_tries_sees_the_queue),
          TEST(callback_may_release_another_lock_whose_waiters_run_inside_it),
          TEST(long_chain_of_releasing_callbacks_is_granted_in_order_on_a_flat_stack),
          TEST(destroy_of_an_idle_lock_returns_0),
          TEST(destroy_of_a_held_lock_is_ebusy_and_changes_nothing),
          TEST(destroy_of_a_waited_on_lock_is_ebusy_and_changes_nothing),
          TEST(destroy_inside_a_grant_callback_is_ebusy),
          TEST(null_arguments_are_einval_and_change_nothing),
          TEST(mode_without_predicate_is_einval_and_changes_nothing),
          TEST(releasing_an_unheld_mode_is_eperm_and_changes_nothing),
          TEST(cancelling_a_waiter_of_another_lock_is_einval),
          TEST(cancelling_an_idle_waiter_is_einval),
          TEST(cancelling_a_waiter_twice_is_einval_the_second_time),
          TEST(acquiring_with_a_waiter_still_queued_is_einval),
          TEST(waiter_memory_is_reusable_after_grant_and_after_cancel),
          TEST(waiter_data_is_never_touched),
          TEST(fifty_modes_held_at_once_are_counted_and_released_right),
          TEST(fifty_modes_queued_at_once_are_granted_right),
          ENOMEM_TESTS TEST(a_count_that_would_overflow_is_eagain_and_changes_nothing),
          TEST(held_reads_zero_for_null_and_unseen_modes), TEST(held_total_counts_every_holder),
          TEST(holds_list_reports_held_modes_only_and_respects_max),
          TEST(holds_of_and_waiting_accept_null), TEST(strerror_describes_every_code))
