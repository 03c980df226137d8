/*
 * The thread lock, deterministically: every error code, state after each
 * call (fifolock_mt_held / fifolock_mt_waiting), FIFO order across threads
 * queued one at a time, and timeouts that leave no trace. Threads never call
 * CHECK (the harness is single-threaded): they report, main checks.
 */
#define _GNU_SOURCE
#include "check.h"
#include "deadline.h"
#include "mt_internal.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifndef _WIN32
#include <sys/wait.h>
#endif

/* ---- helpers ------------------------------------------------------------- */

/* One step of a wait for another thread: quick at first, then gentle. */
static void pause_a_little(unsigned *i)
{
    if ((*i)++ < 100)
        sched_yield();
    else
        usleep(100);
}

static void wait_queued(fifolock_mt *lock, size_t n)
{
    unsigned i = 0;

    while (fifolock_mt_waiting(lock) < n)
        pause_a_little(&i);
}


static void wait_sleeping(fifolock_mt *lock, size_t n)
{
    while (fifolock_mt__sleeping(lock) < n)
        usleep(200);
}

/* Only while no thread waits: a wait reads these when it begins. */
static void set_tuning(unsigned spin, unsigned yield)
{
    __atomic_store_n(&fifolock_mt__tuning.spin, spin, __ATOMIC_SEQ_CST);
    __atomic_store_n(&fifolock_mt__tuning.yield, yield, __ATOMIC_SEQ_CST);
}

static void default_tuning(void)
{
    set_tuning(FIFOLOCK_MT__SPIN, FIFOLOCK_MT__YIELD);
    __atomic_store_n(&fifolock_mt__on_timeout, NULL, __ATOMIC_SEQ_CST);
}

/* A thread that acquires (or timed-acquires) one mode, records, releases. */
struct req {
    pthread_t tid;
    fifolock_mt *lock;
    const fifolock_mode *mode;
    int id;
    int timed;              /* use timed_acquire with `deadline` */
    struct timespec deadline;
    int hold_until_told;    /* keep the hold until `let_go` is set */
    int acquire_rc, release_rc;
    int *order, *pos;       /* where to record the grant order */
    int granted;            /* set once acquire returned 0 */
    int let_go;
    int done;               /* set once acquire returned, whatever it returned */
};

static void *req_main(void *arg)
{
    struct req *r = arg;
    int rc;

    rc = r->timed ? fifolock_mt_timed_acquire(r->lock, r->mode, &r->deadline)
                  : fifolock_mt_acquire(r->lock, r->mode);
    r->acquire_rc = rc;
    __atomic_store_n(&r->done, 1, __ATOMIC_SEQ_CST);
    if (rc != 0)
        return NULL;
    if (r->order)
        r->order[__atomic_fetch_add(r->pos, 1, __ATOMIC_SEQ_CST)] = r->id;
    __atomic_store_n(&r->granted, 1, __ATOMIC_SEQ_CST);
    while (r->hold_until_told && !__atomic_load_n(&r->let_go, __ATOMIC_SEQ_CST))
        usleep(100);
    r->release_rc = fifolock_mt_release(r->lock, r->mode);
    return NULL;
}

static void req_start(struct req *r, fifolock_mt *lock, const fifolock_mode *mode, int id)
{
    memset(r, 0, sizeof *r);
    r->lock = lock;
    r->mode = mode;
    r->id = id;
    r->acquire_rc = -1;
    r->release_rc = -1;
}

static void req_go(struct req *r)
{
    pthread_create(&r->tid, NULL, req_main, r);
}

static int req_granted(struct req *r)
{
    return __atomic_load_n(&r->granted, __ATOMIC_SEQ_CST);
}

static void wait_granted(struct req *r)
{
    unsigned i = 0;

    while (!req_granted(r))
        pause_a_little(&i);
}

/* ---- errors -------------------------------------------------------------- */

static void null_and_bad_arguments_are_einval(void)
{
    fifolock_mt lock;
    fifolock_mode no_pred = { NULL, "none", 0 };
    struct timespec t = in_ms(1000);
    struct timespec bad_hi = t, bad_lo = t;

    bad_hi.tv_nsec = 1000000000L;
    bad_lo.tv_nsec = -1;
    CHECK_EQ(fifolock_mt_init(NULL), EINVAL);
    CHECK_EQ(fifolock_mt_init(&lock), 0);
    CHECK_EQ(fifolock_mt_destroy(NULL), EINVAL);
    CHECK_EQ(fifolock_mt_acquire(NULL, &fifolock_mutex), EINVAL);
    CHECK_EQ(fifolock_mt_acquire(&lock, NULL), EINVAL);
    CHECK_EQ(fifolock_mt_acquire(&lock, &no_pred), EINVAL);
    CHECK_EQ(fifolock_mt_try_acquire(NULL, &fifolock_mutex), EINVAL);
    CHECK_EQ(fifolock_mt_try_acquire(&lock, NULL), EINVAL);
    CHECK_EQ(fifolock_mt_try_acquire(&lock, &no_pred), EINVAL);
    CHECK_EQ(fifolock_mt_timed_acquire(NULL, &fifolock_mutex, &t), EINVAL);
    CHECK_EQ(fifolock_mt_timed_acquire(&lock, NULL, &t), EINVAL);
    CHECK_EQ(fifolock_mt_timed_acquire(&lock, &no_pred, &t), EINVAL);
    CHECK_EQ(fifolock_mt_timed_acquire(&lock, &fifolock_mutex, NULL), EINVAL);
    CHECK_EQ(fifolock_mt_timed_acquire(&lock, &fifolock_mutex, &bad_hi), EINVAL);
    CHECK_EQ(fifolock_mt_timed_acquire(&lock, &fifolock_mutex, &bad_lo), EINVAL);
    CHECK_EQ(fifolock_mt_release(NULL, &fifolock_mutex), EINVAL);
    CHECK_EQ(fifolock_mt_release(&lock, NULL), EINVAL);
    CHECK_EQ(fifolock_mt_waiting(NULL), 0);
    CHECK_EQ(fifolock_mt_held(NULL, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_mt_held(&lock, NULL), 0);
    /* nothing was taken by any of those */
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_mt_held(&lock, &no_pred), 0);
    CHECK_EQ(fifolock_mt_waiting(&lock), 0);
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
}

