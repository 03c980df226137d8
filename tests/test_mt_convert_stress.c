/*
 * The thread lock's conversions and weighted requests under load: more
 * threads than cores on one lock, each doing, at random,
 *
 *   - an upgrade: upgradable -> write -> downgrade to read -> release (the
 *     upgrade blocking, with a deadline, or a try; one that times out keeps
 *     the upgradable and gives it back or downgrades it to a read);
 *   - a writer that downgrades: write -> read -> release;
 *   - a reader that upgrades read -> write (EDEADLK when another
 *     conversion already waits: it then gives its read back);
 *   - a plain reader or writer (blocking, timed, try);
 *   - a weighted semaphore take of 1..SEM_SIZE units (blocking, timed, try),
 *     given back in one or two release_n calls;
 *
 * with the rules of the modes checked inside every critical section against
 * shared counters of who is inside: a writer alone among readers, writers
 * and upgradables; readers and the upgradable beside no writer; at most one
 * upgradable; never more than SEM_SIZE units. Each thread counts before it
 * takes the step that lets others in (a downgrade) and after the step that
 * shuts them out (an upgrade), so the counters never show less than is
 * held. Each phase runs for a bounded time (0.6 s, longer only until each
 * kind of step was seen once, 20 s at most), not a number of rounds, so
 * that it stays short under valgrind. Threads never call CHECK (the harness is
 * single-threaded): they count, main checks.
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

#if defined(_WIN32)
/* POSIX's, which Windows lacks: the same kind of generator, for these tests. */
static int rand_r(unsigned *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return (int)((*seed >> 1) & 0x7fffffff);
}
#endif

#define THREADS 6
#define SEM_SIZE 10
#define PHASE_MS 600

static fifolock_mt lock;
static fifolock_mode sem = FIFOLOCK_SEMAPHORE(SEM_SIZE);

/* Who is inside right now. */
static int readers, writers, upgraders, sem_units;
/* Plain data: written under write, read under read and upgradable (TSan checks the lock orders it). */
static long shared_value;

enum {
    K_UPGRADES, K_UPGRADE_TIMEOUTS, K_DOWNGRADES, K_READ_UPGRADES, K_EDEADLK, K_WEIGHTED,
    K_WEIGHTED_TIMEOUTS, K_BUSY, K_PLAIN, N_KINDS
};

static const char *const kind_name[N_KINDS] = {
    "upgrades", "upgrade timeouts", "downgrades", "read upgrades", "EDEADLK", "weighted",
    "weighted timeouts", "busy", "plain",
};

struct worker {
    pthread_t tid;
    unsigned seed;
    struct timespec end, hard_end;
    long count[N_KINDS];
    long errors, violations;
};

/* Of all threads of the phase: a phase goes on past its time until each step was seen. */
static long seen[N_KINDS];

static void counted(struct worker *w, int kind)
{
    w->count[kind]++;
    if (__atomic_load_n(&seen[kind], __ATOMIC_RELAXED) == 0)
        __atomic_store_n(&seen[kind], 1, __ATOMIC_RELAXED);
}

static const int needed[] = { K_UPGRADES, K_DOWNGRADES, K_READ_UPGRADES, K_WEIGHTED, K_PLAIN };

static int all_seen(void)
{
    size_t k;

    for (k = 0; k < sizeof needed / sizeof needed[0]; k++)
        if (!__atomic_load_n(&seen[needed[k]], __ATOMIC_RELAXED))
            return 0;
    return 1;
}

static int add(int *counter, int d)
{
    return __atomic_add_fetch(counter, d, __ATOMIC_SEQ_CST);
}

static int get(int *counter)
{
    return __atomic_load_n(counter, __ATOMIC_SEQ_CST);
}

/* ---- the rules, checked by whoever is inside ---------------------------- */

static int write_alone(void)
{
    return get(&writers) == 1 && get(&readers) == 0 && get(&upgraders) == 0;
}

static int read_shared(void)
{
    return get(&writers) == 0;
}

static int upgradable_shared(void)
{
    return get(&writers) == 0 && get(&upgraders) == 1;
}

/* Entering with a mode just granted: count, then check. */
static long enter_read(void)
{
    add(&readers, 1);
    return !read_shared() + (shared_value < 0);
}

