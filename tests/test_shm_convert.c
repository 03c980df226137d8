/*
 * The shared-memory lock's interruptible waits (src/shm.c): a wait that its
 * question ends leaves the queue without a trace and returns EINTR; a grant
 * that races the question wins, never both. Threads of one process and real
 * processes (fork + SIGKILL); each child reports through its exit status,
 * main checks.
 */
#define _GNU_SOURCE
#include "check.h"
#include "deadline.h"
#include "shm_internal.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const fifolock_mode *rw[] = { &fifolock_read, &fifolock_write };
static char path[128];

/* A fresh lock file name for each test. */
static const char *fresh(void)
{
    static int n;

    if (getenv("SHM_TEST_VERBOSE"))
        fprintf(stderr, "%s\n", check_current);
    snprintf(path, sizeof path, "/tmp/fifolock-test-shmconv-%d-%d", (int)getpid(), n++);
    unlink(path);
    return path;
}

static void sleep_ms(long ms)
{
    struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };

    nanosleep(&t, NULL);
}

static int64_t mono_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Waits until `lock` has `n` waiters (up to 5 s). */
static int wait_waiting(fifolock_shm *lock, size_t n)
{
    int i;

    for (i = 0; i < 5000; i++) {
        if (fifolock_shm_waiting(lock) == n)
            return 1;
        sleep_ms(1);
    }
    return 0;
}

/* Waits until `lock` has `n` parked waiters (up to 5 s): they sleep. */
static int wait_parked(fifolock_shm *lock, size_t n)
{
    int i;

    for (i = 0; i < 5000; i++) {
        if (fifolock_shm__parked(lock) == n)
            return 1;
        sleep_ms(1);
    }
    return 0;
}

static void on_watchdog(int sig)
{
    static const char msg[] = "FAIL: a test blocked (watchdog): ";

    (void)sig;
    (void)!write(2, msg, sizeof msg - 1);
    (void)!write(2, check_current, strlen(check_current));
    (void)!write(2, "\n", 1);
    _exit(1);
}

static void watchdog(unsigned seconds)
{
    signal(SIGALRM, on_watchdog);
    alarm(seconds);
}

/* ---- interruptible waits --------------------------------------------------- */

static int flag_set(void *arg)
{
    return __atomic_load_n((int *)arg, __ATOMIC_ACQUIRE);
}

struct iwaiter {
    pthread_t tid;
    fifolock_shm *lock;
    const fifolock_mode *mode;
    size_t n;
    int flag; /* the question's answer, set by another thread */
    int rc;
    int order; /* when it returned, from `returned` */
    int64_t returned_ms;
};

static int returned;