static void releasing_an_unheld_mode_is_eperm_and_changes_nothing(void)
{
    fifolock_mt lock;

    fifolock_mt_init(&lock);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_mutex), EPERM);
    CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_write), EPERM);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_mutex), EPERM);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_read), 1);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_read), EPERM);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
}

static void destroying_a_held_lock_is_ebusy_and_leaves_it_usable(void)
{
    fifolock_mt lock;

    fifolock_mt_init(&lock);
    /* the first hold of an idle lock may be one the engine does not count yet */
    CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_mt_destroy(&lock), EBUSY);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_mutex), 1);
    CHECK_EQ(fifolock_mt_try_acquire(&lock, &fifolock_mutex), EBUSY);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_mutex), 0);
    /* the same with a warm idle cache (acquire goes the fast way) */
    CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_mt_destroy(&lock), EBUSY);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
}

static void destroying_a_waited_lock_is_ebusy(void)
{
    fifolock_mt lock;
    struct req r;

    fifolock_mt_init(&lock);
    CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_read), 0);
    req_start(&r, &lock, &fifolock_write, 1);
    req_go(&r);
    wait_queued(&lock, 1);
    CHECK_EQ(fifolock_mt_destroy(&lock), EBUSY);
    CHECK_EQ(fifolock_mt_waiting(&lock), 1);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_read), 1);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_read), 0);
    pthread_join(r.tid, NULL);
    CHECK_EQ(r.acquire_rc, 0);
    CHECK_EQ(r.release_rc, 0);
    CHECK_EQ(fifolock_mt_waiting(&lock), 0);
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
}

static void try_is_ebusy_when_incompatible_or_anybody_waits(void)
{
    fifolock_mt lock;
    struct req w;

    fifolock_mt_init(&lock);
    CHECK_EQ(fifolock_mt_try_acquire(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_mt_try_acquire(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_mt_try_acquire(&lock, &fifolock_write), EBUSY);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_read), 2);
    req_start(&w, &lock, &fifolock_write, 1);
    req_go(&w);
    wait_queued(&lock, 1);
    /* read is compatible with the holders, but a writer waits: fairness */
    CHECK_EQ(fifolock_mt_try_acquire(&lock, &fifolock_read), EBUSY);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_read), 2);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_read), 0);
    pthread_join(w.tid, NULL);
    CHECK_EQ(w.acquire_rc, 0);
    CHECK_EQ(w.release_rc, 0);
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
}

static void past_deadline_is_try_then_etimedout(void)
{
    fifolock_mt lock;
    struct timespec past = in_ms(0);

    past.tv_sec -= 1;
    fifolock_mt_init(&lock);
    CHECK_EQ(fifolock_mt_timed_acquire(&lock, &fifolock_mutex, &past), 0);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_mutex), 1);
    CHECK_EQ(fifolock_mt_timed_acquire(&lock, &fifolock_mutex, &past), ETIMEDOUT);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_mutex), 1);
    CHECK_EQ(fifolock_mt_waiting(&lock), 0);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
}

static void errno_is_never_touched(void)
{
    fifolock_mt lock;
    struct timespec soon;

    fifolock_mt_init(&lock);
    set_tuning(0, 0); /* sleep on the futex at once */
    errno = 4242;
    CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_mutex), 0);
    soon = in_ms(20);
    CHECK_EQ(fifolock_mt_timed_acquire(&lock, &fifolock_mutex, &soon), ETIMEDOUT);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_mutex), EPERM);
    CHECK_EQ(errno, 4242);
    default_tuning();
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
}

/* ---- counts -------------------------------------------------------------- */

static void held_counts_every_mode_and_semaphore_stops_at_its_size(void)
{
    fifolock_mt lock;
    fifolock_mode sem = FIFOLOCK_SEMAPHORE(3);

    fifolock_mt_init(&lock);
    CHECK_EQ(fifolock_mt_acquire(&lock, &sem), 0);
    CHECK_EQ(fifolock_mt_acquire(&lock, &sem), 0);
    CHECK_EQ(fifolock_mt_try_acquire(&lock, &sem), 0);
    CHECK_EQ(fifolock_mt_try_acquire(&lock, &sem), EBUSY);
    CHECK_EQ(fifolock_mt_held(&lock, &sem), 3);
    CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_read), 0); /* unrelated mode */
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_read), 1);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_mt_release(&lock, &sem), 0);
    CHECK_EQ(fifolock_mt_held(&lock, &sem), 2);
    CHECK_EQ(fifolock_mt_try_acquire(&lock, &sem), 0);
    CHECK_EQ(fifolock_mt_release(&lock, &sem), 0);
    CHECK_EQ(fifolock_mt_release(&lock, &sem), 0);
    CHECK_EQ(fifolock_mt_release(&lock, &sem), 0);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_mt_held(&lock, &sem), 0);
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
}

static void fast_hold_is_seen_by_every_other_call(void)
{
    fifolock_mt lock;

    fifolock_mt_init(&lock);
    /* warm the idle cache, then hold the fast way */
    CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_mt_try_acquire(&lock, &fifolock_read), EBUSY);
    CHECK_EQ(fifolock_mt_try_acquire(&lock, &fifolock_write), EBUSY);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_read), EPERM);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_write), 1);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_write), EPERM);
    /* a cached read lets a second reader in beside the fast one */
    CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_mt_try_acquire(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_read), 2);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
}

/* Ready before main, with no call: as PTHREAD_MUTEX_INITIALIZER. */
static fifolock_mt static_lock = FIFOLOCK_MT_INITIALIZER;

