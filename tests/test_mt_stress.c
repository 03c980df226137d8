/*
 * The thread lock under load: more threads than cores, four modes on one
 * lock, blocking, try and timed acquires (many of which time out), with the
 * invariants checked inside every critical section; and the race between a
 * grant and a deadline, forced many times, which must leave exactly one hold
 * or none. Threads never call CHECK (the harness is single-threaded): they
 * count, main checks.
 */
#define _GNU_SOURCE
#include "check.h"
#include "deadline.h"
#include "mt_internal.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#if defined(_WIN32)
/* POSIX's, which Windows lacks: the same kind of generator, for these tests. */
static int rand_r(unsigned *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return (int)((*seed >> 1) & 0x7fffffff);
}
#endif
#include <unistd.h>

/* Only while no thread waits: a wait reads these when it begins. */
static void set_tuning(unsigned spin, unsigned yield, unsigned behind, unsigned lock_spin)
{
    __atomic_store_n(&fifolock_mt__tuning.spin, spin, __ATOMIC_SEQ_CST);
    __atomic_store_n(&fifolock_mt__tuning.yield, yield, __ATOMIC_SEQ_CST);
    __atomic_store_n(&fifolock_mt__tuning.yield_behind, behind, __ATOMIC_SEQ_CST);
    __atomic_store_n(&fifolock_mt__tuning.lock_spin, lock_spin, __ATOMIC_SEQ_CST);
}

static void default_tuning(void)
{
    set_tuning(FIFOLOCK_MT__SPIN, FIFOLOCK_MT__YIELD, FIFOLOCK_MT__YIELD_BEHIND,
               FIFOLOCK_MT__LOCK_SPIN);
    __atomic_store_n(&fifolock_mt__tuning.defer, FIFOLOCK_MT__DEFER, __ATOMIC_SEQ_CST);
    __atomic_store_n(&fifolock_mt__tuning.shared_ns, FIFOLOCK_MT__SHARED_NS, __ATOMIC_SEQ_CST);
}

/* ---- invariants in the critical section --------------------------------- */

#define THREADS 6
#define SEM_SIZE 2

static fifolock_mt lock;
static fifolock_mode sem = FIFOLOCK_SEMAPHORE(SEM_SIZE);
static int readers, writers, sem_in, mutex_in; /* holders inside, by mode */
static long plain_written, plain_seen; /* plain data: TSan checks the lock orders it */
static int iterations = 4000;

struct stats {
    pthread_t tid;
    unsigned seed;
    long ops, timeouts, busy, errors, violations;
};

static const fifolock_mode *pick_mode(unsigned r)
{
    r %= 100;
    return r < 40 ? &fifolock_read : r < 65 ? &fifolock_write : r < 85 ? &sem : &fifolock_mutex;
}

static int add(int *counter, int d)
{
    return __atomic_add_fetch(counter, d, __ATOMIC_SEQ_CST);
}

static long enter(const fifolock_mode *m)
{
    if (m == &fifolock_read) {
        add(&readers, 1);
        __atomic_fetch_add(&plain_seen, plain_written & 1, __ATOMIC_RELAXED);
        return __atomic_load_n(&writers, __ATOMIC_SEQ_CST) != 0;
    }
    if (m == &fifolock_write) {
        plain_written++;
        return (add(&writers, 1) != 1) + (__atomic_load_n(&readers, __ATOMIC_SEQ_CST) != 0);
    }
    if (m == &sem)
        return add(&sem_in, 1) > SEM_SIZE;
    return add(&mutex_in, 1) != 1;
}

static void leave(const fifolock_mode *m)
{
    add(m == &fifolock_read ? &readers : m == &fifolock_write ? &writers
                                       : m == &sem              ? &sem_in
                                                                : &mutex_in,
        -1);
}

static void *stress_main(void *arg)
{
    struct stats *st = arg;
    int i;

    for (i = 0; i < iterations; i++) {
        unsigned r = (unsigned)rand_r(&st->seed);
        const fifolock_mode *m = pick_mode(r);
        unsigned how = (r >> 8) % 10;
        int rc;

        if (how < 5) {
            rc = fifolock_mt_acquire(&lock, m);
        } else if (how < 8) {
            struct timespec d = in_ns((long)((r >> 12) % 100) * 1000);
            rc = fifolock_mt_timed_acquire(&lock, m, &d);
            if (rc == ETIMEDOUT) {
                st->timeouts++;
                continue;
            }
        } else {
            rc = fifolock_mt_try_acquire(&lock, m);
            if (rc == EBUSY) {
                st->busy++;
                continue;
            }
        }
        if (rc != 0) {
            st->errors++;
            continue;
        }
        st->violations += enter(m);
        if ((r >> 20) % 8 == 0)
            sched_yield(); /* let the holder be preempted now and then */
        leave(m);
        if (fifolock_mt_release(&lock, m) != 0)
            st->errors++;
        st->ops++;
    }
    return NULL;
}

