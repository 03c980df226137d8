/*
 * The shared-memory lock under SIGKILL: worker processes (two threads each,
 * one on the process's handle, one on a handle it keeps closing and
 * reopening; half the workers use a handle inherited across fork()) hammer
 * one lock in six modes of three families, while the parent kills a random
 * worker at a random moment, hundreds of times, and starts a new one.
 *
 * Inside the critical section every thread publishes its mode on a shared
 * board and checks it against everybody else's: a conflict with a process
 * that is alive is a violation (one with a process that died is not: its
 * holds were revoked). Every acquire has a deadline of seconds: missing it
 * means the lock is stuck. Every EOWNERDEAD's report goes on the board; at
 * the end each thread killed inside its critical section must have been
 * reported, and only killed processes. Workers also die by themselves, now
 * and then, at one of the library's crash points (src/shm_internal.h),
 * inside its internal lock, so that every repair runs under load too. Workers never call CHECK; they count
 * on the board, and main checks. A second test does the same to fifolock(1)
 * and its command, killed apart (see below).
 */
#define _GNU_SOURCE
#include "check.h"
#include "deadline.h"
#include "shm_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WORKERS 4
#define THREADS 2
#define MAX_KILLS 300
#define MIN_KILLS 100
#define MAX_SECONDS 25
#define WATCHDOG_SECONDS 90 /* below the CTest timeout (tests/shm.cmake) */
#define STUCK_MS 5000
#define MAX_REPORTED 8192

static fifolock_mode sem2 = FIFOLOCK_SEMAPHORE(2);
static const fifolock_mode *modes[] = { &fifolock_read, &fifolock_write, &sem2,
                                        &fifolock_ix,   &fifolock_s,     &fifolock_x };
#define NMODES 6

/* compatible[a][b]: may a holder of a and one of b hold at once? */
static const unsigned char compatible[NMODES][NMODES] = {
    /*          read write sem ix s  x */
    /* read */ { 1, 0, 1, 1, 1, 1 },
    /* write */ { 0, 0, 1, 1, 1, 1 },
    /* sem */ { 1, 1, 1, 1, 1, 1 }, /* counted apart: at most 2 */
    /* ix */ { 1, 1, 1, 1, 0, 0 },
    /* s */ { 1, 1, 1, 0, 1, 0 },
    /* x */ { 1, 1, 1, 0, 0, 0 },
};

struct record {
    int pid;
    int in_cs; /* mode + 1 while inside, 0 outside */
    int dead;  /* set by the parent once the process was reaped */
    int reporting; /* got EOWNERDEAD, the report not on the board yet */
    int entry_no;  /* counts its entries into the critical section */
};

struct board {
    struct record rec[WORKERS][THREADS];
    long ops, ownerdead, stuck, errors, violations;
    long repairs; /* of the internal lock: deaths inside the library */
    int error_rc, error_at; /* the last error: its code and where (line) */
    int first_rc, first_at; /* the first error */
    long max_wait_ms;       /* the longest acquire that succeeded */
    long stuck_ms;          /* how long the first stuck acquire waited */
    int deaths;             /* deaths the parent has recorded so far */
    long overflowed;        /* reports of more deaths than they could name */
    int overflow_deaths;    /* board->deaths when the last one was read */
    int reported_n;
    int reported[MAX_REPORTED];
    char message[256];
};

static struct board *board;
static char path[128];

static long add(long *c, long d)
{
    return __atomic_add_fetch(c, d, __ATOMIC_SEQ_CST);
}

static void error_at(int line, int rc)
{
    if (add(&board->errors, 1) == 1) {
        __atomic_store_n(&board->first_rc, rc, __ATOMIC_SEQ_CST);
        __atomic_store_n(&board->first_at, line, __ATOMIC_SEQ_CST);
    }
    __atomic_store_n(&board->error_rc, rc, __ATOMIC_SEQ_CST);
    __atomic_store_n(&board->error_at, line, __ATOMIC_SEQ_CST);
}
#define ERROR(rc) error_at(__LINE__, (rc))

static void note(const char *msg)
{
    if (__atomic_add_fetch(&board->violations, 1, __ATOMIC_SEQ_CST) == 1)
        snprintf(board->message, sizeof board->message, "%s", msg);
}

