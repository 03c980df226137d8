/*
 * Weighted requests and conversions on the thread lock: the rules of
 * fifolock_mt_acquire_n() and fifolock_mt_convert(), with real threads that
 * block, and the race between a conversion's grant and its deadline.
 * Threads never call CHECK: they report, main checks.
 */
#define _GNU_SOURCE
#include "check.h"
#include "deadline.h"
#include "mt_internal.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

/* One blocking call in its own thread. */
enum op { OP_ACQUIRE_N, OP_CONVERT, OP_TIMED_CONVERT };

struct call {
    pthread_t tid;
    fifolock_mt *lock;
    enum op op;
    const fifolock_mode *mode, *to;
    size_t n;
    struct timespec deadline;
    int rc;
    int done;
};

static void *call_main(void *arg)
{
    struct call *c = arg;
    int rc;

    switch (c->op) {
    case OP_ACQUIRE_N:
        rc = fifolock_mt_acquire_n(c->lock, c->mode, c->n);
        break;
    case OP_CONVERT:
        rc = fifolock_mt_convert(c->lock, c->mode, c->to);
        break;
    default:
        rc = fifolock_mt_timed_convert(c->lock, c->mode, c->to, &c->deadline);
        break;
    }
    c->rc = rc;
    __atomic_store_n(&c->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void call_start(struct call *c, fifolock_mt *lock, enum op op, const fifolock_mode *mode,
                       const fifolock_mode *to, size_t n)
{
    memset(c, 0, sizeof *c);
    c->lock = lock;
    c->op = op;
    c->mode = mode;
    c->to = to;
    c->n = n;
    c->rc = -1;
    pthread_create(&c->tid, NULL, call_main, c);
}

static void call_join(struct call *c)
{
    pthread_join(c->tid, NULL);
}

static int call_done(struct call *c)
{
    return __atomic_load_n(&c->done, __ATOMIC_SEQ_CST);
}

static void wait_queued(fifolock_mt *lock, size_t n)
{
    while (fifolock_mt_waiting(lock) < n)
        usleep(100);
}

/* ---- weighted ------------------------------------------------------------ */

static void weighted_calls_take_and_drop_n_at_once(void)
{
    fifolock_mt lock;
    fifolock_mode sem = FIFOLOCK_SEMAPHORE(5);
    struct timespec d = in_ms(1000);

    fifolock_mt_init(&lock);
    CHECK_EQ(fifolock_mt_acquire_n(&lock, &sem, 2), 0);
    CHECK_EQ(fifolock_mt_try_acquire_n(&lock, &sem, 2), 0);
    CHECK_EQ(fifolock_mt_try_acquire_n(&lock, &sem, 2), EBUSY);
    CHECK_EQ(fifolock_mt_timed_acquire_n(&lock, &sem, 1, &d), 0);
    CHECK_EQ(fifolock_mt_held(&lock, &sem), 5);
    CHECK_EQ(fifolock_mt_release_n(&lock, &sem, 6), EPERM);
    CHECK_EQ(fifolock_mt_held(&lock, &sem), 5);
    CHECK_EQ(fifolock_mt_release_n(&lock, &sem, 5), 0);
    CHECK_EQ(fifolock_mt_held(&lock, &sem), 0);
    CHECK_EQ(fifolock_mt_acquire_n(&lock, &sem, 0), EINVAL);
    CHECK_EQ(fifolock_mt_try_acquire_n(&lock, &sem, 0), EINVAL);
    CHECK_EQ(fifolock_mt_timed_acquire_n(&lock, &sem, 0, &d), EINVAL);
    CHECK_EQ(fifolock_mt_release_n(&lock, &sem, 0), EINVAL);
    CHECK_EQ(fifolock_mt_acquire_n(NULL, &sem, 1), EINVAL);
    d = in_ms(0);
    CHECK_EQ(fifolock_mt_timed_acquire_n(&lock, &sem, 4, &d), 0); /* past: a try */
    CHECK_EQ(fifolock_mt_timed_acquire_n(&lock, &sem, 2, &d), ETIMEDOUT); /* 1 left */
    CHECK_EQ(fifolock_mt_release_n(&lock, &sem, 4), 0);
    /* more than the semaphore's size: never, so refused at once, not timed out */
    CHECK_EQ(fifolock_mt_timed_acquire_n(&lock, &sem, 6, &d), EDEADLK);
    /* a hold taken the fast way is one: two can't be released */
    CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_mt_release_n(&lock, &fifolock_mutex, 2), EPERM);
    CHECK_EQ(fifolock_mt_release_n(&lock, &fifolock_mutex, 1), 0);
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
}

static void waiting_big_request_holds_back_small_ones(void)
{
    fifolock_mt lock;
    fifolock_mode sem = FIFOLOCK_SEMAPHORE(4);
    struct call big;

    fifolock_mt_init(&lock);
    CHECK_EQ(fifolock_mt_acquire_n(&lock, &sem, 3), 0);
    call_start(&big, &lock, OP_ACQUIRE_N, &sem, NULL, 4);
    wait_queued(&lock, 1);
    CHECK_EQ(fifolock_mt_try_acquire(&lock, &sem), EBUSY); /* one would fit */
    CHECK_EQ(fifolock_mt_release_n(&lock, &sem, 2), 0);
    usleep(2000);
    CHECK_FALSE(call_done(&big));
    CHECK_EQ(fifolock_mt_release(&lock, &sem), 0);
    call_join(&big);
    CHECK_EQ(big.rc, 0);
    CHECK_EQ(fifolock_mt_held(&lock, &sem), 4);
    CHECK_EQ(fifolock_mt_release_n(&lock, &sem, 4), 0);
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
}

/* ---- conversions --------------------------------------------------------- */

static void downgrade_lets_waiting_readers_in_at_once(void)
{
    fifolock_mt lock;
    struct call r[2];
    int i;

    fifolock_mt_init(&lock);
    CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_write), 0);
    for (i = 0; i < 2; i++) {
        call_start(&r[i], &lock, OP_ACQUIRE_N, &fifolock_read, NULL, 1);
        wait_queued(&lock, (size_t)i + 1);
    }
    CHECK_EQ(fifolock_mt_convert(&lock, &fifolock_write, &fifolock_read), 0);
    for (i = 0; i < 2; i++) {
        call_join(&r[i]);
        CHECK_EQ(r[i].rc, 0);
    }
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_read), 3);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_mt_release_n(&lock, &fifolock_read, 3), 0);
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
}