static long enter_write(void)
{
    long bad;

    add(&writers, 1);
    bad = !write_alone();
    shared_value++; /* plain: only a writer alone may do this */
    return bad;
}

static long enter_upgradable(void)
{
    add(&upgraders, 1);
    return !upgradable_shared() + (shared_value < 0);
}

static void hold_a_while(unsigned r)
{
    if (r % 8 == 0)
        sched_yield(); /* let the holder be preempted now and then */
}

static int passed(const struct timespec *t)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > t->tv_sec || (now.tv_sec == t->tv_sec && now.tv_nsec >= t->tv_nsec);
}

/*
 * The phase's time is up, and every kind of step was seen (on a crowded
 * machine or under valgrind a short phase may see too few), or its hard
 * limit has passed too.
 */
static int timed_out(const struct worker *w)
{
    return passed(&w->end) && (all_seen() || passed(&w->hard_end));
}

/* A deadline 0..200 us away: some pass before the grant, some after. */
static struct timespec soon(unsigned r)
{
    return in_ns((int64_t)(r % 200) * 1000);
}

static void release(struct worker *w, const fifolock_mode *m, size_t n)
{
    if ((n == 1 ? fifolock_mt_release(&lock, m) : fifolock_mt_release_n(&lock, m, n)) != 0)
        w->errors++;
}

/* Holding read: leave and release. */
static void leave_read(struct worker *w)
{
    add(&readers, -1);
    release(w, &fifolock_read, 1);
}

/* Holding write: downgrade to read (counted as a reader first), then leave. */
static void downgrade_and_leave(struct worker *w, unsigned r)
{
    int rc;

    add(&readers, 1);
    add(&writers, -1);
    rc = r & 1 ? fifolock_mt_convert(&lock, &fifolock_write, &fifolock_read)
               : fifolock_mt_try_convert(&lock, &fifolock_write, &fifolock_read);
    if (rc != 0) { /* a downgrade always fits: never here */
        w->errors++;
        add(&readers, -1);
        release(w, &fifolock_write, 1);
        return;
    }
    counted(w, K_DOWNGRADES);
    w->violations += !read_shared();
    hold_a_while(r >> 1);
    leave_read(w);
}

/* Just switched to write from `from` (counted in *from_counter): count, check. */
static void now_writer(struct worker *w, int *from_counter)
{
    add(&writers, 1);
    add(from_counter, -1);
    w->violations += !write_alone();
    shared_value++;
}

/* upgradable -> write -> read -> release, with a deadline or a try now and then. */
static void upgrade(struct worker *w, unsigned r)
{
    struct timespec d;
    int rc;

    if (r % 4 == 0) {
        d = soon(r >> 2);
        rc = fifolock_mt_timed_acquire(&lock, &fifolock_upgradable, &d);
        if (rc == ETIMEDOUT) {
            counted(w, K_UPGRADE_TIMEOUTS);
            return;
        }
    } else {
        rc = fifolock_mt_acquire(&lock, &fifolock_upgradable);
    }
    if (rc != 0) {
        w->errors++;
        return;
    }
    w->violations += enter_upgradable();
    hold_a_while(r >> 3);

    switch ((r >> 6) % 8) {
    case 0:
    case 1:
    case 2:
        d = soon(r >> 9);
        rc = fifolock_mt_timed_convert(&lock, &fifolock_upgradable, &fifolock_write, &d);
        break;
    case 3:
        rc = fifolock_mt_try_convert(&lock, &fifolock_upgradable, &fifolock_write);
        break;
    default:
        rc = fifolock_mt_convert(&lock, &fifolock_upgradable, &fifolock_write);
        break;
    }
    if (rc == 0) {
        counted(w, K_UPGRADES);
        now_writer(w, &upgraders);
        hold_a_while(r >> 12);
        if ((r >> 15) % 4 != 0) {
            downgrade_and_leave(w, r >> 17);
        } else {
            add(&writers, -1);
            release(w, &fifolock_write, 1);
        }
        return;
    }
    /* still upgradable: timed out, busy, or another conversion waits */
    if (rc == ETIMEDOUT)
        counted(w, K_UPGRADE_TIMEOUTS);
    else if (rc == EBUSY)
        counted(w, K_BUSY);
    else if (rc == EDEADLK)
        counted(w, K_EDEADLK);
    else
        w->errors++;
    w->violations += !upgradable_shared();
    if ((r >> 15) & 1) {
        /* downgrade the upgradable to a read: at once */
        add(&readers, 1);
        add(&upgraders, -1);
        if (fifolock_mt_convert(&lock, &fifolock_upgradable, &fifolock_read) != 0) {
            w->errors++;
            add(&readers, -1);
            release(w, &fifolock_upgradable, 1);
            return;
        }
        counted(w, K_DOWNGRADES);
        w->violations += !read_shared();
        leave_read(w);
    } else {
        add(&upgraders, -1);
        release(w, &fifolock_upgradable, 1);
    }
}