static void a_lock_set_by_the_static_initializer_is_one_made_by_init(void)
{
    fifolock_mt made;
    struct req r;

    CHECK_EQ(fifolock_mt_init(&made), 0);
    CHECK_EQ(memcmp(&made, &static_lock, sizeof made), 0);
    /* the fast path, then a waiter that sleeps and is handed the lock */
    CHECK_EQ(fifolock_mt_try_acquire(&static_lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_mt_try_acquire(&static_lock, &fifolock_read), EBUSY);
    req_start(&r, &static_lock, &fifolock_read, 1);
    req_go(&r);
    wait_queued(&static_lock, 1);
    CHECK_EQ(fifolock_mt_release(&static_lock, &fifolock_write), 0);
    pthread_join(r.tid, NULL);
    CHECK_EQ(r.acquire_rc, 0);
    CHECK_EQ(r.release_rc, 0);
    CHECK_EQ(fifolock_mt_held(&static_lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_mt_destroy(&static_lock), 0);
    CHECK_EQ(fifolock_mt_destroy(&made), 0);
    /* a const one too: the initializer is a constant expression */
    {
        static const fifolock_mt constant = FIFOLOCK_MT_INITIALIZER;
        CHECK_EQ(constant.word, FIFOLOCK_MT__IDLE);
    }
}

/* Milliseconds from now until `t` (negative once passed). */
static long ms_left(const struct timespec *t)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long)(t->tv_sec - now.tv_sec) * 1000 + (t->tv_nsec - now.tv_nsec) / 1000000;
}

/*
 * A request that no lock could ever grant (a semaphore of 0, n above a
 * semaphore's size, write with n = 2) is refused at once with EDEADLK by
 * every variant, on an idle lock, a held one and one with a waiter: none
 * blocks, none queues, and a later request goes on as if it never came.
 */
static void a_mode_that_never_fits_is_refused_at_once_by_every_call(void)
{
    fifolock_mt lock;
    fifolock_mode none = FIFOLOCK_SEMAPHORE(0), sem5 = FIFOLOCK_SEMAPHORE(5);
    struct {
        const fifolock_mode *mode;
        size_t n;
    } never[] = { { &none, 1 }, { &sem5, 6 }, { &fifolock_write, 2 } };
    struct timespec soon, past = in_ms(0);
    struct req w;
    size_t i;
    int round;

    past.tv_sec -= 1;
    fifolock_mt_init(&lock);
    for (round = 0; round < 3; round++) {
        /* 0: idle; 1: a reader holds; 2: and a writer waits behind it */
        if (round == 1)
            CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_read), 0);
        if (round == 2) {
            req_start(&w, &lock, &fifolock_write, 1);
            req_go(&w);
            wait_queued(&lock, 1);
        }
        for (i = 0; i < sizeof never / sizeof never[0]; i++) {
            const fifolock_mode *m = never[i].mode;
            size_t n = never[i].n, reads = fifolock_mt_held(&lock, &fifolock_read);
            size_t waiting = fifolock_mt_waiting(&lock);

            soon = in_ms(2000); /* far enough that a wait would be seen */
            CHECK_EQ(fifolock_mt_try_acquire_n(&lock, m, n), EDEADLK);
            CHECK_EQ(fifolock_mt_timed_acquire_n(&lock, m, n, &past), EDEADLK);
            CHECK_EQ(fifolock_mt_timed_acquire_n(&lock, m, n, &soon), EDEADLK);
            CHECK_TRUE(ms_left(&soon) > 1000); /* at once, not at the deadline */
            CHECK_EQ(fifolock_mt_acquire_n(&lock, m, n), EDEADLK); /* never blocks */
            if (n == 1) {
                CHECK_EQ(fifolock_mt_try_acquire(&lock, m), EDEADLK);
                CHECK_EQ(fifolock_mt_timed_acquire(&lock, m, &soon), EDEADLK);
                CHECK_EQ(fifolock_mt_acquire(&lock, m), EDEADLK);
            }
            CHECK_EQ(fifolock_mt_held(&lock, m), 0);
            CHECK_EQ(fifolock_mt_held(&lock, &fifolock_read), reads);
            CHECK_EQ(fifolock_mt_waiting(&lock), waiting);
        }
        if (round >= 1) {
            /* a conversion to it too: the reader keeps its read */
            CHECK_EQ(fifolock_mt_try_convert(&lock, &fifolock_read, &none), EDEADLK);
            CHECK_EQ(fifolock_mt_convert(&lock, &fifolock_read, &none), EDEADLK);
            CHECK_EQ(fifolock_mt_timed_convert(&lock, &fifolock_read, &none, &soon), EDEADLK);
            CHECK_EQ(fifolock_mt_timed_convert(&lock, &fifolock_read, &none, &past), EDEADLK);
            CHECK_EQ(fifolock_mt_held(&lock, &fifolock_read), 1);
        }
        if (round == 0) {
            /* an idle lock is still idle: the fast path takes it */
            CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_mutex), 0);
            CHECK_EQ(fifolock_mt_release(&lock, &fifolock_mutex), 0);
        }
    }
    /* the writer that waited goes on once the reader leaves */
    CHECK_FALSE(__atomic_load_n(&w.done, __ATOMIC_SEQ_CST));
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_read), 0);
    pthread_join(w.tid, NULL);
    CHECK_EQ(w.acquire_rc, 0);
    CHECK_EQ(fifolock_mt_waiting(&lock), 0);
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
}

/* ---- FIFO order ---------------------------------------------------------- */

#define N_FIFO 8

/*
 * Queues N_FIFO threads behind a writer, one at a time, in the pattern
 * W R R W R W W R; releases; checks the grant order: writers exactly in
 * queue order, readers between two writers in any order among themselves.
 */
