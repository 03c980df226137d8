/*
 * The shared-memory lock's interruptible waits and conversions (src/shm.c):
 * a wait that its question ends leaves the queue without a trace and
 * returns EINTR, and a grant that races the question wins, never both; a
 * conversion switches at once when it fits, else waits ahead of every
 * waiter of every process keeping its old mode, one at a time per lock,
 * and a converter that dies leaves the lock usable. Threads of one process
 * and real processes (fork + SIGKILL); each child reports through a pipe
 * and its exit status, main checks.
 */
#define _GNU_SOURCE
#include "check.h"
#include "deadline.h"
#include "shm_internal.h"

#include <errno.h>
#include <poll.h>
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


/* ---- conversions ----------------------------------------------------------- */

static const fifolock_mode *rwu[] = { &fifolock_read, &fifolock_write, &fifolock_upgradable };

static bool never_pred(const fifolock_mode *self, const fifolock_holds *holds)
{
    (void)self;
    (void)holds;
    return false;
}

static const fifolock_mode nobody = { never_pred, "nobody", 0 };

/*
 * A child process that talks with the parent over two pipes: it says one
 * byte at each step, and waits for a byte to go on.
 */
struct kid {
    pid_t pid;
    int up[2];   /* kid -> parent */
    int down[2]; /* parent -> kid */
};

static void kid_say(struct kid *k, char c)
{
    if (write(k->up[1], &c, 1) != 1)
        _exit(40);
}

static char kid_hear(struct kid *k)
{
    char c = 0;

    if (read(k->down[0], &c, 1) != 1)
        _exit(41);
    return c;
}

/* The parent: the kid's next byte, or 0 after 5 s. */
static char kid_expect(struct kid *k)
{
    struct pollfd p = { k->up[0], POLLIN, 0 };
    char c = 0;

    if (poll(&p, 1, 5000) != 1 || read(k->up[0], &c, 1) != 1)
        return 0;
    return c;
}

/* Whether the kid says nothing for `ms`. */
static int kid_silent(struct kid *k, int ms)
{
    struct pollfd p = { k->up[0], POLLIN, 0 };

    return poll(&p, 1, ms) == 0;
}

static void kid_tell(struct kid *k, char c)
{
    (void)!write(k->down[1], &c, 1);
}

static void kid_start(struct kid *k, void (*fn)(struct kid *))
{
    if (pipe(k->up) != 0 || pipe(k->down) != 0) {
        k->pid = -1;
        return;
    }
    k->pid = fork();
    if (k->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(k->up[0]);
        close(k->down[1]);
        fn(k);
        _exit(0);
    }
    close(k->up[1]);
    close(k->down[0]);
}

/* The kid's exit status (0: all went as it expected), or -SIGNAL. */
static int kid_end(struct kid *k)
{
    int status = 0;

    waitpid(k->pid, &status, 0);
    close(k->up[0]);
    close(k->down[1]);
    if (WIFSIGNALED(status))
        return -WTERMSIG(status);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 99;
}

struct converter {
    pthread_t tid;
    fifolock_shm *lock;
    const fifolock_mode *from, *to;
    int timed_ms; /* > 0: fifolock_shm_timed_convert */
    int rc;
};

static void *converter_main(void *arg)
{
    struct converter *c = arg;
    struct timespec d;

    if (c->timed_ms > 0) {
        d = in_ms(c->timed_ms);
        c->rc = fifolock_shm_timed_convert(c->lock, c->from, c->to, &d);
    } else {
        c->rc = fifolock_shm_convert(c->lock, c->from, c->to);
    }
    return NULL;
}

static void start_converter(struct converter *c, fifolock_shm *lock, const fifolock_mode *from,
                            const fifolock_mode *to, int timed_ms)
{
    c->lock = lock;
    c->from = from;
    c->to = to;
    c->timed_ms = timed_ms;
    c->rc = -1;
    pthread_create(&c->tid, NULL, converter_main, c);
}

struct plain {
    pthread_t tid;
    fifolock_shm *lock;
    const fifolock_mode *mode;
    int rc;
};

static void *plain_main(void *arg)
{
    struct plain *p = arg;

    p->rc = fifolock_shm_acquire(p->lock, p->mode);
    return NULL;
}

static void start_plain(struct plain *p, fifolock_shm *lock, const fifolock_mode *mode)
{
    p->lock = lock;
    p->mode = mode;
    p->rc = -1;
    pthread_create(&p->tid, NULL, plain_main, p);
}

/*
 * The rule with a conversion (src/rule.c) against the engine itself, on
 * random states of the ready-made modes: holders, one of whose holds
 * converts (waiting ahead of the queue in the engine), requests waiting
 * behind it; one holder leaves. The engine's grant loop and the rule
 * recomputed from the list must agree on who holds.
 */
static int grants_seen;

