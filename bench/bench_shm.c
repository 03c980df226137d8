/*
 * The shared-memory lock against its anchors, side by side in one run:
 *
 *   uncontended  acquire+release in one process, ns per pair: fifolock_shm
 *                (write; read) against a process-shared robust
 *                pthread_mutex and a process-shared pthread_rwlock (read).
 *   contended    two processes taking turns as fast as they can, for a
 *                fixed time, empty critical section: acquisitions per second
 *                of fifolock_shm (mutex mode), the textbook FIFO lock in
 *                shared memory (bench_mt.c's: a process-shared mutex over a
 *                queue, a condition variable per waiter, direct handoff), and a
 *                barging process-shared pthread_mutex.
 *   recovery     a holder is killed (SIGKILL) while a waiter waits: time from
 *                the kill to the waiter's EOWNERDEAD, p50 and max of 100.
 *
 * usage: bench_shm [seconds per contended run, default 0.3] [kills, default 100]
 * Speed is measured here, never asserted by the tests. A handoff is an
 * acquisition right after the other process's: on a machine whose CPUs are
 * busy with other programs the two processes often do not run at once, and
 * then every lock runs uncontended; the handoff rate shows how much
 * contention a run really had. So each contender is pinned to a CPU of its
 * own (0 and 1; BENCH_SHM_NOPIN=1 lets the scheduler place them).
 */
#define _GNU_SOURCE
#include "shm_internal.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static const fifolock_mode *modes[] = { &fifolock_mutex, &fifolock_read, &fifolock_write };
static char path[128];

struct shared {
    pthread_mutex_t robust;   /* uncontended anchor */
    pthread_rwlock_t rwlock;  /* uncontended read anchor */
    pthread_mutex_t barging;  /* contended anchor */
    pthread_mutex_t fifo_mu;  /* the textbook FIFO lock */
    pthread_cond_t tb_cv[2];
    int tb_held, tb_head, tb_tail, tb_next[2], tb_granted[2];
    volatile int go, stop;
    long counts[2];
    volatile int last;     /* the process inside last (written inside the lock) */
    long handoffs[2];      /* entries right after the other process */
};

static struct shared *sh;

static void init_shared(void)
{
    pthread_mutexattr_t ma;
    pthread_rwlockattr_t ra;
    pthread_condattr_t ca;

    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    memset(sh, 0, sizeof *sh);
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&sh->barging, &ma);
    pthread_mutex_init(&sh->fifo_mu, &ma);
    pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&sh->robust, &ma);
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setpshared(&ra, PTHREAD_PROCESS_SHARED);
    pthread_rwlock_init(&sh->rwlock, &ra);
    pthread_condattr_init(&ca);
    pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
    pthread_cond_init(&sh->tb_cv[0], &ca);
    pthread_cond_init(&sh->tb_cv[1], &ca);
    sh->tb_head = sh->tb_tail = -1;
}

/* ---- uncontended ------------------------------------------------------------ */

#define PAIRS 2000000

static double best_of(double (*fn)(void))
{
    double best = 1e30;
    int i;

    for (i = 0; i < 5; i++) {
        double ns = fn();
        if (ns < best)
            best = ns;
    }
    return best;
}

static fifolock_shm lock;

static double shm_write(void)
{
    int64_t t0 = now_ns();
    long i;

    for (i = 0; i < PAIRS; i++) {
        fifolock_shm_acquire(&lock, &fifolock_write);
        fifolock_shm_release(&lock, &fifolock_write);
    }
    return (double)(now_ns() - t0) / PAIRS;
}

static double shm_read(void)
{
    int64_t t0 = now_ns();
    long i;

    for (i = 0; i < PAIRS; i++) {
        fifolock_shm_acquire(&lock, &fifolock_read);
        fifolock_shm_release(&lock, &fifolock_read);
    }
    return (double)(now_ns() - t0) / PAIRS;
}

static double robust_mutex(void)
{
    int64_t t0 = now_ns();
    long i;

    for (i = 0; i < PAIRS; i++) {
        pthread_mutex_lock(&sh->robust);
        pthread_mutex_unlock(&sh->robust);
    }
    return (double)(now_ns() - t0) / PAIRS;
}

static double rwlock_read(void)
{
    int64_t t0 = now_ns();
    long i;

    for (i = 0; i < PAIRS; i++) {
        pthread_rwlock_rdlock(&sh->rwlock);
        pthread_rwlock_unlock(&sh->rwlock);
    }
    return (double)(now_ns() - t0) / PAIRS;
}

/* ---- contended: two processes ------------------------------------------------ */

enum kind { K_SHM, K_TEXTBOOK, K_BARGING };
static const char *kind_name[] = { "fifolock_shm (mutex mode)", "textbook FIFO (mutex+condvar)",
                                   "barging pshared mutex" };

/*
 * The textbook FIFO lock, as bench_mt.c has it, in shared memory: a
 * process-shared mutex guarding a queue, a condition variable per waiter
 * (one slot per process), direct handoff on release.
 */