/* Whether `pid` has died (gone, or a zombie): /proc/PID/stat's state. */
static int process_dead(int pid)
{
    char p[64], buf[512], *paren;
    FILE *f;
    size_t n;

    if (kill(pid, 0) != 0 && errno == ESRCH)
        return 1;
    snprintf(p, sizeof p, "/proc/%d/stat", pid);
    f = fopen(p, "r");
    if (f == NULL)
        return 1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    paren = strrchr(buf, ')');
    return paren == NULL || paren[1] == '\0' || paren[2] == 'Z' || paren[2] == 'X';
}

static long ms_since(const struct timespec *t)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long)(now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000;
}

static void sleep_us(long us)
{
    struct timespec t = { us / 1000000, (us % 1000000) * 1000 };

    nanosleep(&t, NULL);
}

/*
 * A semaphore holder's check: were two other living threads inside with it
 * at one instant? Collect who is inside twice: a record seen inside both
 * times with the same entry number was inside in between, so all those were
 * inside together at the end of the first collect.
 */
static int sem_overfull(int w, int t)
{
    int first[WORKERS][THREADS], a, b, together = 0;

    for (a = 0; a < WORKERS; a++)
        for (b = 0; b < THREADS; b++) {
            struct record *r = &board->rec[a][b];
            first[a][b] = __atomic_load_n(&r->in_cs, __ATOMIC_SEQ_CST) == 3
                              ? __atomic_load_n(&r->entry_no, __ATOMIC_SEQ_CST)
                              : -1;
        }
    for (a = 0; a < WORKERS; a++)
        for (b = 0; b < THREADS; b++) {
            struct record *r = &board->rec[a][b];
            if ((a == w && b == t) || first[a][b] < 0)
                continue;
            if (__atomic_load_n(&r->in_cs, __ATOMIC_SEQ_CST) == 3 &&
                __atomic_load_n(&r->entry_no, __ATOMIC_SEQ_CST) == first[a][b] &&
                !__atomic_load_n(&r->dead, __ATOMIC_SEQ_CST) && !process_dead(r->pid))
                together++;
        }
    return together >= 2;
}

/*
 * Inside the critical section: does `mode` conflict with a living holder?
 * A conflict with a process that turns out dead (within a second) is fine.
 */
static void check_exclusion(int w, int t, int mode)
{
    int sem = mode == 2;
    int i, j;

    for (i = 0; i < WORKERS; i++) {
        for (j = 0; j < THREADS; j++) {
            struct record *r = &board->rec[i][j];
            int other = __atomic_load_n(&r->in_cs, __ATOMIC_SEQ_CST), pid, k;

            if ((i == w && j == t) || other == 0)
                continue;
            if (compatible[mode][other - 1] && !(sem && other == 3))
                continue;
            if (sem && other == 3) {
                if (sem_overfull(w, t))
                    note("semaphore of 2 held by 3 living holders");
                continue;
            }
            pid = __atomic_load_n(&r->pid, __ATOMIC_SEQ_CST);
            for (k = 0; k < 1000; k++) {
                if (__atomic_load_n(&r->dead, __ATOMIC_SEQ_CST) || process_dead(pid))
                    break;
                if (__atomic_load_n(&r->in_cs, __ATOMIC_SEQ_CST) != other ||
                    __atomic_load_n(&r->pid, __ATOMIC_SEQ_CST) != pid)
                    break; /* it left while alive: they overlapped */
                sleep_us(1000);
            }
            if (!(__atomic_load_n(&r->dead, __ATOMIC_SEQ_CST) || process_dead(pid))) {
                char msg[200];
                snprintf(msg, sizeof msg, "mode %s held with %s by living pid %d",
                         modes[mode]->name, modes[other - 1]->name, pid);
                note(msg);
            }
        }
    }
}

struct thread_arg {
    int w, t;
    fifolock_shm *shared; /* the process's handle, or NULL: own handle */
};

static int was_reported(int pid)
{
    int i, n = __atomic_load_n(&board->reported_n, __ATOMIC_SEQ_CST);

    for (i = 0; i < n && i < MAX_REPORTED; i++)
        if (__atomic_load_n(&board->reported[i], __ATOMIC_SEQ_CST) == pid)
            return 1;
    return 0;
}

/* Modes whose holders only read: their deaths are never told (0 read, 4 S). */
static int read_only(int mode)
{
    return mode == 0 || mode == 4;
}