static void upgrade_waits_for_readers_ahead_of_a_queued_writer(void)
{
    fifolock_mt lock;
    struct call up, w;

    fifolock_mt_init(&lock);
    CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_upgradable), 0);
    CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_read), 0);
    call_start(&w, &lock, OP_ACQUIRE_N, &fifolock_write, NULL, 1);
    wait_queued(&lock, 1);
    call_start(&up, &lock, OP_CONVERT, &fifolock_upgradable, &fifolock_write, 1);
    wait_queued(&lock, 2);
    CHECK_TRUE(fifolock_mt__queued_mode(&lock, 0) == &fifolock_write); /* the conversion */
    CHECK_EQ(fifolock_mt_try_acquire(&lock, &fifolock_read), EBUSY);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_read), 0);
    call_join(&up);
    CHECK_EQ(up.rc, 0);
    CHECK_FALSE(call_done(&w)); /* the writer queued first still waits */
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_write), 1);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_upgradable), 0);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_write), 0);
    call_join(&w);
    CHECK_EQ(w.rc, 0);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
}

static void two_upgrading_readers_get_edeadlk_not_a_deadlock(void)
{
    fifolock_mt lock;
    struct call up;

    fifolock_mt_init(&lock);
    CHECK_EQ(fifolock_mt_acquire_n(&lock, &fifolock_read, 2), 0);
    call_start(&up, &lock, OP_CONVERT, &fifolock_read, &fifolock_write, 1);
    wait_queued(&lock, 1);
    CHECK_EQ(fifolock_mt_convert(&lock, &fifolock_read, &fifolock_write), EDEADLK);
    CHECK_EQ(fifolock_mt_try_convert(&lock, &fifolock_read, &fifolock_write), EBUSY);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_read), 0); /* the second gives way */
    call_join(&up);
    CHECK_EQ(up.rc, 0);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_write), 1);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_mt_convert(&lock, &fifolock_read, &fifolock_write), EPERM);
    CHECK_EQ(fifolock_mt_convert(NULL, &fifolock_read, &fifolock_write), EINVAL);
    CHECK_EQ(fifolock_mt_try_convert(&lock, NULL, &fifolock_write), EINVAL);
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
}