/* read -> write: waits ahead of the queue, or EDEADLK if another conversion does. */
static void read_upgrade(struct worker *w, unsigned r)
{
    struct timespec d;
    int rc;

    if (fifolock_mt_acquire(&lock, &fifolock_read) != 0) {
        w->errors++;
        return;
    }
    w->violations += enter_read();
    hold_a_while(r);
    if (r & 8) {
        d = soon(r >> 4);
        rc = fifolock_mt_timed_convert(&lock, &fifolock_read, &fifolock_write, &d);
    } else {
        rc = fifolock_mt_convert(&lock, &fifolock_read, &fifolock_write);
    }
    if (rc == 0) {
        counted(w, K_READ_UPGRADES);
        now_writer(w, &readers);
        downgrade_and_leave(w, r >> 12);
        return;
    }
    if (rc == EDEADLK)
        counted(w, K_EDEADLK);
    else if (rc == ETIMEDOUT)
        counted(w, K_UPGRADE_TIMEOUTS);
    else
        w->errors++;
    w->violations += !read_shared();
    leave_read(w); /* gives way to the conversion that waits */
}

/* write -> read -> release. */
static void writer_downgrade(struct worker *w, unsigned r)
{
    if (fifolock_mt_acquire(&lock, &fifolock_write) != 0) {
        w->errors++;
        return;
    }
    w->violations += enter_write();
    hold_a_while(r);
    downgrade_and_leave(w, r >> 3);
}

/* A plain reader or writer: blocking, timed or try. */
static void plain(struct worker *w, unsigned r)
{
    const fifolock_mode *m = r & 1 ? &fifolock_read : &fifolock_write;
    struct timespec d;
    int rc;

    switch ((r >> 1) % 4) {
    case 0:
        d = soon(r >> 3);
        rc = fifolock_mt_timed_acquire(&lock, m, &d);
        break;
    case 1:
        rc = fifolock_mt_try_acquire(&lock, m);
        break;
    default:
        rc = fifolock_mt_acquire(&lock, m);
        break;
    }
    if (rc == ETIMEDOUT || rc == EBUSY) {
        counted(w, K_BUSY);
        return;
    }
    if (rc != 0) {
        w->errors++;
        return;
    }
    counted(w, K_PLAIN);
    if (m == &fifolock_read) {
        w->violations += enter_read();
        hold_a_while(r >> 10);
        leave_read(w);
    } else {
        w->violations += enter_write();
        hold_a_while(r >> 10);
        add(&writers, -1);
        release(w, m, 1);
    }
}