/*
 * Puts the pids an EOWNERDEAD names on the board, once each: a death is told
 * to every grant until somebody declares the data repaired.
 */
static void record_report(fifolock_shm *l)
{
    struct fifolock_shm_death d[FIFOLOCK_SHM_REPORT_MAX];
    size_t n = fifolock_shm_dead_holders(l, d, FIFOLOCK_SHM_REPORT_MAX), i;

    add(&board->ownerdead, 1);
    if (n > FIFOLOCK_SHM_REPORT_MAX) {
        /* More deaths than a report names: the others are lost. */
        add(&board->overflowed, 1);
        __atomic_store_n(&board->overflow_deaths, __atomic_load_n(&board->deaths, __ATOMIC_SEQ_CST),
                         __ATOMIC_SEQ_CST);
        n = FIFOLOCK_SHM_REPORT_MAX;
    }
    for (i = 0; i < n; i++) {
        int at;

        if (was_reported((int)d[i].pid))
            continue;
        at = __atomic_fetch_add(&board->reported_n, 1, __ATOMIC_SEQ_CST);
        if (at < MAX_REPORTED) /* atomic: other threads look for pids meanwhile */
            __atomic_store_n(&board->reported[at], (int)d[i].pid, __ATOMIC_SEQ_CST);
    }
}