static void fifo_lock(int me)
{
    pthread_mutex_lock(&sh->fifo_mu);
    if (sh->tb_head < 0 && !sh->tb_held) {
        sh->tb_held = 1;
        pthread_mutex_unlock(&sh->fifo_mu);
        return;
    }
    sh->tb_granted[me] = 0;
    sh->tb_next[me] = -1;
    if (sh->tb_tail >= 0)
        sh->tb_next[sh->tb_tail] = me;
    else
        sh->tb_head = me;
    sh->tb_tail = me;
    while (!sh->tb_granted[me])
        pthread_cond_wait(&sh->tb_cv[me], &sh->fifo_mu);
    pthread_mutex_unlock(&sh->fifo_mu);
}

static void fifo_unlock(void)
{
    int w;

    pthread_mutex_lock(&sh->fifo_mu);
    sh->tb_held = 0;
    if ((w = sh->tb_head) >= 0) {
        sh->tb_head = sh->tb_next[w];
        if (sh->tb_head < 0)
            sh->tb_tail = -1;
        sh->tb_held = 1;
        sh->tb_granted[w] = 1; /* counted before told: direct handoff */
        pthread_cond_signal(&sh->tb_cv[w]);
    }
    pthread_mutex_unlock(&sh->fifo_mu);
}

static unsigned work; /* pause instructions inside and outside the lock */

static void burn(unsigned n)
{
    while (n-- > 0)
        __asm__ __volatile__("" ::: "memory");
}

static void contender(enum kind k, int me)
{
    fifolock_shm l;
    long n = 0, handoffs = 0;

    if (!getenv("BENCH_SHM_NOPIN")) { /* each process on its own CPU: they run at once */
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(me, &set);
        sched_setaffinity(0, sizeof set, &set);
    }
    if (k == K_SHM && fifolock_shm_open(&l, path, modes, 3) != 0)
        _exit(1);
    while (!sh->go)
        ;
    while (!sh->stop) {
        switch (k) {
        case K_SHM:
            fifolock_shm_acquire(&l, &fifolock_mutex);
            handoffs += sh->last != me;
            sh->last = me;
            burn(work);
            fifolock_shm_release(&l, &fifolock_mutex);
            break;
        case K_TEXTBOOK:
            fifo_lock(me);
            handoffs += sh->last != me;
            sh->last = me;
            burn(work);
            fifo_unlock();
            break;
        case K_BARGING:
            pthread_mutex_lock(&sh->barging);
            handoffs += sh->last != me;
            sh->last = me;
            burn(work);
            pthread_mutex_unlock(&sh->barging);
            break;
        }
        n++;
        burn(work);
    }
    sh->counts[me] = n;
    sh->handoffs[me] = handoffs;
    if (k == K_SHM)
        fifolock_shm_close(&l);
    _exit(0);
}

static double last_handoffs; /* per second, of the last contended() */

static double contended(enum kind k, double seconds)
{
    pid_t p[2];
    int i;

    sh->go = 0;
    sh->stop = 0;
    sh->counts[0] = sh->counts[1] = 0;
    for (i = 0; i < 2; i++) {
        p[i] = fork();
        if (p[i] == 0)
            contender(k, i);
    }
    usleep(100000);
    sh->go = 1;
    usleep((useconds_t)(seconds * 1e6));
    sh->stop = 1;
    for (i = 0; i < 2; i++)
        waitpid(p[i], NULL, 0);
    last_handoffs = (double)(sh->handoffs[0] + sh->handoffs[1]) / seconds;
    if (getenv("BENCH_SHM_VERBOSE"))
        fprintf(stderr, "  (%s: %ld + %ld)\n", kind_name[k], sh->counts[0], sh->counts[1]);
    return (double)(sh->counts[0] + sh->counts[1]) / seconds;
}

#define REPEATS 7

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- recovery after a holder's death ------------------------------------------ */