static void stress_phase(unsigned spin, unsigned yield, unsigned behind, unsigned lock_spin)
{
    struct stats st[THREADS];
    long ops = 0, timeouts = 0;
    int i;

    set_tuning(spin, yield, behind, lock_spin);
    CHECK_EQ(fifolock_mt_init(&lock), 0);
    memset(st, 0, sizeof st);
    for (i = 0; i < THREADS; i++) {
        st[i].seed = 0x9e3779b9u * (unsigned)(i + 1) + spin;
        pthread_create(&st[i].tid, NULL, stress_main, &st[i]);
    }
    for (i = 0; i < THREADS; i++) {
        pthread_join(st[i].tid, NULL);
        CHECK_EQ(st[i].errors, 0);
        CHECK_EQ(st[i].violations, 0);
        ops += st[i].ops;
        timeouts += st[i].timeouts;
    }
    CHECK_LT(0, ops);
    CHECK_EQ(fifolock_mt_waiting(&lock), 0);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_mt_held(&lock, &sem), 0);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_mutex), 0);
    CHECK_EQ(readers + writers + sem_in + mutex_in, 0);
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
    printf("  stress spin=%u yield=%u/%u lock_spin=%u: %ld holds, %ld timeouts\n", spin, yield,
           behind, lock_spin, ops, timeouts);
    default_tuning();
}

static void invariants_hold_under_load_with_default_waits(void)
{
    stress_phase(FIFOLOCK_MT__SPIN, FIFOLOCK_MT__YIELD, FIFOLOCK_MT__YIELD_BEHIND,
                 FIFOLOCK_MT__LOCK_SPIN);
}

/* Every waiter sleeps at once (A3-A6 and G3-G5 every time). */
static void invariants_hold_under_load_sleeping(void)
{
    stress_phase(0, 0, 0, FIFOLOCK_MT__LOCK_SPIN);
}

/* Waiters spin a little, then yield (the YIELDING state), then sleep. */
static void invariants_hold_under_load_yielding(void)
{
    stress_phase(10, 4, 2, FIFOLOCK_MT__LOCK_SPIN);
}

/* Every contended take of the internal lock sleeps on its futex (L2, L3). */
static void invariants_hold_when_the_internal_lock_sleeps(void)
{
    stress_phase(0, 1, 1, 0);
}

/*
 * The two hints changed: nobody yields before queueing (A0 off), and every
 * timed yield counts as crowded, so that no sleeping head is nudged (N1 off).
 */
static void invariants_hold_without_defer_or_nudge(void)
{
    __atomic_store_n(&fifolock_mt__tuning.defer, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&fifolock_mt__tuning.shared_ns, 0, __ATOMIC_SEQ_CST);
    stress_phase(FIFOLOCK_MT__SPIN, FIFOLOCK_MT__YIELD, FIFOLOCK_MT__YIELD_BEHIND,
                 FIFOLOCK_MT__LOCK_SPIN); /* ends with default_tuning() */
}

/* ---- grant against deadline ---------------------------------------------- */

struct racer {
    pthread_t tid;
    fifolock_mt *lock;
    struct timespec deadline;
    int rc;
};

static void *racer_main(void *arg)
{
    struct racer *r = arg;
    r->rc = fifolock_mt_timed_acquire(r->lock, &fifolock_mutex, &r->deadline);
    return NULL; /* keeps the hold, if any: main counts it, then releases */
}

/*
 * Main holds the mutex; a thread waits with a deadline D; main releases at
 * D plus an offset that sweeps from before to after D. Whatever wins, the
 * thread's answer and the lock's counts must agree: 0 and one hold, or
 * ETIMEDOUT and none, and nobody left queued.
 */
static void grant_and_timeout_race_keeps_the_hold_exactly_once(void)
{
    int phase, i, n = iterations / 6;
    long granted = 0, timed_out = 0;

    for (phase = 0; phase < 2; phase++) {
        if (phase)
            set_tuning(0, 0, 0, 0);
        else
            default_tuning();
        for (i = 0; i < n; i++) {
            fifolock_mt l;
            struct racer r;
            struct timespec at;
            long offset = ((long)(i % 41) - 20) * 2000; /* -40 us .. +40 us */

            fifolock_mt_init(&l);
            CHECK_EQ(fifolock_mt_acquire(&l, &fifolock_mutex), 0);
            r.lock = &l;
            r.rc = -1;
            r.deadline = in_ns(300000);
            pthread_create(&r.tid, NULL, racer_main, &r);
            at = r.deadline;
            at.tv_nsec += offset;
            if (at.tv_nsec < 0) {
                at.tv_sec--;
                at.tv_nsec += 1000000000L;
            } else if (at.tv_nsec >= 1000000000L) {
                at.tv_sec++;
                at.tv_nsec -= 1000000000L;
            }
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL);
            CHECK_EQ(fifolock_mt_release(&l, &fifolock_mutex), 0);
            pthread_join(r.tid, NULL);
            CHECK_EQ(fifolock_mt_waiting(&l), 0);
            if (r.rc == 0) {
                granted++;
                CHECK_EQ(fifolock_mt_held(&l, &fifolock_mutex), 1);
                CHECK_EQ(fifolock_mt_release(&l, &fifolock_mutex), 0);
            } else {
                timed_out++;
                CHECK_EQ(r.rc, ETIMEDOUT);
                CHECK_EQ(fifolock_mt_held(&l, &fifolock_mutex), 0);
            }
            CHECK_EQ(fifolock_mt_held(&l, &fifolock_mutex), 0);
            CHECK_EQ(fifolock_mt_destroy(&l), 0);
        }
    }
    default_tuning();
    printf("  race: %ld granted, %ld timed out\n", granted, timed_out);
    CHECK_EQ(granted + timed_out, 2 * n);
}

RUN_TESTS(TEST(invariants_hold_under_load_with_default_waits),
          TEST(invariants_hold_under_load_sleeping),
          TEST(invariants_hold_under_load_yielding),
          TEST(invariants_hold_when_the_internal_lock_sleeps),
          TEST(invariants_hold_without_defer_or_nudge),
          TEST(grant_and_timeout_race_keeps_the_hold_exactly_once))