static void timed_out_conversion_keeps_from_and_lets_the_queue_go(void)
{
    fifolock_mt lock;
    struct call up, r;
    struct timespec bad = in_ms(10), past = in_ms(0);

    fifolock_mt_init(&lock);
    CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_upgradable), 0);
    CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_read), 0);
    bad.tv_nsec = -1;
    CHECK_EQ(fifolock_mt_timed_convert(&lock, &fifolock_upgradable, &fifolock_write, &bad),
             EINVAL);
    CHECK_EQ(fifolock_mt_timed_convert(&lock, &fifolock_upgradable, &fifolock_write, &past),
             ETIMEDOUT);
    /* a real wait: a reader queues behind the conversion and is let through */
    memset(&up, 0, sizeof up);
    up.lock = &lock;
    up.op = OP_TIMED_CONVERT;
    up.mode = &fifolock_upgradable;
    up.to = &fifolock_write;
    up.deadline = in_ms(100);
    pthread_create(&up.tid, NULL, call_main, &up);
    wait_queued(&lock, 1);
    call_start(&r, &lock, OP_ACQUIRE_N, &fifolock_read, NULL, 1);
    wait_queued(&lock, 2);
    call_join(&up);
    CHECK_EQ(up.rc, ETIMEDOUT);
    call_join(&r);
    CHECK_EQ(r.rc, 0);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_upgradable), 1);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_read), 2);
    CHECK_EQ(fifolock_mt_waiting(&lock), 0);
    CHECK_EQ(fifolock_mt_release_n(&lock, &fifolock_read, 2), 0);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_upgradable), 0);
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
}

/* T1's hook: the reader lets go between the deadline and the withdrawal. */
static void release_reader_at_timeout(fifolock_mt *lock)
{
    fifolock_mt_release(lock, &fifolock_read);
}

static void conversion_grant_racing_its_deadline_keeps_exactly_one_mode(void)
{
    fifolock_mt lock;
    struct timespec d;

    fifolock_mt_init(&lock);
    CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_upgradable), 0);
    CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_read), 0);
    __atomic_store_n(&fifolock_mt__on_timeout, release_reader_at_timeout, __ATOMIC_SEQ_CST);
    d = in_ms(20);
    CHECK_EQ(fifolock_mt_timed_convert(&lock, &fifolock_upgradable, &fifolock_write, &d), 0);
    __atomic_store_n(&fifolock_mt__on_timeout, NULL, __ATOMIC_SEQ_CST);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_write), 1);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_upgradable), 0);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
}

/* ---- interruptible waits (for front ends such as Python's) ---------------- */

struct intr_call {
    pthread_t tid;
    fifolock_mt *lock;
    int stop; /* what the hook answers */
    int asked;
    int rc;
    const fifolock_mode *from; /* a conversion from this to fifolock_write */
    struct timespec deadline;
    int timed;
};

static int intr_hook(void *arg)
{
    struct intr_call *c = arg;

    __atomic_fetch_add(&c->asked, 1, __ATOMIC_SEQ_CST);
    return __atomic_load_n(&c->stop, __ATOMIC_SEQ_CST);
}

static void *intr_main(void *arg)
{
    struct intr_call *c = arg;
    const struct timespec *deadline = c->timed ? &c->deadline : NULL;

    if (c->from != NULL)
        c->rc = fifolock_mt_convert_interruptible(c->lock, c->from, &fifolock_write, deadline,
                                                  intr_hook, c);
    else
        c->rc = fifolock_mt_acquire_interruptible(c->lock, &fifolock_write, 1, deadline,
                                                  intr_hook, c);
    return NULL;
}

struct converting_call {
    int converting;
    size_t waiting;
};