static void *iwaiter_main(void *arg)
{
    struct iwaiter *w = arg;

    w->rc = fifolock_shm_acquire_interruptible(w->lock, w->mode, w->n, NULL, flag_set, &w->flag);
    w->returned_ms = mono_ms();
    w->order = __atomic_fetch_add(&returned, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void start_iwaiter(struct iwaiter *w, fifolock_shm *lock, const fifolock_mode *mode)
{
    w->lock = lock;
    w->mode = mode;
    w->n = 1;
    w->flag = 0;
    w->rc = -1;
    pthread_create(&w->tid, NULL, iwaiter_main, w);
}

static void interrupted_wait_is_eintr_and_leaves_no_trace(void)
{
    fifolock_shm a, b;
    struct iwaiter w, behind;
    int64_t set_ms;

    watchdog(20);
    CHECK_EQ(fifolock_shm_open(&a, fresh(), rw, 2), 0);
    CHECK_EQ(fifolock_shm_open(&b, path, rw, 2), 0);
    CHECK_EQ(fifolock_shm_acquire(&a, &fifolock_read), 0);
    returned = 0;
    /* Ticks of 2 s: only the 50 ms bound of an interruptible sleep can end
     * it sooner. */
    fifolock_shm__tuning.tick_ns = 2000000000u;
    start_iwaiter(&w, &b, &fifolock_write);
    CHECK_TRUE(wait_waiting(&a, 1));
    start_iwaiter(&behind, &b, &fifolock_read); /* behind the writer */
    CHECK_TRUE(wait_waiting(&a, 2));
    CHECK_TRUE(wait_parked(&a, 2));
    sleep_ms(120); /* past two questions: a zero answer keeps it waiting */
    CHECK_EQ(fifolock_shm_waiting(&a), 2);

    set_ms = mono_ms();
    __atomic_store_n(&w.flag, 1, __ATOMIC_RELEASE);
    pthread_join(w.tid, NULL);
    CHECK_EQ(w.rc, EINTR);
    CHECK_LT(w.returned_ms - set_ms, 400); /* a sleep lasts at most 50 ms */
    /* Gone without a trace: the reader it held back is let in. */
    pthread_join(behind.tid, NULL);
    fifolock_shm__tuning.tick_ns = FIFOLOCK_SHM__TICK_NS;
    CHECK_EQ(behind.rc, 0);
    CHECK_EQ(fifolock_shm_waiting(&a), 0);
    CHECK_EQ(fifolock_shm_held(&a, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_held(&a, &fifolock_read), 2);
    CHECK_EQ(fifolock_shm_release(&b, &fifolock_write), EPERM);
    CHECK_EQ(fifolock_shm_release(&b, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_read), 0);
    /* A later acquire works, through the fast path and through the queue. */
    CHECK_EQ(fifolock_shm_try_acquire(&b, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_release(&b, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_acquire_interruptible(&b, &fifolock_write, 1, NULL, flag_set, &w.flag),
             0); /* granted at once: never asked, though the answer is yes */
    CHECK_EQ(fifolock_shm_release(&b, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_close(&a), 0);
    CHECK_EQ(fifolock_shm_close(&b), 0);
    unlink(path);
    alarm(0);
}

/* The others keep their FIFO order around an interrupted waiter. */
static void interrupted_waiter_keeps_fifo_for_the_others(void)
{
    fifolock_shm a, b;
    struct iwaiter w[4];
    const fifolock_mode *modes[4] = { &fifolock_write, &fifolock_write, &fifolock_read,
                                      &fifolock_write };
    int i;

    watchdog(20);
    CHECK_EQ(fifolock_shm_open(&a, fresh(), rw, 2), 0);
    CHECK_EQ(fifolock_shm_open(&b, path, rw, 2), 0);
    CHECK_EQ(fifolock_shm_acquire(&a, &fifolock_write), 0);
    returned = 0;
    for (i = 0; i < 4; i++) {
        start_iwaiter(&w[i], &b, modes[i]);
        CHECK_TRUE(wait_waiting(&a, (size_t)i + 1));
    }
    /* The second writer gives up: the others stay in order. */
    __atomic_store_n(&w[1].flag, 1, __ATOMIC_RELEASE);
    pthread_join(w[1].tid, NULL);
    CHECK_EQ(w[1].rc, EINTR);
    CHECK_EQ(w[1].order, 0);
    CHECK_EQ(fifolock_shm_waiting(&a), 3);
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_write), 0);
    pthread_join(w[0].tid, NULL);
    CHECK_EQ(w[0].rc, 0);
    CHECK_EQ(w[0].order, 1);
    sleep_ms(30);
    CHECK_EQ(fifolock_shm_waiting(&a), 2); /* the reader waits for the writer */
    CHECK_EQ(fifolock_shm_release(&b, &fifolock_write), 0);
    pthread_join(w[2].tid, NULL);
    CHECK_EQ(w[2].rc, 0);
    CHECK_EQ(w[2].order, 2);
    CHECK_EQ(fifolock_shm_release(&b, &fifolock_read), 0);
    pthread_join(w[3].tid, NULL);
    CHECK_EQ(w[3].rc, 0);
    CHECK_EQ(fifolock_shm_release(&b, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_waiting(&a), 0);
    CHECK_EQ(fifolock_shm_close(&a), 0);
    CHECK_EQ(fifolock_shm_close(&b), 0);
    unlink(path);
    alarm(0);
}

/*
 * The answer and the release at the same moment, many times: each wait ends
 * held (0, and the lock is held once) or withdrawn (EINTR, and the lock is
 * free), never both and never neither.
 */
static void interrupt_racing_the_grant_ends_held_or_withdrawn(void)
{
    fifolock_shm a, b;
    int round, held = 0, withdrawn = 0;

    watchdog(60);
    CHECK_EQ(fifolock_shm_open(&a, fresh(), rw, 2), 0);
    CHECK_EQ(fifolock_shm_open(&b, path, rw, 2), 0);
    for (round = 0; round < 200; round++) {
        struct iwaiter w;

        CHECK_EQ(fifolock_shm_acquire(&a, &fifolock_write), 0);
        start_iwaiter(&w, &b, &fifolock_write);
        if (!wait_waiting(&a, 1)) {
            CHECK_TRUE(0);
            break;
        }
        if (round % 2)
            (void)wait_parked(&a, 1); /* half the rounds: asleep when both happen */
        __atomic_store_n(&w.flag, 1, __ATOMIC_RELEASE);
        /* From at once to past one question (50 ms): both outcomes occur. */
        if (round % 3)
            usleep((useconds_t)((round * 7919) % 60000));
        CHECK_EQ(fifolock_shm_release(&a, &fifolock_write), 0);
        pthread_join(w.tid, NULL);
        CHECK_TRUE(w.rc == 0 || w.rc == EINTR);
        CHECK_EQ(fifolock_shm_waiting(&a), 0);
        CHECK_EQ(fifolock_shm_held(&a, &fifolock_write), w.rc == 0 ? 1 : 0);
        if (w.rc == 0) {
            held++;
            CHECK_EQ(fifolock_shm_release(&b, &fifolock_write), 0);
        } else {
            withdrawn++;
            CHECK_EQ(fifolock_shm_release(&b, &fifolock_write), EPERM);
        }
        CHECK_EQ(fifolock_shm_held(&a, &fifolock_write), 0);
    }
    if (getenv("SHM_TEST_VERBOSE"))
        fprintf(stderr, "  held %d, withdrawn %d\n", held, withdrawn);
    CHECK_EQ(held + withdrawn, 200);
    CHECK_TRUE(held > 0 && withdrawn > 0);
    CHECK_EQ(fifolock_shm_close(&a), 0);
    CHECK_EQ(fifolock_shm_close(&b), 0);
    unlink(path);
    alarm(0);
}

/*
 * The grant made while the question is being asked: the answer is yes, but
 * the grant wins (0, held), deterministically. The question has another
 * thread release the holder and waits for it (it must not call into the
 * lock itself).
 */
struct releaser {
    fifolock_shm *lock;
    int asked;    /* the question began */
    int released; /* the holder let go */
};

static void *releaser_main(void *arg)
{
    struct releaser *r = arg;

    while (!__atomic_load_n(&r->asked, __ATOMIC_ACQUIRE))
        sleep_ms(1);
    (void)fifolock_shm_release(r->lock, &fifolock_write);
    __atomic_store_n(&r->released, 1, __ATOMIC_RELEASE);
    return NULL;
}

static int release_then_yes(void *arg)
{
    struct releaser *r = arg;

    __atomic_store_n(&r->asked, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&r->released, __ATOMIC_ACQUIRE))
        sleep_ms(1);
    return 1;
}

static void grant_during_the_question_wins(void)
{
    fifolock_shm a, b;
    struct releaser r = { NULL, 0, 0 };
    pthread_t tid;

    watchdog(20);
    CHECK_EQ(fifolock_shm_open(&a, fresh(), rw, 2), 0);
    CHECK_EQ(fifolock_shm_open(&b, path, rw, 2), 0);
    CHECK_EQ(fifolock_shm_acquire(&a, &fifolock_write), 0);
    r.lock = &a;
    pthread_create(&tid, NULL, releaser_main, &r);
    CHECK_EQ(fifolock_shm_acquire_interruptible(&b, &fifolock_read, 1, NULL, release_then_yes, &r),
             0);
    pthread_join(tid, NULL);
    CHECK_EQ(fifolock_shm_held(&a, &fifolock_read), 1);
    CHECK_EQ(fifolock_shm_held(&a, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_release(&b, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_close(&a), 0);
    CHECK_EQ(fifolock_shm_close(&b), 0);
    unlink(path);
    alarm(0);
}

/* Interruptible waits keep the deadline and the argument checks. */
static void interruptible_deadline_and_bad_arguments(void)
{
    fifolock_shm a, b;
    struct timespec d = in_ms(80), bad = { 0, 1000000000L };
    int never = 0;

    watchdog(20);
    CHECK_EQ(fifolock_shm_open(&a, fresh(), rw, 2), 0);
    CHECK_EQ(fifolock_shm_open(&b, path, rw, 2), 0);
    CHECK_EQ(fifolock_shm_acquire_interruptible(NULL, &fifolock_write, 1, NULL, NULL, NULL), EINVAL);
    CHECK_EQ(fifolock_shm_acquire_interruptible(&b, NULL, 1, NULL, NULL, NULL), EINVAL);
    CHECK_EQ(fifolock_shm_acquire_interruptible(&b, &fifolock_write, 0, NULL, NULL, NULL), EINVAL);
    CHECK_EQ(fifolock_shm_acquire_interruptible(&b, &fifolock_write, 1, &bad, NULL, NULL), EINVAL);
    CHECK_EQ(fifolock_shm_acquire_interruptible(&b, &fifolock_write, 2, NULL, NULL, NULL), EDEADLK);
    CHECK_EQ(fifolock_shm_acquire(&a, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_acquire_interruptible(&b, &fifolock_write, 1, &d, flag_set, &never),
             ETIMEDOUT);
    d = in_ms(80);
    CHECK_EQ(fifolock_shm_acquire_interruptible(&b, &fifolock_write, 1, &d, NULL, NULL), ETIMEDOUT);
    CHECK_EQ(fifolock_shm_waiting(&a), 0);
    CHECK_EQ(fifolock_shm_acquire_interruptible(&b, &fifolock_read, 3, NULL, NULL, NULL), 0);
    CHECK_EQ(fifolock_shm_held(&a, &fifolock_read), 4);
    CHECK_EQ(fifolock_shm_release_n(&b, &fifolock_read, 3), 0);
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_close(&a), 0);
    CHECK_EQ(fifolock_shm_close(&b), 0);
    unlink(path);
    alarm(0);
}

/* Across processes: a child waits behind the parent and is interrupted
 * by its own SIGUSR1 handler's flag, as a language runtime would. */
static volatile sig_atomic_t got_signal;

static void on_usr1(int sig)
{
    (void)sig;
    got_signal = 1;
}

static int signal_seen(void *arg)
{
    (void)arg;
    return got_signal;
}

static void interrupted_child_process_leaves_no_trace(void)
{
    fifolock_shm a;
    pid_t pid;
    int status = -1;

    watchdog(20);
    CHECK_EQ(fifolock_shm_open(&a, fresh(), rw, 2), 0);
    CHECK_EQ(fifolock_shm_acquire(&a, &fifolock_write), 0);
    pid = fork();
    if (pid == 0) {
        fifolock_shm c;
        struct sigaction sa;
        int rc;

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_usr1;
        sigaction(SIGUSR1, &sa, NULL);
        if (fifolock_shm_open(&c, path, rw, 2) != 0)
            _exit(10);
        rc = fifolock_shm_acquire_interruptible(&c, &fifolock_read, 1, NULL, signal_seen, NULL);
        if (rc != EINTR)
            _exit(11);
        _exit(fifolock_shm_close(&c) == 0 ? 0 : 12);
    }
    CHECK_TRUE(wait_waiting(&a, 1));
    CHECK_TRUE(wait_parked(&a, 1));
    kill(pid, SIGUSR1);
    waitpid(pid, &status, 0);
    CHECK_TRUE(WIFEXITED(status));
    CHECK_EQ(WEXITSTATUS(status), 0);
    CHECK_EQ(fifolock_shm_waiting(&a), 0);
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_try_acquire(&a, &fifolock_write), 0); /* no EOWNERDEAD */
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_close(&a), 0);
    unlink(path);
    alarm(0);
}

RUN_TESTS(TEST(interrupted_wait_is_eintr_and_leaves_no_trace),
          TEST(interrupted_waiter_keeps_fifo_for_the_others),
          TEST(interrupt_racing_the_grant_ends_held_or_withdrawn),
          TEST(grant_during_the_question_wins),
          TEST(interruptible_deadline_and_bad_arguments),
          TEST(interrupted_child_process_leaves_no_trace))