static void fifo_order(int sleeping)
{
    static const int is_write[N_FIFO] = { 1, 0, 0, 1, 0, 1, 1, 0 };
    fifolock_mt lock;
    struct req r[N_FIFO];
    int order[N_FIFO], pos = 0, i, j;

    if (sleeping)
        set_tuning(0, 0);
    fifolock_mt_init(&lock);
    CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_write), 0);
    for (i = 0; i < N_FIFO; i++) {
        req_start(&r[i], &lock, is_write[i] ? &fifolock_write : &fifolock_read, i);
        r[i].order = order;
        r[i].pos = &pos;
        req_go(&r[i]);
        wait_queued(&lock, (size_t)i + 1);
    }
    if (sleeping)
        wait_sleeping(&lock, N_FIFO);
    for (i = 0; i < N_FIFO; i++)
        CHECK_TRUE(fifolock_mt__queued_mode(&lock, (size_t)i) == r[i].mode);
    CHECK_EQ(fifolock_mt_waiting(&lock), N_FIFO);
    /* the hint a thread reads before it queues (A0) follows the queue */
    CHECK_EQ(__atomic_load_n(&lock.queued, __ATOMIC_RELAXED), N_FIFO);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_write), 1);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_write), 0);
    for (i = 0; i < N_FIFO; i++) {
        pthread_join(r[i].tid, NULL);
        CHECK_EQ(r[i].acquire_rc, 0);
        CHECK_EQ(r[i].release_rc, 0);
    }
    CHECK_EQ(pos, N_FIFO);
    /* compare group by group: a writer alone, or a run of readers */
    for (i = 0; i < N_FIFO;) {
        if (is_write[i]) {
            CHECK_EQ(order[i], i);
            i++;
            continue;
        }
        for (j = i; j < N_FIFO && !is_write[j]; j++) {
            int k, found = 0;
            for (k = i; k < N_FIFO && !is_write[k]; k++)
                found += order[k] == j;
            CHECK_EQ(found, 1);
        }
        i = j;
    }
    CHECK_EQ(fifolock_mt_waiting(&lock), 0);
    CHECK_EQ(__atomic_load_n(&lock.queued, __ATOMIC_RELAXED), 0);
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
    default_tuning();
}

static void threads_are_granted_in_queue_order(void)
{
    fifo_order(0);
}

static void sleeping_threads_are_woken_in_queue_order(void)
{
    fifo_order(1);
}

static void readers_queue_behind_a_waiting_writer(void)
{
    fifolock_mt lock;
    struct req w, rd;

    fifolock_mt_init(&lock);
    CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_read), 0);
    req_start(&w, &lock, &fifolock_write, 1);
    w.hold_until_told = 1;
    req_go(&w);
    wait_queued(&lock, 1);
    req_start(&rd, &lock, &fifolock_read, 2);
    req_go(&rd);
    wait_queued(&lock, 2); /* compatible with the holder, queued all the same */
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_read), 1);
    CHECK_FALSE(req_granted(&rd));
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_read), 0);
    wait_granted(&w);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_write), 1);
    CHECK_EQ(fifolock_mt_waiting(&lock), 1);
    CHECK_FALSE(req_granted(&rd));
    __atomic_store_n(&w.let_go, 1, __ATOMIC_SEQ_CST);
    pthread_join(w.tid, NULL);
    pthread_join(rd.tid, NULL);
    CHECK_EQ(w.release_rc, 0);
    CHECK_EQ(rd.acquire_rc, 0);
    CHECK_EQ(rd.release_rc, 0);
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
}

/* ---- timeouts ------------------------------------------------------------ */

static void timeout_leaves_no_trace(int sleeping)
{
    fifolock_mt lock;
    struct req t, later;

    if (sleeping)
        set_tuning(0, 0);
    fifolock_mt_init(&lock);
    CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_write), 0);
    req_start(&t, &lock, &fifolock_write, 1);
    t.timed = 1;
    t.deadline = in_ms(30);
    req_go(&t);
    pthread_join(t.tid, NULL);
    CHECK_EQ(t.acquire_rc, ETIMEDOUT);
    CHECK_EQ(fifolock_mt_waiting(&lock), 0);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_write), 1);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_read), 0);
    /* a later waiter still gets the lock */
    req_start(&later, &lock, &fifolock_write, 2);
    req_go(&later);
    wait_queued(&lock, 1);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_write), 0);
    pthread_join(later.tid, NULL);
    CHECK_EQ(later.acquire_rc, 0);
    CHECK_EQ(later.release_rc, 0);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
    default_tuning();
}

static void timeout_while_spinning_leaves_no_trace(void)
{
    set_tuning(1u << 30, 0); /* the head spins until the deadline */
    timeout_leaves_no_trace(0);
    default_tuning();
}

static void timeout_while_sleeping_leaves_no_trace(void)
{
    timeout_leaves_no_trace(1);
}

/*
 * Holder: a reader. Queue: a timed writer (head), then two readers that are
 * compatible with the holder but wait behind the writer. When the writer
 * times out, both readers must get in while the first reader still holds.
 */
static void timed_out_head_lets_compatible_waiters_through(void)
{
    fifolock_mt lock;
    struct req w, r1, r2;
    long ms = 100;
    int round, r2_started;
    unsigned i;

    for (round = 0; round < 2; round++) {
        set_tuning(round ? 0 : FIFOLOCK_MT__SPIN, round ? 0 : FIFOLOCK_MT__YIELD);
        fifolock_mt_init(&lock);
        CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_read), 0);
        req_start(&w, &lock, &fifolock_write, 1);
        w.timed = 1;
        w.deadline = in_ms(ms);
        req_go(&w);
        wait_queued(&lock, 1);
        req_start(&r1, &lock, &fifolock_read, 2);
        r1.hold_until_told = 1;
        req_go(&r1);
        req_start(&r2, &lock, &fifolock_read, 3);
        r2.hold_until_told = 1;
        /* a slow machine (valgrind) may pass the deadline first: then again, longer */
        i = 0;
        while (fifolock_mt_waiting(&lock) < 2 && !__atomic_load_n(&w.done, __ATOMIC_SEQ_CST))
            pause_a_little(&i);
        r2_started = fifolock_mt_waiting(&lock) == 2;
        if (r2_started) {
            req_go(&r2);
            while (fifolock_mt_waiting(&lock) < 3 && !__atomic_load_n(&w.done, __ATOMIC_SEQ_CST))
                pause_a_little(&i);
            while (round == 1 && fifolock_mt__sleeping(&lock) < 3 &&
                   !__atomic_load_n(&w.done, __ATOMIC_SEQ_CST))
                usleep(200);
        }
        if (__atomic_load_n(&w.done, __ATOMIC_SEQ_CST)) {
            /* too late: undo and retry this round with more time */
            __atomic_store_n(&r1.let_go, 1, __ATOMIC_SEQ_CST);
            __atomic_store_n(&r2.let_go, 1, __ATOMIC_SEQ_CST);
            pthread_join(w.tid, NULL);
            pthread_join(r1.tid, NULL);
            if (r2_started)
                pthread_join(r2.tid, NULL);
            CHECK_EQ(fifolock_mt_release(&lock, &fifolock_read), 0);
            CHECK_EQ(fifolock_mt_destroy(&lock), 0);
            ms *= 2;
            round--;
            continue;
        }
        pthread_join(w.tid, NULL);
        CHECK_EQ(w.acquire_rc, ETIMEDOUT);
        wait_granted(&r1);
        wait_granted(&r2);
        CHECK_EQ(fifolock_mt_held(&lock, &fifolock_read), 3);
        CHECK_EQ(fifolock_mt_held(&lock, &fifolock_write), 0);
        CHECK_EQ(fifolock_mt_waiting(&lock), 0);
        __atomic_store_n(&r1.let_go, 1, __ATOMIC_SEQ_CST);
        __atomic_store_n(&r2.let_go, 1, __ATOMIC_SEQ_CST);
        pthread_join(r1.tid, NULL);
        pthread_join(r2.tid, NULL);
        CHECK_EQ(r1.release_rc, 0);
        CHECK_EQ(r2.release_rc, 0);
        CHECK_EQ(fifolock_mt_release(&lock, &fifolock_read), 0);
        CHECK_EQ(fifolock_mt_destroy(&lock), 0);
    }
    default_tuning();
}