static void converting_inspect(const fifolock *engine, void *arg)
{
    struct converting_call *c = arg;

    c->converting = fifolock_converting(engine);
    c->waiting = fifolock_waiting(engine);
}

static int mt_converting(fifolock_mt *lock)
{
    struct converting_call c = { -1, 0 };

    CHECK_EQ(fifolock_mt_inspect(lock, converting_inspect, &c), 0);
    return c.converting;
}

static void an_interrupted_wait_leaves_no_trace_and_lets_others_in(void)
{
    fifolock_mt lock;
    struct intr_call c = { 0 }, d = { 0 };
    struct call r;

    fifolock_mt_init(&lock);
    c.lock = d.lock = &lock;
    CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_read), 0);
    pthread_create(&c.tid, NULL, intr_main, &c);
    wait_queued(&lock, 1);
    call_start(&r, &lock, OP_ACQUIRE_N, &fifolock_read, NULL, 1); /* behind the writer */
    wait_queued(&lock, 2);
    while (__atomic_load_n(&c.asked, __ATOMIC_SEQ_CST) < 2) /* it sleeps, and asks again */
        usleep(1000);
    __atomic_store_n(&c.stop, 1, __ATOMIC_SEQ_CST);
    pthread_join(c.tid, NULL);
    CHECK_EQ(c.rc, EINTR);
    call_join(&r); /* the reader it held back got in */
    CHECK_EQ(r.rc, 0);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_read), 2);
    CHECK_EQ(fifolock_mt_waiting(&lock), 0);
    /* a hook that says no: the wait goes on and is granted */
    pthread_create(&d.tid, NULL, intr_main, &d);
    wait_queued(&lock, 1);
    CHECK_EQ(fifolock_mt_release_n(&lock, &fifolock_read, 2), 0);
    pthread_join(d.tid, NULL);
    CHECK_EQ(d.rc, 0);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
}

static void an_interrupted_conversion_keeps_from_and_lets_others_in(void)
{
    fifolock_mt lock;
    struct intr_call c = { 0 };
    struct call r;

    fifolock_mt_init(&lock);
    c.lock = &lock;
    c.from = &fifolock_upgradable;
    CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_upgradable), 0);
    CHECK_EQ(fifolock_mt_acquire(&lock, &fifolock_read), 0); /* keeps the upgrade waiting */
    pthread_create(&c.tid, NULL, intr_main, &c);
    while (!mt_converting(&lock))
        usleep(100);
    call_start(&r, &lock, OP_ACQUIRE_N, &fifolock_read, NULL, 1); /* behind the conversion */
    wait_queued(&lock, 2);
    while (__atomic_load_n(&c.asked, __ATOMIC_SEQ_CST) < 2) /* it sleeps, and asks again */
        usleep(1000);
    CHECK_FALSE(call_done(&r));
    __atomic_store_n(&c.stop, 1, __ATOMIC_SEQ_CST);
    pthread_join(c.tid, NULL);
    CHECK_EQ(c.rc, EINTR);
    call_join(&r); /* the reader it held back got in */
    CHECK_EQ(r.rc, 0);
    CHECK_FALSE(mt_converting(&lock));
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_upgradable), 1); /* still from */
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_read), 2);
    CHECK_EQ(fifolock_mt_waiting(&lock), 0);
    /* a hook that says no, with a deadline: ETIMEDOUT, from kept */
    memset(&c, 0, sizeof c);
    c.lock = &lock;
    c.from = &fifolock_upgradable;
    c.timed = 1;
    c.deadline = in_ms(30);
    pthread_create(&c.tid, NULL, intr_main, &c);
    pthread_join(c.tid, NULL);
    CHECK_EQ(c.rc, ETIMEDOUT);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_upgradable), 1);
    /* and one that says no until the readers go: the switch */
    memset(&c, 0, sizeof c);
    c.lock = &lock;
    c.from = &fifolock_upgradable;
    pthread_create(&c.tid, NULL, intr_main, &c);
    while (!mt_converting(&lock))
        usleep(100);
    CHECK_EQ(fifolock_mt_release_n(&lock, &fifolock_read, 2), 0);
    pthread_join(c.tid, NULL);
    CHECK_EQ(c.rc, 0);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_upgradable), 0);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_write), 1);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
}