static void *worker_thread(void *arg)
{
    struct thread_arg *a = arg;
    struct record *me = &board->rec[a->w][a->t];
    unsigned seed = (unsigned)getpid() * 7919u + (unsigned)a->t;
    fifolock_shm own, *l = a->shared;
    int opened = 0;

    for (;;) {
        unsigned r = (unsigned)rand_r(&seed);
        int mode = (int)(r % NMODES), rc;
        struct timespec deadline, began;
        long waited;

        if (l == NULL) {
            int orc = fifolock_shm_open(&own, path, modes, NMODES);
            if (orc != 0) {
                ERROR(orc);
                sleep_us(1000);
                continue;
            }
            l = &own;
            opened = 1;
        }
        deadline = in_ms(STUCK_MS);
        clock_gettime(CLOCK_MONOTONIC, &began);
        switch ((r >> 8) % 5) {
        case 0:
            rc = fifolock_shm_try_acquire(l, modes[mode]);
            break;
        case 1:
            rc = fifolock_shm_acquire(l, modes[mode]);
            break;
        default:
            rc = fifolock_shm_timed_acquire(l, modes[mode], &deadline);
            break;
        }
        waited = ms_since(&began);
        if (rc == EBUSY)
            continue;
        if (rc == ETIMEDOUT) {
            if (add(&board->stuck, 1) == 1)
                __atomic_store_n(&board->stuck_ms, waited, __ATOMIC_SEQ_CST);
            continue;
        }
        if (rc == 0 || rc == EOWNERDEAD) {
            long m = __atomic_load_n(&board->max_wait_ms, __ATOMIC_SEQ_CST);
            while (waited > m && !__atomic_compare_exchange_n(&board->max_wait_ms, &m, waited, 0,
                                                              __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
                ;
        }
        if (rc == EOWNERDEAD) {
            __atomic_store_n(&me->reporting, 1, __ATOMIC_SEQ_CST);
            record_report(l);
            __atomic_store_n(&me->reporting, 0, __ATOMIC_SEQ_CST);
            /* A holder that may write repairs (here: nothing to do) and says
             * so; a reader may not, and is refused. */
            rc = fifolock_shm_consistent(l);
            if (rc != (read_only(mode) ? EPERM : 0))
                ERROR(rc);
        } else if (rc != 0) {
            ERROR(rc);
            continue;
        }
        __atomic_add_fetch(&me->entry_no, 1, __ATOMIC_SEQ_CST);
        __atomic_store_n(&me->in_cs, mode + 1, __ATOMIC_SEQ_CST);
        check_exclusion(a->w, a->t, mode);
        if ((r >> 12) % 4 == 0)
            sleep_us((long)((r >> 16) % 300));
        __atomic_store_n(&me->in_cs, 0, __ATOMIC_SEQ_CST);
        rc = fifolock_shm_release(l, modes[mode]);
        if (rc != 0)
            ERROR(rc);
        add(&board->ops, 1);
        add(&board->repairs, (long)__atomic_exchange_n(&fifolock_shm__repairs, 0, __ATOMIC_SEQ_CST));
        /* Now and then the process dies by itself at one of the library's
         * crash points, inside the internal lock: the deaths a random
         * SIGKILL rarely hits. */
        if ((r >> 4) % 500 == 0)
            __atomic_store_n(&fifolock_shm__crash_at, 1 + (int)((r >> 24) % 8), __ATOMIC_SEQ_CST);
        if (opened && (r >> 20) % 16 == 0) {
            rc = fifolock_shm_close(&own);
            if (rc != 0)
                ERROR(rc);
            l = NULL;
            opened = 0;
        }
    }
    return NULL;
}

static void worker_main(int w, fifolock_shm *inherited)
{
    fifolock_shm mine;
    struct thread_arg args[THREADS];
    pthread_t tid;
    int t;

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        _exit(0);
    if (inherited == NULL) {
        int orc = fifolock_shm_open(&mine, path, modes, NMODES);
        if (orc != 0) {
            ERROR(orc);
            _exit(1);
        }
        inherited = &mine;
    }
    for (t = 0; t < THREADS; t++) {
        args[t].w = w;
        args[t].t = t;
        args[t].shared = t == 0 ? inherited : NULL;
    }
    for (t = 1; t < THREADS; t++)
        pthread_create(&tid, NULL, worker_thread, &args[t]);
    worker_thread(&args[0]);
}

static pid_t spawn(int w, fifolock_shm *parent_handle)
{
    pid_t pid;
    int t;

    for (t = 0; t < THREADS; t++) {
        board->rec[w][t].in_cs = 0;
        board->rec[w][t].dead = 0;
        board->rec[w][t].pid = 0;
        board->rec[w][t].reporting = 0;
    }
    pid = fork();
    if (pid == 0) {
        for (t = 0; t < THREADS; t++)
            __atomic_store_n(&board->rec[w][t].pid, (int)getpid(), __ATOMIC_SEQ_CST);
        worker_main(w, w % 2 ? parent_handle : NULL);
        _exit(0);
    }
    return pid;
}

#define MAX_DEATHS (MAX_KILLS * 20)
static int killed[MAX_DEATHS], must_report[MAX_DEATHS * THREADS];
static int must_at[MAX_DEATHS * THREADS]; /* death number of each must_report */
static int must_mode[MAX_DEATHS * THREADS]; /* the mode it held, and the thread */
static int nkilled, nmust;
static char last_seen[512]; /* what the parent's last acquires saw */
static int lost_after = -1; /* a report may be lost for deaths before this kill */

/* Records worker w's death (pid, already reaped): who must be reported. */
static void record_death(pid_t pid, int w)
{
    int t;

    killed[nkilled++] = pid;
    __atomic_store_n(&board->deaths, nkilled, __ATOMIC_SEQ_CST);
    for (t = 0; t < THREADS; t++) {
        /* Killed between EOWNERDEAD and writing its report on the board: the
         * deaths it was told of are known to nobody else. */
        if (__atomic_load_n(&board->rec[w][t].reporting, __ATOMIC_SEQ_CST))
            lost_after = nkilled;
        int in_cs = __atomic_load_n(&board->rec[w][t].in_cs, __ATOMIC_SEQ_CST);

        /* A holder of a read-only mode leaves nothing to repair: not told. */
        if (in_cs && !read_only(in_cs - 1)) {
            must_mode[nmust] = __atomic_load_n(&board->rec[w][t].in_cs, __ATOMIC_SEQ_CST) - 1 +
                               100 * t;
            must_at[nmust] = nkilled;
            must_report[nmust++] = pid;
        }
        __atomic_store_n(&board->rec[w][t].dead, 1, __ATOMIC_SEQ_CST);
    }
}

static void kill_worker(pid_t pid, int w)
{
    int status;

    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    record_death(pid, w);
}

/* Workers that died by themselves (at a crash point): record and replace. */
static int self_deaths;

static void reap_self_deaths(pid_t *pids, fifolock_shm *parent)
{
    pid_t pid;
    int status, w;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (w = 0; w < WORKERS; w++)
            if (pids[w] == pid)
                break;
        if (w == WORKERS)
            continue;
        if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
            ERROR(status); /* a worker never exits otherwise */
        self_deaths++;
        record_death(pid, w);
        pids[w] = spawn(w, parent);
    }
}

/*
 * A watchdog, well before the CTest timeout: a test that hangs says where
 * and with what counts, instead of being cut off.
 */
static const char *volatile phase = "starting";

static void on_alarm(int sig)
{
    char msg[400];
    int n = snprintf(msg, sizeof msg,
                     "hung in %s: %d deaths, %ld ops, stuck %ld, errors %ld (the last: %d at line "
                     "%d), violations %ld\n", phase, board->deaths, board->ops, board->stuck,
                     board->errors, board->error_rc, board->error_at, board->violations);

    (void)sig;
    if (n > 0)
        (void)write(2, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
    unlink(path); /* the workers die with us (PR_SET_PDEATHSIG) */
    _exit(1);
}

static void processes_killed_at_random_never_break_or_block_the_lock(void)
{
    fifolock_shm parent;
    pid_t pids[WORKERS];
    unsigned seed = (unsigned)time(NULL);
    struct timespec start, now;
    long last_ops = 0;
    int w, i, rc;

    snprintf(path, sizeof path, "/tmp/fifolock-torture-%d", (int)getpid());
    unlink(path);
    board = mmap(NULL, sizeof *board, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK_TRUE(board != MAP_FAILED);
    if (board == MAP_FAILED)
        return;
    memset(board, 0, sizeof *board);
    CHECK_EQ(fifolock_shm_open(&parent, path, modes, NMODES), 0);
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGALRM, on_alarm);
    alarm(WATCHDOG_SECONDS);
    phase = "the killing loop";
    for (w = 0; w < WORKERS; w++)
        pids[w] = spawn(w, &parent);
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (nkilled - self_deaths >= MAX_KILLS || now.tv_sec - start.tv_sec >= MAX_SECONDS)
            break;
        sleep_us((long)(rand_r(&seed) % 30000));
        reap_self_deaths(pids, &parent);
        if (nkilled >= MAX_DEATHS - WORKERS - 1)
            break;
        w = rand_r(&seed) % WORKERS;
        kill_worker(pids[w], w);
        pids[w] = spawn(w, &parent);
        if (nkilled % 50 == 0) {
            long ops = __atomic_load_n(&board->ops, __ATOMIC_SEQ_CST);
            CHECK_LT(last_ops, ops); /* progress between every 50 kills */
            if (ops <= last_ops)
                fprintf(stderr, "no progress between kills %d and %d (%ld s in): stuck %ld, "
                        "errors %ld\n", nkilled - 50, nkilled, (long)(now.tv_sec - start.tv_sec),
                        board->stuck, board->errors);
            last_ops = ops;
        }
    }
    reap_self_deaths(pids, &parent);
    phase = "killing the last workers";
    for (w = 0; w < WORKERS; w++) {
        kill(pids[w], SIGKILL);
        waitpid(pids[w], NULL, 0);
        record_death(pids[w], w);
    }

    /*
     * The lock is free again, and the last deaths are reported to us. A
     * grant reaps only the dead that block it, so the parent takes one mode
     * of each family that conflicts with every mode of it: write, X, and
     * both units of the semaphore. (A write alone is granted beside a dead
     * X or semaphore holder, whose death then goes untold.)
     */
    phase = "the parent's last acquires";
    {
        static const int last_mode[3] = { 1, 5, 2 }; /* write, X, semaphore */
        static const size_t last_n[3] = { 1, 1, 2 };
        int got[3], k;
        size_t len = 0;

        len += (size_t)snprintf(last_seen + len, sizeof last_seen - len, "held before:");
        for (i = 0; i < NMODES; i++)
            len += (size_t)snprintf(last_seen + len, sizeof last_seen - len, " %s %zu",
                                    modes[i]->name, fifolock_shm_held(&parent, modes[i]));
        for (k = 0; k < 3; k++) {
            struct timespec d = in_ms(2000);

            rc = fifolock_shm_acquire_n(&parent, modes[last_mode[k]], last_n[k], &d, NULL);
            got[k] = rc == 0 || rc == EOWNERDEAD;
            if (len < sizeof last_seen)
                len += (size_t)snprintf(last_seen + len, sizeof last_seen - len,
                                        "; %s: rc %d, %d deaths told", modes[last_mode[k]]->name,
                                        rc, rc == EOWNERDEAD
                                                ? (int)fifolock_shm_dead_holders(&parent, NULL, 0)
                                                : 0);
            CHECK_TRUE(got[k]);
            if (!got[k])
                fprintf(stderr, "the parent's last acquire of %s: %d\n", modes[last_mode[k]]->name,
                        rc);
            if (rc == EOWNERDEAD)
                record_report(&parent);
        }
        for (k = 0; k < 3; k++)
            if (got[k])
                CHECK_EQ(fifolock_shm_release_n(&parent, modes[last_mode[k]], last_n[k]), 0);
    }
    phase = "the parent's last checks";
    CHECK_EQ(fifolock_shm_waiting(&parent), 0);
    CHECK_EQ(fifolock_shm_close(&parent), 0);
    alarm(0);

    printf("%d kills and %d deaths at crash points in %ld s, %ld ops, %ld EOWNERDEAD, %d "
           "holders killed, %ld repairs of the internal lock, longest wait %ld ms, %ld reports "
           "too long to name every death\n", nkilled - self_deaths,
           self_deaths, (long)(now.tv_sec - start.tv_sec), board->ops, board->ownerdead, nmust,
           board->repairs + (long)fifolock_shm__repairs, board->max_wait_ms, board->overflowed);
    if (board->stuck || board->errors || board->violations)
        fprintf(stderr, "stuck %ld (the first after %ld ms), errors %ld (the first: %d at line %d, "
                "the last: %d at line %d), violations %ld\n",
                board->stuck, board->stuck_ms, board->errors, board->first_rc, board->first_at,
                board->error_rc, board->error_at, board->violations);
    CHECK_LE(MIN_KILLS, nkilled - self_deaths);
    CHECK_EQ(board->violations, 0);
    if (board->violations)
        fprintf(stderr, "first violation: %s\n", board->message);
    CHECK_EQ(board->stuck, 0);
    CHECK_EQ(board->errors, 0);
    CHECK_LT(board->reported_n, MAX_REPORTED);
    for (i = 0; i < nmust; i++) {
        if (must_at[i] < lost_after)
            continue;
        /* A report that could not name every death may have left this one out. */
        if (board->overflowed && must_at[i] <= board->overflow_deaths + WORKERS)
            continue;
        if (!was_reported(must_report[i]))
            fprintf(stderr, "pid %d died inside but was not reported (death %d of %d; reports "
                    "lost before death %d; %d pids reported; it held %s in thread %d; the "
                    "parent's last acquire: %s)\n", must_report[i], must_at[i], nkilled,
                    lost_after, board->reported_n, modes[must_mode[i] % 100]->name,
                    must_mode[i] / 100, last_seen);
        CHECK_TRUE(was_reported(must_report[i]));
    }
    for (i = 0; i < board->reported_n && i < MAX_REPORTED; i++) {
        int k, found = 0;
        for (k = 0; k < nkilled; k++)
            found |= killed[k] == board->reported[i];
        if (!found)
            fprintf(stderr, "pid %d reported dead but never killed\n", board->reported[i]);
        CHECK_TRUE(found);
    }
    unlink(path);
}

/* ---- the command line under SIGKILL --------------------------------------- */

/*
 * fifolock(1) (FIFOLOCK_TOOL, set by tests/shm.cmake) runs this very program
 * as its command, in read or write mode, a few at a time, while the parent
 * SIGKILLs now a tool, now its command. A command enters a board (a file
 * mapped by all) and checks its mode against every other living command
 * on it: a conflict means two holders, e.g. a killed tool's lock handed on
 * while its command still ran. Every tool that was not killed must end
 * with its command's status (0, or 137 for a command killed): never a
 * timeout or an error. At the end the lock must be free.
 */
#define TOOL_CELLS 256
#define TOOL_RUNNING 4
#define TOOL_SECONDS 3

struct tool_board {
    int violations;
    char message[256];
    struct {
        uint64_t word; /* pid << 8 | (mode + 1), one store; 0: free */
        int tool;      /* the command's tool (its parent), for the killer */
    } cell[TOOL_CELLS];
};

static struct tool_board *tb;

static int map_tool_board(const char *file)
{
    int fd = open(file, O_RDWR);

    if (fd < 0)
        return -1;
    tb = mmap(NULL, sizeof *tb, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    return tb == MAP_FAILED ? -1 : 0;
}

/* The command's side: this program run by fifolock, before main(). */
__attribute__((constructor)) static void tool_command(void)
{
    const char *mode_text = getenv("FIFOLOCK_TORTURE_MODE");
    const char *board_file = getenv("FIFOLOCK_TORTURE_BOARD");
    int mode, me = -1, i;
    unsigned seed;

    if (mode_text == NULL || board_file == NULL)
        return;
    if (map_tool_board(board_file) != 0)
        _exit(99);
    mode = atoi(mode_text); /* 0 read, 1 write */
    for (i = 0; i < TOOL_CELLS && me < 0; i++) {
        uint64_t was = __atomic_load_n(&tb->cell[i].word, __ATOMIC_SEQ_CST);

        /* A free cell, or one a killed command left behind. */
        if ((was == 0 || process_dead((int)(was >> 8))) &&
            __atomic_compare_exchange_n(&tb->cell[i].word, &was,
                                        (uint64_t)getpid() << 8 | (uint64_t)(mode + 1), 0,
                                        __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            me = i;
    }
    if (me < 0)
        _exit(98);
    __atomic_store_n(&tb->cell[me].tool, (int)getppid(), __ATOMIC_SEQ_CST);
    for (i = 0; i < TOOL_CELLS; i++) {
        uint64_t w = __atomic_load_n(&tb->cell[i].word, __ATOMIC_SEQ_CST);
        int pid = (int)(w >> 8), other = (int)(w & 0xff);

        if (i == me || w == 0 || (mode == 0 && other == 1))
            continue;
        if (!process_dead(pid) && __atomic_add_fetch(&tb->violations, 1, __ATOMIC_SEQ_CST) == 1)
            snprintf(tb->message, sizeof tb->message,
                     "command %d (%s, tool %d) entered while %d (%s, tool %d) ran", (int)getpid(),
                     mode ? "write" : "read", (int)getppid(), pid, other == 2 ? "write" : "read",
                     tb->cell[i].tool);
    }
    seed = (unsigned)getpid();
    sleep_us(1000 + (long)(rand_r(&seed) % 15000));
    __atomic_store_n(&tb->cell[me].word, 0, __ATOMIC_SEQ_CST);
    _exit(0);
}

/* The parent of `pid` (/proc/PID/stat), or -1. */
static int parent_of(int pid)
{
    char p[64], buf[512], *paren;
    int ppid = -1;
    FILE *f;
    size_t n;

    snprintf(p, sizeof p, "/proc/%d/stat", pid);
    f = fopen(p, "r");
    if (f == NULL)
        return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    paren = strrchr(buf, ')');
    if (paren == NULL || sscanf(paren + 1, " %*c %d", &ppid) != 1)
        return -1;
    return ppid;
}

/* Starts `tool --mode MODE --timeout 5 LOCK this-program`; returns its pid. */
static pid_t start_tool(const char *tool, const char *self, const char *lock, int mode)
{
    pid_t pid = fork();

    if (pid == 0) {
        char m[2] = { (char)('0' + mode), '\0' };

        int null = open("/dev/null", O_WRONLY);

        if (null >= 0)
            dup2(null, 2); /* "a holder died" on every grant after a kill */
        setenv("FIFOLOCK_TORTURE_MODE", m, 1);
        execl(tool, tool, "--mode", mode ? "write" : "read", "--timeout", "5", lock, self,
              (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void tool_and_command_killed_apart_never_make_two_holders(void)
{
    const char *tool = getenv("FIFOLOCK_TOOL");
    char self[4096], lock[128], board_file[128];
    pid_t running[TOOL_RUNNING] = { 0 };
    int killed_tool[TOOL_RUNNING] = { 0 }, killed_cmd[TOOL_RUNNING] = { 0 };
    unsigned seed = (unsigned)time(NULL);
    struct timespec start;
    int runs = 0, tool_kills = 0, cmd_kills = 0, stuck = 0, errors = 0, first_status = -1;
    int fd, k, status;
    ssize_t n;
    pid_t pid;

    if (tool == NULL || tool[0] == '\0') {
        printf("skipped: FIFOLOCK_TOOL is not set (no fifolock tool in this build)\n");
        return;
    }
    n = readlink("/proc/self/exe", self, sizeof self - 1);
    CHECK_TRUE(n > 0);
    if (n <= 0)
        return;
    self[n] = '\0';
    snprintf(lock, sizeof lock, "/tmp/fifolock-torture-tool-%d", (int)getpid());
    snprintf(board_file, sizeof board_file, "/tmp/fifolock-torture-board-%d", (int)getpid());
    unlink(lock);
    fd = open(board_file, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK_TRUE(fd >= 0 && ftruncate(fd, sizeof *tb) == 0);
    close(fd);
    CHECK_EQ(map_tool_board(board_file), 0);
    setenv("FIFOLOCK_TORTURE_BOARD", board_file, 1);
    /* Commands whose tool was killed become our children: we reap them. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    signal(SIGALRM, on_alarm);
    alarm(WATCHDOG_SECONDS);
    phase = "the tool's killing loop";
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (ms_since(&start) < TOOL_SECONDS * 1000) {
        for (k = 0; k < TOOL_RUNNING; k++)
            if (running[k] == 0) {
                running[k] = start_tool(tool, self, lock, (int)(rand_r(&seed) % 3 == 0));
                killed_tool[k] = killed_cmd[k] = 0;
                runs++;
            }
        sleep_us((long)(rand_r(&seed) % 10000));
        k = (int)(rand_r(&seed) % TOOL_RUNNING);
        switch (rand_r(&seed) % 4) {
        case 0: /* the tool: its command must keep the lock until it exits */
            if (running[k] > 0 && !killed_tool[k]) {
                kill(running[k], SIGKILL);
                killed_tool[k] = 1;
                tool_kills++;
            }
            break;
        case 1: { /* the command, if it runs: the tool must give the lock back */
            int c;

            for (c = 0; c < TOOL_CELLS; c++) {
                int cpid = (int)(__atomic_load_n(&tb->cell[c].word, __ATOMIC_SEQ_CST) >> 8);

                if (cpid != 0 && running[k] > 0 && parent_of(cpid) == running[k]) {
                    kill(cpid, SIGKILL);
                    killed_cmd[k] = 1;
                    cmd_kills++;
                    break;
                }
            }
            break;
        }
        default:
            break;
        }
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            for (k = 0; k < TOOL_RUNNING && running[k] != pid; k++)
                ;
            if (k == TOOL_RUNNING)
                continue; /* an orphaned command */
            running[k] = 0;
            if (killed_tool[k])
                continue;
            if (WIFEXITED(status) && WEXITSTATUS(status) == 1) {
                stuck++;
            } else if (!(WIFEXITED(status) && (WEXITSTATUS(status) == 0 ||
                                               (killed_cmd[k] && WEXITSTATUS(status) == 137)))) {
                errors++;
                if (first_status < 0)
                    first_status = status;
            }
        }
    }
    phase = "the tool's last runs";
    for (k = 0; k < TOOL_RUNNING; k++)
        if (running[k] > 0) {
            waitpid(running[k], &status, 0);
            if (!killed_tool[k] && !(WIFEXITED(status) && (WEXITSTATUS(status) == 0 ||
                                                           (killed_cmd[k] && WEXITSTATUS(status) == 137))))
                errors++;
        }
    while (waitpid(-1, &status, 0) > 0) /* the orphaned commands end by themselves */
        ;
    pid = start_tool(tool, self, lock, 1); /* the lock is free again */
    waitpid(pid, &status, 0);
    alarm(0);
    printf("%d tool runs, %d tools killed, %d commands killed, %d stuck, %d errors, %d "
           "violations\n", runs, tool_kills, cmd_kills, stuck, errors, tb->violations);
    if (tb->violations)
        fprintf(stderr, "first violation: %s\n", tb->message);
    if (first_status >= 0)
        fprintf(stderr, "first unexpected tool status: %#x\n", first_status);
    CHECK_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_EQ(tb->violations, 0);
    CHECK_EQ(stuck, 0);
    CHECK_EQ(errors, 0);
    CHECK_LE(20, tool_kills);
    prctl(PR_SET_CHILD_SUBREAPER, 0);
    unlink(lock);
    unlink(board_file);
}

RUN_TESTS(TEST(processes_killed_at_random_never_break_or_block_the_lock),
          TEST(tool_and_command_killed_apart_never_make_two_holders))