static void timed_acquire_granted_before_the_deadline_holds(void)
{
    fifolock_mt lock;
    struct req t;

    set_tuning(0, 0);
    fifolock_mt_init(&lock);
    CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_mutex), 0);
    req_start(&t, &lock, &fifolock_mutex, 1);
    t.timed = 1;
    t.deadline = in_ms(60000);
    t.hold_until_told = 1;
    req_go(&t);
    wait_sleeping(&lock, 1);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_mutex), 0);
    wait_granted(&t);
    CHECK_EQ(t.acquire_rc, 0);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_mutex), 1);
    __atomic_store_n(&t.let_go, 1, __ATOMIC_SEQ_CST);
    pthread_join(t.tid, NULL);
    CHECK_EQ(t.release_rc, 0);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
    default_tuning();
}

/*
 * The deadline passes, and the lock is released (granting the request)
 * after the waiter decided to give up but before it withdrew: the grant
 * wins, the caller holds the lock, and it is counted once.
 */
static int hook_entered, hook_go;

static void pause_at_timeout(fifolock_mt *lock)
{
    (void)lock;
    __atomic_store_n(&hook_entered, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&hook_go, __ATOMIC_SEQ_CST))
        usleep(100);
}

static void grant_between_deadline_and_withdrawal_wins(void)
{
    fifolock_mt lock;
    struct req t;
    int round;

    for (round = 0; round < 2; round++) {
        set_tuning(round ? 0 : FIFOLOCK_MT__SPIN, round ? 0 : FIFOLOCK_MT__YIELD);
        hook_entered = hook_go = 0;
        __atomic_store_n(&fifolock_mt__on_timeout, pause_at_timeout, __ATOMIC_SEQ_CST);
        fifolock_mt_init(&lock);
        CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_mutex), 0);
        req_start(&t, &lock, &fifolock_mutex, 1);
        t.timed = 1;
        t.deadline = in_ms(20);
        t.hold_until_told = 1;
        req_go(&t);
        while (!__atomic_load_n(&hook_entered, __ATOMIC_SEQ_CST))
            usleep(100);
        CHECK_EQ(fifolock_mt_waiting(&lock), 1); /* still queued after its deadline */
        CHECK_EQ(fifolock_mt_release(&lock, &fifolock_mutex), 0);
        CHECK_EQ(fifolock_mt_held(&lock, &fifolock_mutex), 1); /* granted to it */
        CHECK_EQ(fifolock_mt_waiting(&lock), 0);
        __atomic_store_n(&hook_go, 1, __ATOMIC_SEQ_CST);
        while (!__atomic_load_n(&t.done, __ATOMIC_SEQ_CST))
            usleep(100);
        CHECK_EQ(t.acquire_rc, 0);
        CHECK_EQ(fifolock_mt_held(&lock, &fifolock_mutex), 1);
        __atomic_store_n(&t.let_go, 1, __ATOMIC_SEQ_CST);
        pthread_join(t.tid, NULL);
        CHECK_EQ(t.release_rc, 0);
        CHECK_EQ(fifolock_mt_held(&lock, &fifolock_mutex), 0);
        CHECK_EQ(fifolock_mt_destroy(&lock), 0);
        default_tuning();
    }
}

/*
 * Threads that find the internal lock taken sleep on its futex (with no
 * spinning, at once); dropping it must wake them, one after the other.
 */
struct counter {
    pthread_t tid;
    fifolock_mt *lock;
    size_t seen;
};

static void *count_waiting(void *arg)
{
    struct counter *c = arg;
    c->seen = fifolock_mt_waiting(c->lock); /* takes the internal lock */
    return NULL;
}

static void sleepers_on_the_internal_lock_are_woken(void)
{
    fifolock_mt lock;
    struct counter c[3];
    int i;
    unsigned n = 0;

    __atomic_store_n(&fifolock_mt__tuning.lock_spin, 0, __ATOMIC_SEQ_CST);
    fifolock_mt_init(&lock);
    fifolock_mt__lock_internal(&lock);
    for (i = 0; i < 3; i++) {
        c[i].lock = &lock;
        c[i].seen = 99;
        pthread_create(&c[i].tid, NULL, count_waiting, &c[i]);
    }
    while (!fifolock_mt__internal_has_sleepers(&lock))
        pause_a_little(&n);
    usleep(20000); /* let the others fall asleep too (not needed to pass) */
    fifolock_mt__unlock_internal(&lock);
    for (i = 0; i < 3; i++) {
        pthread_join(c[i].tid, NULL);
        CHECK_EQ(c[i].seen, 0);
    }
    CHECK_FALSE(fifolock_mt__internal_has_sleepers(&lock));
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
    __atomic_store_n(&fifolock_mt__tuning.lock_spin, FIFOLOCK_MT__LOCK_SPIN, __ATOMIC_SEQ_CST);
}

/*
 * A lock may be destroyed and freed as soon as it is idle, even while the
 * thread that released it last is still inside fifolock_mt_release(). Here
 * the releaser hands the lock to a sleeping thread on the same CPU and steps
 * aside (G5); that thread runs, releases, destroys and frees the lock before
 * the releaser returns. A release that touched the lock after its last wake
 * would use freed memory (ASan and valgrind see it).
 */