static void count_grant(fifolock_waiter *waiter, void *arg)
{
    (void)waiter;
    *(int *)arg = ++grants_seen;
}

static void rule_with_a_conversion_agrees_with_the_engine(void)
{
    static const fifolock_mode *const all[] = { &fifolock_read, &fifolock_write,
                                                &fifolock_upgradable, &fifolock_is,
                                                &fifolock_ix, &fifolock_s,
                                                &fifolock_six, &fifolock_x };
    unsigned seed = 4242, trial, compared = 0, switched = 0;

    for (trial = 0; trial < 20000; trial++) {
        fifolock engine;
        fifolock_waiter cw = FIFOLOCK_WAITER_INIT,
                        ww[3] = { FIFOLOCK_WAITER_INIT, FIFOLOCK_WAITER_INIT, FIFOLOCK_WAITER_INIT };
        int cwhen = 0, wwhen[3] = { 0, 0, 0 };
        const fifolock_mode *held[4], *to, *waiting[3];
        struct fifolock__entry list[8];
        size_t nh = 0, nw, i, gone, f, n = 0, conv, from = 0, granted = 0, expect;
        int rc;

        fifolock_init(&engine);
        for (i = 0; i < 4; i++) {
            const fifolock_mode *m = all[rand_r(&seed) % 8];

            if (fifolock_try_acquire(&engine, m) == 0)
                held[nh++] = m;
        }
        if (nh < 2)
            goto next;
        f = rand_r(&seed) % nh;
        do
            gone = rand_r(&seed) % nh;
        while (gone == f);
        to = all[rand_r(&seed) % 8];
        grants_seen = 0;
        rc = fifolock_convert(&engine, &cw, held[f], to, count_grant, &cwhen);
        if (rc != FIFOLOCK_WAITING)
            goto next; /* switched at once, or refused: nothing queues */
        nw = rand_r(&seed) % 4;
        for (i = 0; i < nw; i++) {
            waiting[i] = all[rand_r(&seed) % 8];
            CHECK_EQ(fifolock_acquire(&engine, &ww[i], waiting[i], count_grant, &wwhen[i]),
                     FIFOLOCK_WAITING);
        }
        CHECK_EQ(fifolock_release(&engine, held[gone]), 0);
        /* The same state as a list: the holders left, the conversion, the waiters. */
        for (i = 0; i < nh; i++) {
            if (i == gone)
                continue;
            if (i == f)
                from = n;
            list[n].mode = held[i];
            list[n++].n = 1;
        }
        conv = n;
        list[n].mode = to;
        list[n++].n = 1;
        for (i = 0; i < nw; i++) {
            list[n].mode = waiting[i];
            list[n++].n = 1;
        }
        CHECK_EQ(fifolock__granted_prefix_convert(list, n, conv, from, &granted), 0);
        expect = nh - 1 + (cwhen != 0);
        for (i = 0; i < nw && cwhen != 0 && wwhen[i] != 0; i++)
            expect++;
        CHECK_EQ(granted, expect);
        compared++;
        switched += cwhen != 0;
        /* the engine granted in queue order: the conversion first */
        for (i = 0; i < nw; i++)
            if (wwhen[i] != 0)
                CHECK_TRUE(cwhen != 0 && cwhen < wwhen[i]);
    next:
        /* tear down: cancel what waits, release what holds */
        if (fifolock__waiter_is_queued(&cw))
            (void)fifolock_cancel(&engine, &cw);
        for (i = 0; i < 3; i++)
            if (fifolock__waiter_is_queued(&ww[i]))
                (void)fifolock_cancel(&engine, &ww[i]);
        while (engine.holds.used > 0)
            (void)fifolock_release(&engine, engine.holds.inline_[0].mode);
        CHECK_EQ(fifolock_destroy(&engine), 0);
    }
    if (getenv("SHM_TEST_VERBOSE"))
        fprintf(stderr, "  %u compared, %u switched by the release\n", compared, switched);
    CHECK_TRUE(compared > 500 && switched > 100);
    /* Bad calls. */
    {
        struct fifolock__entry one[2] = { { &fifolock_read, 1 }, { &fifolock_write, 2 } };
        size_t g = 0;

        CHECK_EQ(fifolock__granted_prefix_convert(one, 2, 1, 1, &g), EINVAL); /* from >= conv */
        CHECK_EQ(fifolock__granted_prefix_convert(one, 2, 1, 0, &g), EINVAL); /* n != 1 */
        CHECK_EQ(fifolock__granted_prefix_convert(one, 2, 1, 0, NULL), EINVAL);
        one[1].n = 1;
        CHECK_EQ(fifolock__granted_prefix_convert(one, 2, 1, 0, &g), 0);
        CHECK_EQ(g, 2); /* the only reader becomes the writer */
        CHECK_EQ(fifolock__granted_prefix_convert(one, 2, 5, 0, &g), 0); /* no conversion */
        CHECK_EQ(g, 1);
    }
}