static int cmp_ll(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void recovery(int kills)
{
    int64_t *ms = calloc((size_t)kills, sizeof *ms);
    int i, ok = 0;

    for (i = 0; i < kills; i++) {
        int pp[2];
        char c;
        pid_t holder;
        int64_t t_kill;
        struct timespec d;
        int rc;

        if (pipe(pp) != 0)
            break;
        holder = fork();
        if (holder == 0) {
            fifolock_shm l;
            close(pp[0]);
            if (fifolock_shm_open(&l, path, modes, 3) != 0)
                _exit(1);
            rc = fifolock_shm_acquire(&l, &fifolock_write);
            if (rc == EOWNERDEAD) /* an earlier round's holder: nothing to repair */
                rc = fifolock_shm_consistent(&l);
            if (rc != 0 || write(pp[1], "x", 1) != 1)
                _exit(1);
            for (;;)
                pause();
        }
        close(pp[1]); /* a holder that fails closes the pipe: EOF, not a hang */
        if (read(pp[0], &c, 1) != 1) {
            fprintf(stderr, "recovery: the holder could not take the lock\n");
            close(pp[0]);
            waitpid(holder, NULL, 0);
            break;
        }
        close(pp[0]);
        /* The waiter: this process, in another thread's place: a child. */
        {
            pid_t waiter = fork();
            if (waiter == 0) {
                fifolock_shm l;
                if (fifolock_shm_open(&l, path, modes, 3) != 0)
                    _exit(1);
                clock_gettime(CLOCK_MONOTONIC, &d);
                d.tv_sec += 5;
                rc = fifolock_shm_timed_acquire(&l, &fifolock_write, &d);
                sh->counts[1] = now_ns();
                if (rc == EOWNERDEAD) { /* the data needs no repair: say so */
                    fifolock_shm_consistent(&l);
                    fifolock_shm_release(&l, &fifolock_write);
                }
                fifolock_shm_close(&l);
                _exit(rc == EOWNERDEAD ? 0 : 1);
            }
            usleep(30000 + (useconds_t)(rand() % 20000)); /* it sleeps, at a random phase */
            t_kill = now_ns();
            kill(holder, SIGKILL);
            waitpid(holder, NULL, 0);
            waitpid(waiter, &rc, 0);
            if (WIFEXITED(rc) && WEXITSTATUS(rc) == 0)
                ms[ok++] = sh->counts[1] - t_kill;
        }
    }
    qsort(ms, (size_t)ok, sizeof *ms, cmp_ll);
    if (ok > 0)
        printf("recovery after a holder's SIGKILL (%d kills): p50 %.1f ms, max %.1f ms\n", ok,
               (double)ms[ok / 2] / 1e6, (double)ms[ok - 1] / 1e6);
    free(ms);
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 0.3;
    double load[3];
    int kills = argc > 2 ? atoi(argv[2]) : 100;
    double w, r, m, rw, c[3];
    int k;

    /* Tuning knobs for experiments: BENCH_SHM_SPIN, _YIELD, _LOCK_SPIN. */
    if (getenv("BENCH_SHM_SPIN"))
        fifolock_shm__tuning.spin = (unsigned)atoi(getenv("BENCH_SHM_SPIN"));
    if (getenv("BENCH_SHM_YIELD"))
        fifolock_shm__tuning.yield = (unsigned)atoi(getenv("BENCH_SHM_YIELD"));
    if (getenv("BENCH_SHM_LOCK_SPIN"))
        fifolock_shm__tuning.lock_spin = (unsigned)atoi(getenv("BENCH_SHM_LOCK_SPIN"));
    snprintf(path, sizeof path, "/tmp/bench-shm-%d", (int)getpid());
    unlink(path);
    init_shared();
    if (fifolock_shm_open(&lock, path, modes, 3) != 0) {
        fprintf(stderr, "bench_shm: cannot open %s\n", path);
        return 1;
    }
    if (getenv("BENCH_SHM_CONTENDED_ONLY")) {
        fifolock_shm_close(&lock);
        c[0] = contended(K_SHM, seconds);
        printf("  %-30s %10.0f /s\n", kind_name[0], c[0]);
        return 0;
    }
    if (getloadavg(load, 3) == 3)
        printf("load average at the start: %.2f %.2f %.2f (2 CPUs: numbers from a busy "
               "machine are noise)\n", load[0], load[1], load[2]);
    w = best_of(shm_write);
    m = best_of(robust_mutex);
    r = best_of(shm_read);
    rw = best_of(rwlock_read);
    printf("uncontended acquire+release (best of 5 x %d):\n", PAIRS);
    printf("  fifolock_shm write        %6.1f ns   robust pshared mutex %6.1f ns   ratio %.2f\n",
           w, m, w / m);
    printf("  fifolock_shm read         %6.1f ns   pshared rwlock read  %6.1f ns   ratio %.2f\n",
           r, rw, r / rw);
    fifolock_shm_close(&lock);

    for (int part = 0; part < 2; part++) {
        double runs[3][REPEATS], hand[3][REPEATS];
        int rep;

        work = part == 0 ? 0 : 200; /* about 0.2 us inside and as much outside */
        printf("contended, 2 processes, %s, median of %d runs of %.2f s, the kinds taking "
               "turns:\n", part == 0 ? "empty critical section" : "~0.2 us inside and outside",
               REPEATS, seconds);
        for (rep = 0; rep < REPEATS; rep++)
            for (k = 0; k < 3; k++) {
                runs[k][rep] = contended((enum kind)k, seconds);
                hand[k][rep] = last_handoffs;
            }
        for (k = 0; k < 3; k++) {
            qsort(runs[k], REPEATS, sizeof runs[k][0], cmp_double);
            qsort(hand[k], REPEATS, sizeof hand[k][0], cmp_double);
            c[k] = runs[k][REPEATS / 2];
            printf("  %-30s %10.0f /s  (min %.0f, max %.0f); handoffs %.0f /s\n", kind_name[k],
                   c[k], runs[k][0], runs[k][REPEATS - 1], hand[k][REPEATS / 2]);
        }
        printf("  fifolock_shm / textbook FIFO: %.1fx; / barging mutex: %.2fx\n", c[0] / c[1],
               c[0] / c[2]);
    }
    recovery(kills);
    if (getloadavg(load, 3) == 3)
        printf("load average at the end: %.2f %.2f %.2f\n", load[0], load[1], load[2]);
    unlink(path);
    return 0;
}