struct freer {
    pthread_t tid;
    fifolock_mt *lock;
    int acquire_rc, release_rc, destroy_rc;
};

#if defined(__linux__)
static int pin_to_one_cpu(void)
{
    static int cpu = -1;
    cpu_set_t set;
    int i;

    if (cpu < 0) {
        if (sched_getaffinity(0, sizeof set, &set) != 0)
            return -1;
        for (i = 0; i < CPU_SETSIZE && cpu < 0; i++)
            if (CPU_ISSET(i, &set))
                cpu = i;
    }
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

typedef cpu_set_t cpu_mask;

static int get_cpus(cpu_mask *all)
{
    return sched_getaffinity(0, sizeof *all, all);
}

static int set_cpus(const cpu_mask *all)
{
    return pthread_setaffinity_np(pthread_self(), sizeof *all, all);
}
#else
/* Where threads can't be pinned here (Windows under wine), the test runs unpinned. */
typedef int cpu_mask;

static int pin_to_one_cpu(void)
{
    return 0;
}

static int get_cpus(cpu_mask *all)
{
    *all = 0;
    return 0;
}

static int set_cpus(const cpu_mask *all)
{
    (void)all;
    return 0;
}
#endif

static void *take_release_destroy_free(void *arg)
{
    struct freer *f = arg;

    pin_to_one_cpu();
    f->acquire_rc = fifolock_mt_acquire(f->lock, &fifolock_mutex);
    f->release_rc = fifolock_mt_release(f->lock, &fifolock_mutex);
    f->destroy_rc = fifolock_mt_destroy(f->lock);
    if (f->destroy_rc == 0)
        free(f->lock);
    return NULL;
}

static void a_lock_freed_during_the_last_release_is_not_touched(void)
{
    cpu_mask all;
    struct freer f;
    int round;

    CHECK_EQ(get_cpus(&all), 0);
    for (round = 0; round < 20; round++) {
        memset(&f, 0, sizeof f);
        f.lock = malloc(sizeof *f.lock);
        CHECK_TRUE(f.lock != NULL);
        CHECK_EQ(pin_to_one_cpu(), 0);
        set_tuning(0, 0); /* the waiter sleeps at once */
        CHECK_EQ(fifolock_mt_init(f.lock), 0);
        CHECK_EQ(fifolock_mt_acquire(f.lock, &fifolock_mutex), 0);
        pthread_create(&f.tid, NULL, take_release_destroy_free, &f);
        wait_sleeping(f.lock, 1);
        CHECK_EQ(fifolock_mt_release(f.lock, &fifolock_mutex), 0); /* may be freed within */
        pthread_join(f.tid, NULL);
        CHECK_EQ(f.acquire_rc, 0);
        CHECK_EQ(f.release_rc, 0);
        CHECK_EQ(f.destroy_rc, 0);
        default_tuning();
        CHECK_EQ(set_cpus(&all), 0);
    }
}

/*
 * A timed acquire that finds others waiting yields once before it queues
 * (A0). Deadlines that pass before, during or after that yield all end in
 * ETIMEDOUT, leave nothing queued, and keep the order of those who wait.
 */
static void deadline_while_deferring_leaves_no_trace(void)
{
    fifolock_mt lock;
    struct req w;
    long us;

    fifolock_mt_init(&lock);
    CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_write), 0);
    req_start(&w, &lock, &fifolock_write, 0);
    req_go(&w);
    wait_queued(&lock, 1);
    CHECK_EQ(__atomic_load_n(&lock.queued, __ATOMIC_RELAXED), 1); /* so A0 yields */
    for (us = 0; us < 200; us++) {
        struct timespec d = in_ns(us * 1000);

        CHECK_EQ(fifolock_mt_timed_acquire(&lock, &fifolock_read, &d), ETIMEDOUT);
        CHECK_EQ(fifolock_mt_waiting(&lock), 1);
        CHECK_TRUE(fifolock_mt__queued_mode(&lock, 0) == &fifolock_write);
    }
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_write), 0);
    pthread_join(w.tid, NULL);
    CHECK_EQ(w.acquire_rc, 0);
    CHECK_EQ(w.release_rc, 0);
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
}

/* ---- promises to hostile callers ----------------------------------------- */

/* An impure predicate: it reads a flag that the test flips while the hold lasts. */
static int flag_open = 1;

static bool flag_is_compatible(const fifolock_mode *self, const fifolock_holds *holds)
{
    return __atomic_load_n(&flag_open, __ATOMIC_SEQ_CST) && fifolock_held(holds, self) == 0;
}

static void a_granted_hold_is_never_taken_back(void)
{
    fifolock_mt lock;
    fifolock_mode flag = { flag_is_compatible, "flag", 0 };
    int round;

    fifolock_mt_init(&lock);
    for (round = 0; round < 3; round++) {
        __atomic_store_n(&flag_open, 1, __ATOMIC_SEQ_CST);
        if (round == 0)
            CHECK_EQ(fifolock_mt_acquire(&lock, &flag), 0);
        else if (round == 1)
            CHECK_EQ(fifolock_mt_try_acquire(&lock, &flag), 0);
        else {
            struct timespec d = in_ms(1000);
            CHECK_EQ(fifolock_mt_timed_acquire(&lock, &flag, &d), 0);
        }
        __atomic_store_n(&flag_open, 0, __ATOMIC_SEQ_CST); /* now nobody would be let in */
        CHECK_EQ(fifolock_mt_held(&lock, &flag), 1);
        CHECK_EQ(fifolock_mt_waiting(&lock), 0);
        CHECK_EQ(fifolock_mt_try_acquire(&lock, &fifolock_mutex), 0);
        CHECK_EQ(fifolock_mt_release(&lock, &fifolock_mutex), 0);
        CHECK_EQ(fifolock_mt_held(&lock, &flag), 1);
        CHECK_EQ(fifolock_mt_destroy(&lock), EBUSY);
        CHECK_EQ(fifolock_mt_release(&lock, &flag), 0);
        CHECK_EQ(fifolock_mt_held(&lock, &flag), 0);
    }
    __atomic_store_n(&flag_open, 1, __ATOMIC_SEQ_CST);
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
}