static void conversion_errors_change_nothing(void)
{
    fifolock_shm a, b;
    const fifolock_mode *modes[] = { &fifolock_read, &fifolock_write, &fifolock_upgradable,
                                     &nobody };
    struct timespec bad = { 0, -1 };

    watchdog(20);
    CHECK_EQ(fifolock_shm_open(&a, fresh(), modes, 4), 0);
    CHECK_EQ(fifolock_shm_open(&b, path, rw, 2), 0);
    /* Nothing held yet (not even registered in a new process: EPERM too). */
    CHECK_EQ(fifolock_shm_convert(&a, &fifolock_read, &fifolock_write), EPERM);
    CHECK_EQ(fifolock_shm_acquire(&a, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_convert(NULL, &fifolock_read, &fifolock_write), EINVAL);
    CHECK_EQ(fifolock_shm_convert(&a, NULL, &fifolock_write), EINVAL);
    CHECK_EQ(fifolock_shm_convert(&a, &fifolock_read, NULL), EINVAL);
    CHECK_EQ(fifolock_shm_convert(&a, &fifolock_read, &fifolock_mutex), EINVAL); /* not opened */
    CHECK_EQ(fifolock_shm_timed_convert(&a, &fifolock_read, &fifolock_write, NULL), EINVAL);
    CHECK_EQ(fifolock_shm_timed_convert(&a, &fifolock_read, &fifolock_write, &bad), EINVAL);
    /* A mode not held, through this handle or at all. */
    CHECK_EQ(fifolock_shm_convert(&a, &fifolock_upgradable, &fifolock_write), EPERM);
    CHECK_EQ(fifolock_shm_convert(&b, &fifolock_read, &fifolock_write), EPERM);
    /* A `to` no lock ever grants: refused at once, never queued. */
    CHECK_EQ(fifolock_shm_convert(&a, &fifolock_read, &nobody), EDEADLK);
    CHECK_EQ(fifolock_shm_try_convert(&a, &fifolock_read, &nobody), EDEADLK);
    CHECK_EQ(fifolock_shm_waiting(&a), 0);
    CHECK_EQ(fifolock_shm_held(&a, &fifolock_read), 1);
    CHECK_EQ(fifolock_shm_held(&a, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_read), 0);
    /* The fast path's hold converts too (the word becomes an entry). */
    CHECK_EQ(fifolock_shm_acquire(&a, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_convert(&a, &fifolock_write, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_write), EPERM);
    CHECK_EQ(fifolock_shm_held(&b, &fifolock_read), 1);
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_try_acquire(&b, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_release(&b, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_close(&a), 0);
    CHECK_EQ(fifolock_shm_close(&b), 0);
    unlink(path);
    alarm(0);
}

/* A downgrade switches at once and lets in the readers it held back. */
static void downgrade_switches_now_and_grants_readers(void)
{
    fifolock_shm a, b;
    struct plain r1, r2, wr;

    watchdog(20);
    CHECK_EQ(fifolock_shm_open(&a, fresh(), rwu, 3), 0);
    CHECK_EQ(fifolock_shm_open(&b, path, rwu, 3), 0);
    CHECK_EQ(fifolock_shm_acquire(&a, &fifolock_write), 0);
    start_plain(&r1, &b, &fifolock_read);
    CHECK_TRUE(wait_waiting(&a, 1));
    start_plain(&wr, &b, &fifolock_write);
    CHECK_TRUE(wait_waiting(&a, 2));
    start_plain(&r2, &b, &fifolock_read);
    CHECK_TRUE(wait_waiting(&a, 3));
    CHECK_EQ(fifolock_shm_convert(&a, &fifolock_write, &fifolock_read), 0);
    pthread_join(r1.tid, NULL); /* granted inside the call */
    CHECK_EQ(r1.rc, 0);
    CHECK_EQ(fifolock_shm_waiting(&a), 2); /* the writer, and the reader behind it */
    CHECK_EQ(fifolock_shm_held(&a, &fifolock_read), 2);
    CHECK_EQ(fifolock_shm_held(&a, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_release(&b, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_read), 0);
    pthread_join(wr.tid, NULL);
    CHECK_EQ(wr.rc, 0);
    CHECK_EQ(fifolock_shm_release(&b, &fifolock_write), 0);
    pthread_join(r2.tid, NULL);
    CHECK_EQ(r2.rc, 0);
    CHECK_EQ(fifolock_shm_release(&b, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_waiting(&a), 0);
    CHECK_EQ(fifolock_shm_close(&a), 0);
    CHECK_EQ(fifolock_shm_close(&b), 0);
    unlink(path);
    alarm(0);
}

/*
 * A child holds upgradable and converts to write while the parent reads and
 * a writer (a thread of the parent) waits: the conversion waits ahead of the
 * writer and is granted first when the reader leaves.
 */
static void upgrader_main(struct kid *k)
{
    fifolock_shm c;

    if (fifolock_shm_open(&c, path, rwu, 3) != 0)
        _exit(10);
    if (fifolock_shm_acquire(&c, &fifolock_upgradable) != 0)
        _exit(11);
    kid_say(k, 'u');
    kid_hear(k);
    kid_say(k, 'c'); /* about to convert */
    if (fifolock_shm_convert(&c, &fifolock_upgradable, &fifolock_write) != 0)
        _exit(12);
    kid_say(k, 'w');
    kid_hear(k);
    if (fifolock_shm_release(&c, &fifolock_write) != 0)
        _exit(13);
    if (fifolock_shm_release(&c, &fifolock_upgradable) != EPERM)
        _exit(14);
    _exit(fifolock_shm_close(&c) == 0 ? 0 : 15);
}

static void upgrade_waits_ahead_of_a_waiting_writer(void)
{
    fifolock_shm a, b;
    struct kid k;
    struct plain wr;

    watchdog(30);
    CHECK_EQ(fifolock_shm_open(&a, fresh(), rwu, 3), 0);
    CHECK_EQ(fifolock_shm_open(&b, path, rwu, 3), 0);
    CHECK_EQ(fifolock_shm_acquire(&a, &fifolock_read), 0);
    kid_start(&k, upgrader_main);
    CHECK_EQ(kid_expect(&k), 'u');
    start_plain(&wr, &b, &fifolock_write);
    CHECK_TRUE(wait_waiting(&a, 1));
    kid_tell(&k, 'g');
    CHECK_EQ(kid_expect(&k), 'c');
    CHECK_TRUE(wait_waiting(&a, 2)); /* the conversion waits too */
    CHECK_TRUE(kid_silent(&k, 100));
    CHECK_EQ(fifolock_shm_held(&a, &fifolock_upgradable), 1); /* kept while it waits */
    /* A new reader queues behind both, though read fits the holders. */
    CHECK_EQ(fifolock_shm_try_acquire(&b, &fifolock_read), EBUSY);
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_read), 0);
    CHECK_EQ(kid_expect(&k), 'w');
    CHECK_EQ(fifolock_shm_held(&a, &fifolock_write), 1);
    CHECK_EQ(fifolock_shm_held(&a, &fifolock_upgradable), 0);
    CHECK_EQ(fifolock_shm_waiting(&a), 1);
    CHECK_EQ(wr.rc, -1); /* the writer still waits */
    kid_tell(&k, 'r');
    CHECK_EQ(kid_end(&k), 0);
    pthread_join(wr.tid, NULL);
    CHECK_EQ(wr.rc, 0);
    CHECK_EQ(fifolock_shm_release(&b, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_close(&a), 0);
    CHECK_EQ(fifolock_shm_close(&b), 0);
    unlink(path);
    alarm(0);
}

/*
 * Two readers in two processes both upgrade read -> write: the first waits
 * for the second to leave, the second is refused (EDEADLK) and keeps read.
 */
static void read_upgrader_main(struct kid *k)
{
    fifolock_shm c;

    if (fifolock_shm_open(&c, path, rwu, 3) != 0)
        _exit(10);
    if (fifolock_shm_acquire(&c, &fifolock_read) != 0)
        _exit(11);
    kid_say(k, 'r');
    if (fifolock_shm_convert(&c, &fifolock_read, &fifolock_write) != 0)
        _exit(12);
    kid_say(k, 'w');
    if (fifolock_shm_release(&c, &fifolock_write) != 0)
        _exit(13);
    _exit(fifolock_shm_close(&c) == 0 ? 0 : 15);
}

static void second_waiting_conversion_is_edeadlk(void)
{
    fifolock_shm a;
    struct kid k;
    struct timespec d;

    watchdog(30);
    CHECK_EQ(fifolock_shm_open(&a, fresh(), rwu, 3), 0);
    CHECK_EQ(fifolock_shm_acquire(&a, &fifolock_read), 0);
    kid_start(&k, read_upgrader_main);
    CHECK_EQ(kid_expect(&k), 'r');
    CHECK_TRUE(wait_waiting(&a, 1)); /* its conversion waits for our read */
    CHECK_EQ(fifolock_shm_convert(&a, &fifolock_read, &fifolock_write), EDEADLK);
    d = in_ms(50);
    CHECK_EQ(fifolock_shm_timed_convert(&a, &fifolock_read, &fifolock_write, &d), EDEADLK);
    CHECK_EQ(fifolock_shm_try_convert(&a, &fifolock_read, &fifolock_write), EBUSY);
    CHECK_EQ(fifolock_shm_waiting(&a), 1);
    CHECK_EQ(fifolock_shm_held(&a, &fifolock_read), 2);
    CHECK_TRUE(kid_silent(&k, 50));
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_read), 0);
    CHECK_EQ(kid_expect(&k), 'w');
    CHECK_EQ(kid_end(&k), 0);
    CHECK_EQ(fifolock_shm_waiting(&a), 0);
    CHECK_EQ(fifolock_shm_try_acquire(&a, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_close(&a), 0);
    unlink(path);
    alarm(0);
}

/* A switch that fits is made at once even while another conversion waits
 * (the engine's rule: only a conversion that would wait is refused). */
static void switch_that_fits_is_made_while_another_waits(void)
{
    fifolock_shm a, b;
    const fifolock_mode *ix[] = { &fifolock_is, &fifolock_ix, &fifolock_s, &fifolock_x };
    struct converter c;

    watchdog(20);
    CHECK_EQ(fifolock_shm_open(&a, fresh(), ix, 4), 0);
    CHECK_EQ(fifolock_shm_open(&b, path, ix, 4), 0);
    CHECK_EQ(fifolock_shm_acquire(&a, &fifolock_ix), 0);
    CHECK_EQ(fifolock_shm_acquire(&b, &fifolock_ix), 0);
    start_converter(&c, &b, &fifolock_ix, &fifolock_x, 0); /* waits for a's IX */
    CHECK_TRUE(wait_waiting(&a, 1));
    CHECK_EQ(fifolock_shm_convert(&a, &fifolock_ix, &fifolock_is), 0); /* IS joins IX */
    CHECK_EQ(fifolock_shm_convert(&a, &fifolock_is, &fifolock_s), EDEADLK); /* S must wait */
    CHECK_EQ(fifolock_shm_held(&a, &fifolock_is), 1);
    CHECK_EQ(c.rc, -1);
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_is), 0);
    pthread_join(c.tid, NULL);
    CHECK_EQ(c.rc, 0);
    CHECK_EQ(fifolock_shm_held(&a, &fifolock_x), 1);
    CHECK_EQ(fifolock_shm_held(&a, &fifolock_ix), 0);
    CHECK_EQ(fifolock_shm_release(&b, &fifolock_x), 0);
    CHECK_EQ(fifolock_shm_close(&a), 0);
    CHECK_EQ(fifolock_shm_close(&b), 0);
    unlink(path);
    alarm(0);
}

/* One hold of a weighted request converts; the others stay. */
static void one_hold_of_a_weighted_request_converts(void)
{
    fifolock_shm a, b;
    fifolock_mode sem3 = FIFOLOCK_SEMAPHORE(3);
    const fifolock_mode *modes[] = { &fifolock_read, &fifolock_write, &sem3 };

    watchdog(20);
    CHECK_EQ(fifolock_shm_open(&a, fresh(), modes, 3), 0);
    CHECK_EQ(fifolock_shm_open(&b, path, modes, 3), 0);
    CHECK_EQ(fifolock_shm_acquire_n(&a, &sem3, 3, NULL, NULL), 0);
    CHECK_EQ(fifolock_shm_try_acquire(&b, &sem3), EBUSY);
    CHECK_EQ(fifolock_shm_convert(&a, &sem3, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_held(&b, &sem3), 2);
    CHECK_EQ(fifolock_shm_held(&b, &fifolock_read), 1);
    CHECK_EQ(fifolock_shm_try_acquire(&b, &sem3), 0); /* the permit it gave back */
    CHECK_EQ(fifolock_shm_try_acquire(&b, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_try_convert(&a, &fifolock_read, &fifolock_write), EBUSY);
    CHECK_EQ(fifolock_shm_release(&b, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_release(&b, &sem3), 0);
    /* write shares with the semaphore (another family) */
    CHECK_EQ(fifolock_shm_try_convert(&a, &fifolock_read, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_held(&b, &fifolock_write), 1);
    CHECK_EQ(fifolock_shm_held(&b, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_held(&b, &sem3), 2);
    CHECK_EQ(fifolock_shm_release_n(&a, &sem3, 2), 0);
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_waiting(&a), 0);
    CHECK_EQ(fifolock_shm_close(&a), 0);
    CHECK_EQ(fifolock_shm_close(&b), 0);
    unlink(path);
    alarm(0);
}

/* Timeout, try and a deadline already past: the caller keeps `from`, the
 * writer the conversion held back goes on. */
static void timeout_and_try_keep_from(void)
{
    fifolock_shm a, b;
    struct converter c;
    struct plain wr;
    struct timespec d;
    int never = 0;

    watchdog(20);
    CHECK_EQ(fifolock_shm_open(&a, fresh(), rwu, 3), 0);
    CHECK_EQ(fifolock_shm_open(&b, path, rwu, 3), 0);
    CHECK_EQ(fifolock_shm_acquire(&a, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_acquire(&b, &fifolock_upgradable), 0);
    CHECK_EQ(fifolock_shm_try_convert(&b, &fifolock_upgradable, &fifolock_write), EBUSY);
    d = in_ms(0);
    CHECK_EQ(fifolock_shm_timed_convert(&b, &fifolock_upgradable, &fifolock_write, &d),
             ETIMEDOUT);
    CHECK_EQ(fifolock_shm_waiting(&a), 0);
    start_converter(&c, &b, &fifolock_upgradable, &fifolock_write, 300);
    CHECK_TRUE(wait_waiting(&a, 1));
    start_plain(&wr, &a, &fifolock_write); /* behind the conversion */
    CHECK_TRUE(wait_waiting(&a, 2));
    pthread_join(c.tid, NULL);
    CHECK_EQ(c.rc, ETIMEDOUT);
    CHECK_EQ(fifolock_shm_waiting(&a), 1);
    CHECK_EQ(fifolock_shm_held(&a, &fifolock_upgradable), 1);
    CHECK_EQ(fifolock_shm_held(&a, &fifolock_write), 0);
    d = in_ms(60);
    CHECK_EQ(fifolock_shm_convert_interruptible(&b, &fifolock_upgradable, &fifolock_write, &d,
                                                flag_set, &never),
             ETIMEDOUT);
    never = 1;
    CHECK_EQ(fifolock_shm_convert_interruptible(&b, &fifolock_upgradable, &fifolock_write, NULL,
                                                flag_set, &never),
             EINTR);
    CHECK_EQ(fifolock_shm_held(&a, &fifolock_upgradable), 1);
    CHECK_EQ(fifolock_shm_release(&b, &fifolock_upgradable), 0);
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_read), 0);
    pthread_join(wr.tid, NULL);
    CHECK_EQ(wr.rc, 0);
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_write), 0);
    /* try_convert that can switch does */
    CHECK_EQ(fifolock_shm_acquire(&b, &fifolock_upgradable), 0);
    CHECK_EQ(fifolock_shm_try_convert(&b, &fifolock_upgradable, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_held(&a, &fifolock_write), 1);
    CHECK_EQ(fifolock_shm_release(&b, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_waiting(&a), 0);
    CHECK_EQ(fifolock_shm_close(&a), 0);
    CHECK_EQ(fifolock_shm_close(&b), 0);
    unlink(path);
    alarm(0);
}

/* While a conversion waits, its own hold of `from` can't be released by
 * another thread; other holds of that mode can. */
static void waiting_conversion_keeps_its_hold(void)
{
    fifolock_shm a, b;
    struct converter c;

    watchdog(20);
    CHECK_EQ(fifolock_shm_open(&a, fresh(), rwu, 3), 0);
    CHECK_EQ(fifolock_shm_open(&b, path, rwu, 3), 0);
    CHECK_EQ(fifolock_shm_acquire(&a, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_acquire(&b, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_acquire(&b, &fifolock_read), 0);
    start_converter(&c, &b, &fifolock_read, &fifolock_write, 0);
    CHECK_TRUE(wait_waiting(&a, 1));
    CHECK_EQ(fifolock_shm_release(&b, &fifolock_read), 0);   /* the other one */
    CHECK_EQ(fifolock_shm_release(&b, &fifolock_read), EPERM); /* the converted one */
    CHECK_EQ(fifolock_shm_held(&a, &fifolock_read), 2);
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_read), 0);
    pthread_join(c.tid, NULL);
    CHECK_EQ(c.rc, 0);
    CHECK_EQ(fifolock_shm_held(&a, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_release(&b, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_close(&a), 0);
    CHECK_EQ(fifolock_shm_close(&b), 0);
    unlink(path);
    alarm(0);
}

/*
 * A converter SIGKILLed while its conversion waits: its hold and its
 * conversion vanish; the writer behind it is granted once the reader
 * leaves, and told (EOWNERDEAD: upgradable is not a read-only mode).
 */
static void waiting_upgrader_main(struct kid *k)
{
    fifolock_shm c;

    if (fifolock_shm_open(&c, path, rwu, 3) != 0)
        _exit(10);
    if (fifolock_shm_acquire(&c, &fifolock_upgradable) != 0)
        _exit(11);
    kid_say(k, 'u');
    (void)fifolock_shm_convert(&c, &fifolock_upgradable, &fifolock_write);
    _exit(12); /* never: it is killed while it waits */
}

static void converter_killed_while_waiting_leaves_the_lock_usable(void)
{
    fifolock_shm a, b;
    struct kid k;
    struct plain wr;
    struct fifolock_shm_death d[2];

    watchdog(30);
    CHECK_EQ(fifolock_shm_open(&a, fresh(), rwu, 3), 0);
    CHECK_EQ(fifolock_shm_open(&b, path, rwu, 3), 0);
    CHECK_EQ(fifolock_shm_acquire(&a, &fifolock_read), 0);
    kid_start(&k, waiting_upgrader_main);
    CHECK_EQ(kid_expect(&k), 'u');
    CHECK_TRUE(wait_waiting(&a, 1));
    start_plain(&wr, &b, &fifolock_write);
    CHECK_TRUE(wait_waiting(&a, 2));
    kill(k.pid, SIGKILL);
    CHECK_EQ(kid_end(&k), -SIGKILL);
    /* Another conversion may be made now: the dead one is no more (not
     * EDEADLK, though nobody reaped it yet). */
    CHECK_EQ(fifolock_shm_convert(&a, &fifolock_read, &fifolock_upgradable), EOWNERDEAD);
    CHECK_EQ(fifolock_shm_dead_holders(&a, d, 2), 1);
    CHECK_EQ(d[0].pid, k.pid);
    CHECK_TRUE(d[0].mode == &fifolock_upgradable);
    CHECK_EQ(fifolock_shm_waiting(&a), 1); /* the writer */
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_upgradable), 0);
    pthread_join(wr.tid, NULL);
    CHECK_EQ(wr.rc, EOWNERDEAD);
    CHECK_EQ(fifolock_shm_consistent(&b), 0);
    CHECK_EQ(fifolock_shm_release(&b, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_try_acquire(&a, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_close(&a), 0);
    CHECK_EQ(fifolock_shm_close(&b), 0);
    unlink(path);
    alarm(0);
}

/* A conversion that waits after a dead one's, which nobody reaped yet: it
 * waits (the dead one waits no more), it is not refused. */
static void conversion_after_a_dead_waiting_one_waits(void)
{
    fifolock_shm a, b;
    struct kid k;
    struct converter c;
    int i;

    watchdog(30);
    CHECK_EQ(fifolock_shm_open(&a, fresh(), rwu, 3), 0);
    CHECK_EQ(fifolock_shm_open(&b, path, rwu, 3), 0);
    CHECK_EQ(fifolock_shm_acquire(&a, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_acquire(&b, &fifolock_read), 0);
    kid_start(&k, waiting_upgrader_main);
    CHECK_EQ(kid_expect(&k), 'u');
    CHECK_TRUE(wait_waiting(&a, 1));
    kill(k.pid, SIGKILL);
    CHECK_EQ(kid_end(&k), -SIGKILL);
    start_converter(&c, &a, &fifolock_read, &fifolock_write, 0);
    for (i = 0; i < 100 && c.rc == -1; i++)
        sleep_ms(1);
    CHECK_EQ(c.rc, -1); /* waits for b's read, not EDEADLK */
    CHECK_EQ(fifolock_shm_waiting(&b), 1);
    CHECK_EQ(fifolock_shm_release(&b, &fifolock_read), 0);
    pthread_join(c.tid, NULL);
    CHECK_EQ(c.rc, EOWNERDEAD); /* the dead upgradable */
    CHECK_EQ(fifolock_shm_consistent(&a), 0);
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_close(&a), 0);
    CHECK_EQ(fifolock_shm_close(&b), 0);
    unlink(path);
    alarm(0);
}

/*
 * A converter that dies after its switch was made but before its call
 * returned (crash point 6): the `from` hold it had is reported, the lock
 * goes on.
 */
static void switched_upgrader_main(struct kid *k)
{
    fifolock_shm c;

    if (fifolock_shm_open(&c, path, rwu, 3) != 0)
        _exit(10);
    if (fifolock_shm_acquire(&c, &fifolock_upgradable) != 0)
        _exit(11);
    kid_say(k, 'u');
    fifolock_shm__crash_at = 6;
    (void)fifolock_shm_convert(&c, &fifolock_upgradable, &fifolock_write);
    _exit(12);
}

static void converter_dying_as_it_switches_is_reported(void)
{
    fifolock_shm a;
    struct kid k;
    struct fifolock_shm_death d[2];

    watchdog(30);
    CHECK_EQ(fifolock_shm_open(&a, fresh(), rwu, 3), 0);
    CHECK_EQ(fifolock_shm_acquire(&a, &fifolock_read), 0);
    kid_start(&k, switched_upgrader_main);
    CHECK_EQ(kid_expect(&k), 'u');
    CHECK_TRUE(wait_waiting(&a, 1));
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_read), 0); /* the switch is made */
    CHECK_EQ(kid_end(&k), -SIGKILL);
    CHECK_EQ(fifolock_shm_acquire(&a, &fifolock_write), EOWNERDEAD);
    CHECK_EQ(fifolock_shm_dead_holders(&a, d, 2), 1);
    CHECK_EQ(d[0].pid, k.pid);
    CHECK_TRUE(d[0].mode == &fifolock_upgradable);
    CHECK_EQ(fifolock_shm_consistent(&a), 0);
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_waiting(&a), 0);
    CHECK_EQ(fifolock_shm_close(&a), 0);
    unlink(path);
    alarm(0);
}

/*
 * The releaser that makes the switch dies inside G1 between X1 (the hold
 * of `from` left) and the CAS that tells the converter (crash point 9):
 * the repair finishes the grant; nobody died holding.
 */
static void releasing_reader_main(struct kid *k)
{
    fifolock_shm c;

    if (fifolock_shm_open(&c, path, rwu, 3) != 0)
        _exit(10);
    if (fifolock_shm_acquire(&c, &fifolock_read) != 0)
        _exit(11);
    kid_say(k, 'r');
    kid_hear(k);
    fifolock_shm__crash_at = 9;
    (void)fifolock_shm_release(&c, &fifolock_read);
    _exit(12);
}

static void death_between_switch_and_grant_is_repaired(void)
{
    fifolock_shm a, b;
    struct kid k;
    struct converter c;

    watchdog(30);
    CHECK_EQ(fifolock_shm_open(&a, fresh(), rwu, 3), 0);
    CHECK_EQ(fifolock_shm_open(&b, path, rwu, 3), 0);
    kid_start(&k, releasing_reader_main);
    CHECK_EQ(kid_expect(&k), 'r');
    CHECK_EQ(fifolock_shm_acquire(&b, &fifolock_upgradable), 0);
    start_converter(&c, &b, &fifolock_upgradable, &fifolock_write, 0);
    CHECK_TRUE(wait_waiting(&a, 1));
    kid_tell(&k, 'g');
    CHECK_EQ(kid_end(&k), -SIGKILL);
    pthread_join(c.tid, NULL);
    CHECK_EQ(c.rc, 0);
    CHECK_EQ(fifolock_shm_held(&a, &fifolock_write), 1);
    CHECK_EQ(fifolock_shm_held(&a, &fifolock_upgradable), 0);
    CHECK_EQ(fifolock_shm_held(&a, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_release(&b, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_try_acquire(&a, &fifolock_write), 0); /* no report */
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_write), 0);
    CHECK_EQ(fifolock_shm_close(&a), 0);
    CHECK_EQ(fifolock_shm_close(&b), 0);
    unlink(path);
    alarm(0);
}

/* A switch made while a death is unrepaired is told, as a grant is. */
static void switch_during_owner_died_is_eownerdead(void)
{
    fifolock_shm a;
    struct kid k;

    watchdog(30);
    CHECK_EQ(fifolock_shm_open(&a, fresh(), rwu, 3), 0);
    CHECK_EQ(fifolock_shm_acquire(&a, &fifolock_read), 0);
    kid_start(&k, waiting_upgrader_main); /* holds upgradable, then waits */
    CHECK_EQ(kid_expect(&k), 'u');
    CHECK_TRUE(wait_waiting(&a, 1));
    kill(k.pid, SIGKILL);
    CHECK_EQ(kid_end(&k), -SIGKILL);
    /* The reaped upgradable is pending: the downgrade-free switch is told. */
    CHECK_EQ(fifolock_shm_convert(&a, &fifolock_read, &fifolock_write), EOWNERDEAD);
    CHECK_EQ(fifolock_shm_convert(&a, &fifolock_write, &fifolock_read), EOWNERDEAD);
    CHECK_EQ(fifolock_shm_convert(&a, &fifolock_read, &fifolock_write), EOWNERDEAD);
    CHECK_EQ(fifolock_shm_consistent(&a), 0);
    CHECK_EQ(fifolock_shm_convert(&a, &fifolock_write, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_release(&a, &fifolock_read), 0);
    CHECK_EQ(fifolock_shm_close(&a), 0);
    unlink(path);
    alarm(0);
}

RUN_TESTS(TEST(interrupted_wait_is_eintr_and_leaves_no_trace),
          TEST(interrupted_waiter_keeps_fifo_for_the_others),
          TEST(interrupt_racing_the_grant_ends_held_or_withdrawn),
          TEST(grant_during_the_question_wins),
          TEST(interruptible_deadline_and_bad_arguments),
          TEST(interrupted_child_process_leaves_no_trace),
          TEST(rule_with_a_conversion_agrees_with_the_engine),
          TEST(conversion_errors_change_nothing),
          TEST(downgrade_switches_now_and_grants_readers),
          TEST(upgrade_waits_ahead_of_a_waiting_writer),
          TEST(second_waiting_conversion_is_edeadlk),
          TEST(switch_that_fits_is_made_while_another_waits),
          TEST(one_hold_of_a_weighted_request_converts), TEST(timeout_and_try_keep_from), TEST(waiting_conversion_keeps_its_hold),
          TEST(converter_killed_while_waiting_leaves_the_lock_usable),
          TEST(conversion_after_a_dead_waiting_one_waits),
          TEST(converter_dying_as_it_switches_is_reported),
          TEST(death_between_switch_and_grant_is_repaired),
          TEST(switch_during_owner_died_is_eownerdead))