static int never_interrupted(void *arg)
{
    (void)arg;
    return 0;
}

static void interruptible_calls_refuse_bad_input_and_change_nothing(void)
{
    fifolock_mt lock;
    fifolock_mode none = { NULL, "none", 0 };
    struct timespec bad = in_ms(1000), past = in_ms(0);

    bad.tv_nsec = 1000000000L;
    fifolock_mt_init(&lock);
    CHECK_EQ(fifolock_mt_acquire_interruptible(NULL, &fifolock_read, 1, NULL,
                                               never_interrupted, NULL), EINVAL);
    CHECK_EQ(fifolock_mt_acquire_interruptible(&lock, NULL, 1, NULL, never_interrupted, NULL),
             EINVAL);
    CHECK_EQ(fifolock_mt_acquire_interruptible(&lock, &none, 1, NULL, never_interrupted, NULL),
             EINVAL);
    CHECK_EQ(fifolock_mt_acquire_interruptible(&lock, &fifolock_read, 0, NULL,
                                               never_interrupted, NULL), EINVAL);
    CHECK_EQ(fifolock_mt_acquire_interruptible(&lock, &fifolock_read, 1, &bad,
                                               never_interrupted, NULL), EINVAL);
    CHECK_EQ(fifolock_mt_acquire_interruptible(&lock, &fifolock_write, 2, NULL,
                                               never_interrupted, NULL), EDEADLK);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_mt_waiting(&lock), 0);
    /* a NULL hook is the plain call */
    CHECK_EQ(fifolock_mt_acquire_interruptible(&lock, &fifolock_read, 3, NULL, NULL, NULL), 0);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_read), 3);
    CHECK_EQ(fifolock_mt_acquire_interruptible(&lock, &fifolock_write, 1, &past,
                                               never_interrupted, NULL), ETIMEDOUT);
    CHECK_EQ(fifolock_mt_convert_interruptible(NULL, &fifolock_read, &fifolock_write, NULL,
                                               never_interrupted, NULL), EINVAL);
    CHECK_EQ(fifolock_mt_convert_interruptible(&lock, &fifolock_read, NULL, NULL,
                                               never_interrupted, NULL), EINVAL);
    CHECK_EQ(fifolock_mt_convert_interruptible(&lock, &fifolock_read, &fifolock_write, &bad,
                                               never_interrupted, NULL), EINVAL);
    CHECK_EQ(fifolock_mt_convert_interruptible(&lock, &fifolock_upgradable, &fifolock_write,
                                               NULL, never_interrupted, NULL), EPERM);
    CHECK_EQ(fifolock_mt_convert_interruptible(&lock, &fifolock_read, &fifolock_write, &past,
                                               never_interrupted, NULL), ETIMEDOUT);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_read), 3);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_mt_waiting(&lock), 0);
    CHECK_EQ(fifolock_mt_release_n(&lock, &fifolock_read, 2), 0);
    /* the last reader converts at once, hook or not */
    CHECK_EQ(fifolock_mt_convert_interruptible(&lock, &fifolock_read, &fifolock_write, NULL,
                                               never_interrupted, NULL), 0);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_write), 1);
    CHECK_EQ(fifolock_mt_release(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
}

RUN_TESTS(TEST(weighted_calls_take_and_drop_n_at_once),
          TEST(waiting_big_request_holds_back_small_ones),
          TEST(downgrade_lets_waiting_readers_in_at_once),
          TEST(upgrade_waits_for_readers_ahead_of_a_queued_writer),
          TEST(two_upgrading_readers_get_edeadlk_not_a_deadlock),
          TEST(timed_out_conversion_keeps_from_and_lets_the_queue_go),
          TEST(conversion_grant_racing_its_deadline_keeps_exactly_one_mode),
          TEST(an_interrupted_wait_leaves_no_trace_and_lets_others_in),
          TEST(an_interrupted_conversion_keeps_from_and_lets_others_in),
          TEST(interruptible_calls_refuse_bad_input_and_change_nothing))