/* A predicate that finds its lock from `holds`, as fifolock.h allows. */
static fifolock_mt *asked_lock;
static int asked_elsewhere;

static bool own_lock_is_compatible(const fifolock_mode *self, const fifolock_holds *holds)
{
    fifolock_mt *lock = (fifolock_mt *)(void *)((char *)holds - offsetof(fifolock_mt, engine) -
                                                offsetof(fifolock, holds));
    fifolock_mt *asked = __atomic_load_n(&asked_lock, __ATOMIC_SEQ_CST);

    if (lock != asked || holds != fifolock_holds_of(fifolock_mt_engine(asked)))
        __atomic_fetch_add(&asked_elsewhere, 1, __ATOMIC_SEQ_CST);
    return fifolock_held(holds, self) == 0;
}

static void a_predicate_is_asked_with_its_own_locks_holds(void)
{
    fifolock_mt lock;
    fifolock_mode own = { own_lock_is_compatible, "own", 0 };
    struct timespec d = in_ms(1000);
    struct req r;
    int i;

    fifolock_mt_init(&lock);
    __atomic_store_n(&asked_lock, &lock, __ATOMIC_SEQ_CST);
    __atomic_store_n(&asked_elsewhere, 0, __ATOMIC_SEQ_CST);
    for (i = 0; i < 3; i++) { /* idle lock, every way in */
        CHECK_EQ(fifolock_mt_acquire(&lock, &own), 0);
        CHECK_EQ(fifolock_mt_release(&lock, &own), 0);
        CHECK_EQ(fifolock_mt_try_acquire(&lock, &own), 0);
        CHECK_EQ(fifolock_mt_release(&lock, &own), 0);
        CHECK_EQ(fifolock_mt_timed_acquire(&lock, &own, &d), 0);
        CHECK_EQ(fifolock_mt_release(&lock, &own), 0);
    }
    CHECK_EQ(fifolock_mt_acquire(&lock, &own), 0); /* and granted to a waiter */
    req_start(&r, &lock, &own, 0);
    req_go(&r);
    wait_queued(&lock, 1);
    CHECK_EQ(fifolock_mt_release(&lock, &own), 0);
    pthread_join(r.tid, NULL);
    CHECK_EQ(r.acquire_rc, 0);
    CHECK_EQ(r.release_rc, 0);
    CHECK_EQ(__atomic_load_n(&asked_elsewhere, __ATOMIC_SEQ_CST), 0);
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
}

static void calls_on_a_destroyed_lock_are_einval(void)
{
    fifolock_mt lock;
    struct timespec d = in_ms(1000);

    fifolock_mt_init(&lock);
    CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
    CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_mutex), EINVAL);
    CHECK_EQ(fifolock_mt_try_acquire(&lock, &fifolock_read), EINVAL);
    CHECK_EQ(fifolock_mt_timed_acquire(&lock, &fifolock_write, &d), EINVAL);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_mutex), EINVAL);
    CHECK_EQ(fifolock_mt_waiting(&lock), 0);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_mt_destroy(&lock), EINVAL);
    CHECK_EQ(fifolock_mt_init(&lock), 0); /* and it can be made anew */
    CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
}

/* ---- seams for front ends: fifolock_mt_inspect(), the fork hooks --------- */

struct seen {
    int calls;
    size_t read, write, waiting, total;
    int converting;
};

static void see(const fifolock *engine, void *arg)
{
    struct seen *s = arg;
    const fifolock_holds *h = fifolock_holds_of(engine);

    s->calls++;
    s->read = fifolock_held(h, &fifolock_read);
    s->write = fifolock_held(h, &fifolock_write);
    s->total = fifolock_held_total(h);
    s->waiting = fifolock_waiting(engine);
    s->converting = fifolock_converting(engine);
}

static void inspect_sees_holds_queue_and_conversion_at_one_moment(void)
{
    fifolock_mt lock;
    struct seen s = { 0 };
    struct req w;

    fifolock_mt_init(&lock);
    CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_read), 0); /* the idle fast path */
    CHECK_EQ(fifolock_mt_inspect(&lock, see, &s), 0);
    CHECK_EQ(s.calls, 1);
    CHECK_EQ(s.read, 1); /* counted although taken without the internal lock */
    CHECK_EQ(s.waiting, 0);
    req_start(&w, &lock, &fifolock_write, 0);
    req_go(&w);
    wait_queued(&lock, 1);
    CHECK_EQ(fifolock_mt_inspect(&lock, see, &s), 0);
    CHECK_EQ(s.calls, 2);
    CHECK_EQ(s.read, 1);
    CHECK_EQ(s.write, 0);
    CHECK_EQ(s.waiting, 1);
    CHECK_FALSE(s.converting);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_read), 0);
    pthread_join(w.tid, NULL);
    CHECK_EQ(w.acquire_rc, 0);
    CHECK_EQ(fifolock_mt_inspect(&lock, see, &s), 0);
    CHECK_EQ(s.total, 0);
    CHECK_EQ(s.waiting, 0);
    /* bad input: EINVAL, and the callback is not called */
    CHECK_EQ(fifolock_mt_inspect(NULL, see, &s), EINVAL);
    CHECK_EQ(fifolock_mt_inspect(&lock, NULL, &s), EINVAL);
    CHECK_EQ(s.calls, 3);
    CHECK_TRUE(fifolock_mt_engine(NULL) == NULL);
    CHECK_FALSE(fifolock_converting(NULL));
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
    CHECK_EQ(fifolock_mt_inspect(&lock, see, &s), EINVAL);
    CHECK_EQ(s.calls, 3);
}

struct try_call {
    pthread_t tid;
    fifolock_mt *lock;
    int rc;
    int done;
};