/* 1..SEM_SIZE units at once; given back in one or two release_n calls. */
static void weighted(struct worker *w, unsigned r)
{
    size_t n = 1 + r % SEM_SIZE, part;
    struct timespec d;
    int rc, in;

    switch ((r >> 4) % 4) {
    case 0:
        d = soon(r >> 6);
        rc = fifolock_mt_timed_acquire_n(&lock, &sem, n, &d);
        break;
    case 1:
        rc = fifolock_mt_try_acquire_n(&lock, &sem, n);
        break;
    default:
        rc = fifolock_mt_acquire_n(&lock, &sem, n);
        break;
    }
    if (rc == ETIMEDOUT || rc == EBUSY) {
        counted(w, rc == ETIMEDOUT ? K_WEIGHTED_TIMEOUTS : K_BUSY);
        return;
    }
    if (rc != 0) {
        w->errors++;
        return;
    }
    counted(w, K_WEIGHTED);
    in = add(&sem_units, (int)n);
    w->violations += in > SEM_SIZE;
    hold_a_while(r >> 16);
    part = n > 1 && (r >> 20) & 1 ? n / 2 : n;
    add(&sem_units, -(int)part);
    release(w, &sem, part);
    if (part < n) {
        add(&sem_units, -(int)(n - part));
        release(w, &sem, n - part);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;

    while (!timed_out(w)) {
        unsigned r = (unsigned)rand_r(&w->seed), what = r % 100;

        r /= 100;
        if (what < 25)
            upgrade(w, r);
        else if (what < 37)
            writer_downgrade(w, r);
        else if (what < 45)
            read_upgrade(w, r);
        else if (what < 70)
            plain(w, r);
        else
            weighted(w, r);
    }
    return NULL;
}

/* ---- phases ------------------------------------------------------------- */

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

static void phase(const char *name, unsigned seed)
{
    struct worker w[THREADS];
    long total[N_KINDS] = { 0 };
    struct timespec end = in_ms(PHASE_MS), hard_end = in_ms(PHASE_MS + 20000);
    int i, k;

    CHECK_EQ(fifolock_mt_init(&lock), 0);
    memset(w, 0, sizeof w);
    memset(seen, 0, sizeof seen);
    for (i = 0; i < THREADS; i++) {
        w[i].seed = 0x9e3779b9u * (unsigned)(i + 1) + seed;
        w[i].end = end;
        w[i].hard_end = hard_end;
        CHECK_EQ(pthread_create(&w[i].tid, NULL, worker_main, &w[i]), 0);
    }
    for (i = 0; i < THREADS; i++) {
        pthread_join(w[i].tid, NULL);
        CHECK_EQ(w[i].errors, 0);
        CHECK_EQ(w[i].violations, 0);
        for (k = 0; k < N_KINDS; k++)
            total[k] += w[i].count[k];
    }
    printf("  %s:", name);
    for (k = 0; k < N_KINDS; k++)
        printf(" %ld %s%s", total[k], kind_name[k], k + 1 < N_KINDS ? "," : "\n");
    /* every kind of step happened (a phase goes on until they did, up to 20 s more) */
    CHECK_LT(0, total[K_UPGRADES]);
    CHECK_LT(0, total[K_DOWNGRADES]);
    CHECK_LT(0, total[K_READ_UPGRADES]);
    CHECK_LT(0, total[K_WEIGHTED]);
    CHECK_LT(0, total[K_PLAIN]);
    /* nothing left behind */
    CHECK_EQ(fifolock_mt_waiting(&lock), 0);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_mt_held(&lock, &fifolock_upgradable), 0);
    CHECK_EQ(fifolock_mt_held(&lock, &sem), 0);
    CHECK_EQ(readers + writers + upgraders + sem_units, 0);
    CHECK_EQ(fifolock_mt_destroy(&lock), 0);
    default_tuning();
}

static void conversions_and_weighted_requests_keep_the_rules_under_load(void)
{
    phase("default waits", 1);
}

/* Every waiter sleeps at once: conversions are woken by the release that switches them. */
static void conversions_and_weighted_requests_keep_the_rules_when_waiters_sleep(void)
{
    set_tuning(0, 0, 0, FIFOLOCK_MT__LOCK_SPIN);
    phase("sleeping", 2);
}

/* Nobody yields before queueing (A0 off) and no sleeping head is nudged (N1 off). */
static void conversions_and_weighted_requests_keep_the_rules_without_defer_or_nudge(void)
{
    __atomic_store_n(&fifolock_mt__tuning.defer, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&fifolock_mt__tuning.shared_ns, 0, __ATOMIC_SEQ_CST);
    phase("without defer or nudge", 3);
}

RUN_TESTS(TEST(conversions_and_weighted_requests_keep_the_rules_under_load),
          TEST(conversions_and_weighted_requests_keep_the_rules_when_waiters_sleep),
          TEST(conversions_and_weighted_requests_keep_the_rules_without_defer_or_nudge))