static void *try_call_main(void *arg)
{
    struct try_call *t = arg;

    t->rc = fifolock_mt_try_acquire(t->lock, &fifolock_read);
    __atomic_store_n(&t->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void fork_hooks_hold_off_other_threads_and_pair_up(void)
{
    fifolock_mt lock;
    struct try_call t = { 0 };

    fifolock_mt_init(&lock);
    t.lock = &lock;
    CHECK_EQ(fifolock_mt_after_fork(&lock), EPERM); /* nothing to match */
    CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_mt_after_fork(&lock), EPERM); /* held, but not its internal lock */
    CHECK_EQ(fifolock_mt_before_fork(&lock), 0);
    pthread_create(&t.tid, NULL, try_call_main, &t);
    usleep(20000);
    CHECK_FALSE(__atomic_load_n(&t.done, __ATOMIC_SEQ_CST)); /* waits for the hooks */
#ifndef _WIN32
    {
        int status = -1;
        pid_t pid = fork();

        if (pid == 0) {
            /* the child: the other thread is gone, its call never made */
            int ok = fifolock_mt_after_fork(&lock) == 0 &&
                     fifolock_mt_held(&lock, &fifolock_read) == 1 &&
                     fifolock_mt_waiting(&lock) == 0 &&
                     fifolock_mt_try_acquire(&lock, &fifolock_write) == EBUSY &&
                     fifolock_mt_release(&lock, &fifolock_read) == 0 &&
                     fifolock_mt_acquire(&lock, &fifolock_write) == 0 &&
                     fifolock_mt_release(&lock, &fifolock_write) == 0 &&
                     fifolock_mt_destroy(&lock) == 0;
            _exit(ok ? 0 : 1);
        }
        CHECK_TRUE(pid > 0);
        CHECK_EQ(waitpid(pid, &status, 0), pid);
        CHECK_TRUE(WIFEXITED(status));
        CHECK_EQ(WEXITSTATUS(status), 0);
    }
#endif
    CHECK_EQ(fifolock_mt_after_fork(&lock), 0);
    pthread_join(t.tid, NULL);
    CHECK_EQ(t.rc, 0);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_read), 2);
    CHECK_EQ(fifolock_mt_release_n(&lock, &fifolock_read, 2), 0);
    CHECK_EQ(fifolock_mt_before_fork(NULL), EINVAL);
    CHECK_EQ(fifolock_mt_after_fork(NULL), EINVAL);
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
    CHECK_EQ(fifolock_mt_before_fork(&lock), EINVAL);
    CHECK_EQ(fifolock_mt_after_fork(&lock), EINVAL);
}

struct blocked_call {
    pthread_t tid;
    fifolock_mt *lock;
    int destroy; /* destroy instead of try_acquire */
    int rc;
};

static void *blocked_call_main(void *arg)
{
    struct blocked_call *c = arg;

    c->rc = c->destroy ? fifolock_mt_destroy(c->lock)
                       : fifolock_mt_try_acquire(c->lock, &fifolock_mutex);
    return NULL;
}

/*
 * A call blocked on the internal lock while fifolock_mt_destroy() succeeds
 * fails with EINVAL; it never takes the destroyed lock. Either order of the
 * two calls is allowed; "both succeeded" never is.
 */
static void a_call_blocked_when_destroy_succeeds_fails(void)
{
    int round, destroyed = 0;

    for (round = 0; round < 20; round++) {
        fifolock_mt lock;
        struct blocked_call d = { .lock = &lock, .destroy = 1 }, t = { .lock = &lock };
        struct blocked_call *first = round % 2 ? &t : &d, *second = round % 2 ? &d : &t;

        fifolock_mt_init(&lock);
        __atomic_store_n(&fifolock_mt__tuning.lock_spin, 0, __ATOMIC_SEQ_CST);
        fifolock_mt__lock_internal(&lock);
        pthread_create(&first->tid, NULL, blocked_call_main, first);
        while (!fifolock_mt__internal_has_sleepers(&lock))
            usleep(100);
        pthread_create(&second->tid, NULL, blocked_call_main, second);
        usleep(2000); /* let it block too */
        fifolock_mt__unlock_internal(&lock);
        pthread_join(first->tid, NULL);
        pthread_join(second->tid, NULL);
        __atomic_store_n(&fifolock_mt__tuning.lock_spin, FIFOLOCK_MT__LOCK_SPIN,
                         __ATOMIC_SEQ_CST);
        if (d.rc == 0) {
            destroyed++;
            CHECK_EQ(t.rc, EINVAL);
        } else {
            CHECK_EQ(d.rc, EBUSY);
            CHECK_EQ(t.rc, 0);
            CHECK_EQ(fifolock_mt_release(&lock, &fifolock_mutex), 0);
            CHECK_EQ(fifolock_mt_destroy(&lock), 0);
        }
    }
    CHECK_LT(0, destroyed); /* the interesting order happened */
}

RUN_TESTS(TEST(null_and_bad_arguments_are_einval),
          TEST(releasing_an_unheld_mode_is_eperm_and_changes_nothing),
          TEST(destroying_a_held_lock_is_ebusy_and_leaves_it_usable),
          TEST(destroying_a_waited_lock_is_ebusy),
          TEST(try_is_ebusy_when_incompatible_or_anybody_waits),
          TEST(past_deadline_is_try_then_etimedout), TEST(errno_is_never_touched),
          TEST(held_counts_every_mode_and_semaphore_stops_at_its_size),
          TEST(fast_hold_is_seen_by_every_other_call),
          TEST(a_mode_that_never_fits_is_refused_at_once_by_every_call),
          TEST(a_lock_set_by_the_static_initializer_is_one_made_by_init),
          TEST(threads_are_granted_in_queue_order),
          TEST(sleeping_threads_are_woken_in_queue_order),
          TEST(readers_queue_behind_a_waiting_writer),
          TEST(timeout_while_spinning_leaves_no_trace),
          TEST(timeout_while_sleeping_leaves_no_trace),
          TEST(timed_out_head_lets_compatible_waiters_through),
          TEST(timed_acquire_granted_before_the_deadline_holds),
          TEST(grant_between_deadline_and_withdrawal_wins),
          TEST(sleepers_on_the_internal_lock_are_woken),
          TEST(a_lock_freed_during_the_last_release_is_not_touched),
          TEST(deadline_while_deferring_leaves_no_trace),
          TEST(a_granted_hold_is_never_taken_back),
          TEST(a_predicate_is_asked_with_its_own_locks_holds),
          TEST(calls_on_a_destroyed_lock_are_einval),
          TEST(inspect_sees_holds_queue_and_conversion_at_one_moment),
          TEST(fork_hooks_hold_off_other_threads_and_pair_up),
          TEST(a_call_blocked_when_destroy_succeeds_fails))
