/*
 * bench_mt: the thread lock (fifolock_mt) against its anchors, side by side in
 * one process.
 *
 *   fifolock  fifolock_mt with fifolock_mutex, or fifolock_read/fifolock_write
 *   textbook  the textbook FIFO lock: a pthread mutex guarding a queue, a
 *             condition variable per waiter, direct handoff on release
 *   ticket    the textbook lock, but each request first draws a ticket with one atomic
 *             add and is served in ticket order (exclusive only: readers are
 *             served as writers). The textbook lock is FIFO only among the
 *             requests that got through its mutex, and that mutex barges; the
 *             ticket makes the order the order of arrival.
 *   spinticket  the ticket spinlock: one atomic add, then spin until served;
 *             the cheapest strict FIFO handoff while each thread has a CPU
 *             (exclusive only)
 *   mutex     pthread_mutex_t (barging, not FIFO; readers are exclusive too)
 *   rwlock    pthread_rwlock_t (not FIFO)
 *
 * Parts
 *   (1) uncontended acquire+release, with a second thread alive so glibc
 *       leaves its single-thread fast path;
 *   (2) contended throughput, 2, 3, 4 and 8 threads, exclusive: (a) an
 *       empty critical section, back to back; (b) about 0.2 us of work inside
 *       and 0.2 us outside. Median of several runs, with Jain's fairness
 *       index of the per-thread operation counts;
 *   (3) per acquire, with 1, 2, 4 and 8 threads, for an exclusive, a
 *       write-heavy (20% reads) and a read-heavy (90% reads) mix: wait time
 *       (p50 / p99 / max) and Jain's index;
 *   (4) uncontended weighted requests and conversions of fifolock_mt:
 *       acquire_n + release_n of n = 1, 1000 and 10^6 on a semaphore of 10^9,
 *       and the cycles write -> convert to read -> release and upgradable ->
 *       convert to write -> release, beside acquire + release of write;
 *   (5) the floors of any lock that hands over at every release: two
 *       threads passing a turn through one word, on two CPUs (a cache-line
 *       transfer) and on one CPU (a context switch).
 *
 * Numbers from a busy machine are noise: the load average is printed at the
 * start and the end.
 *
 * Usage: bench_mt [quick] [parts=12345] [data=DIR] [gap=MS] [ms=MS] [threads=N] [locks=a,b] [spin=N] [yield=N] [behind=N] [nudge=0|1]
 *                 [shared=NS] [defer=N]
 *   quick        one short run of each, for a smoke test
 *   data=DIR     also write what bench/plots.py draws: DIR/throughput.dat
 *                (part 2a: threads, then the median ops/s of each lock) and
 *                DIR/waits8.dat (part 3, exclusive, 8 threads: for each lock
 *                the distribution of waits in acquire, as wait_us cdf lines)
 *   parts        which parts to run, e.g. parts=2
 *   ms=MS        the length of each contended run (default 100; quick: 20)
 *   threads=N    part 2 with only this many threads (2, 3, 4 or 8)
 *   locks=a,b    part 2 with only these locks (e.g. locks=fifolock,mutex;
 *                the others read 0)
 *   gap=MS       the quiet pause before each contended run (default 50; 0
 *                starts each run while the CPUs still run the last one's
 *                threads down, as a busy program would)
 *   spin, yield, behind, nudge, shared, defer   override how fifolock_mt
 *                waiters spin and yield before they sleep, whether a sleeping
 *                waiter is woken when it becomes the head, how long a yield
 *                must take to end the yielding, and behind how many waiters
 *                a thread yields once before it queues (0: never; see
 *                src/mt_internal.h), to explore the trade-offs
 */
#define _GNU_SOURCE
#include "fifolock_mt.h"
#include "mt_internal.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- the textbook FIFO lock ---------------------------------------------- */

struct tb_waiter {
    pthread_cond_t cv;
    int write;
    int granted;
    struct tb_waiter *next;
};

struct tb_lock {
    pthread_mutex_t m;
    int readers;
    int writer;
    struct tb_waiter *head, *tail;
};

static int tb_fits(const struct tb_lock *l, int write)
{
    return write ? !l->readers && !l->writer : !l->writer;
}

static void tb_take(struct tb_lock *l, int write)
{
    if (write)
        l->writer = 1;
    else
        l->readers++;
}

static void tb_acquire(struct tb_lock *l, int write)
{
    struct tb_waiter w;

    pthread_mutex_lock(&l->m);
    if (l->head == NULL && tb_fits(l, write)) {
        tb_take(l, write);
        pthread_mutex_unlock(&l->m);
        return;
    }
    pthread_cond_init(&w.cv, NULL);
    w.write = write;
    w.granted = 0;
    w.next = NULL;
    if (l->tail)
        l->tail->next = &w;
    else
        l->head = &w;
    l->tail = &w;
    while (!w.granted)
        pthread_cond_wait(&w.cv, &l->m);
    pthread_mutex_unlock(&l->m);
    pthread_cond_destroy(&w.cv);
}

static void tb_release(struct tb_lock *l, int write)
{
    struct tb_waiter *w;

    pthread_mutex_lock(&l->m);
    if (write)
        l->writer = 0;
    else
        l->readers--;
    while ((w = l->head) != NULL && tb_fits(l, w->write)) {
        l->head = w->next;
        if (l->head == NULL)
            l->tail = NULL;
        tb_take(l, w->write);
        w->granted = 1; /* counted before told: direct handoff */
        pthread_cond_signal(&w->cv);
    }
    pthread_mutex_unlock(&l->m);
}

/* ---- the same, served in ticket order ------------------------------------ */

#define TK_SLOTS 64 /* > the most tickets out at once (one per thread) */

struct tk_waiter {
    pthread_cond_t cv;
    unsigned long ticket;
    int granted;
};

struct tk_lock {
    pthread_mutex_t m;
    unsigned long next;    /* ticket dispenser, atomic */
    unsigned long serving; /* the ticket whose turn is next */
    int held;
    struct tk_waiter *slot[TK_SLOTS];
};

static void tk_acquire(struct tk_lock *l)
{
    unsigned long t = __atomic_fetch_add(&l->next, 1, __ATOMIC_RELAXED);
    struct tk_waiter w;

    pthread_mutex_lock(&l->m);
    if (!l->held && l->serving == t) {
        l->held = 1;
        l->serving++;
        pthread_mutex_unlock(&l->m);
        return;
    }
    pthread_cond_init(&w.cv, NULL);
    w.ticket = t;
    w.granted = 0;
    l->slot[t % TK_SLOTS] = &w;
    while (!w.granted)
        pthread_cond_wait(&w.cv, &l->m);
    pthread_mutex_unlock(&l->m);
    pthread_cond_destroy(&w.cv);
}

static void tk_release(struct tk_lock *l)
{
    struct tk_waiter *w;

    pthread_mutex_lock(&l->m);
    l->held = 0;
    w = l->slot[l->serving % TK_SLOTS];
    if (w != NULL && w->ticket == l->serving) {
        l->slot[l->serving % TK_SLOTS] = NULL;
        l->held = 1;
        l->serving++;
        w->granted = 1;
        pthread_cond_signal(&w->cv);
    }
    /* else the next ticket's owner has not reached the mutex yet; it will
     * find the lock free and its turn come */
    pthread_mutex_unlock(&l->m);
}

/* ---- the ticket spinlock: the cheapest strict FIFO handoff ---------------- */

/*
 * One atomic add draws a ticket; the holder of ticket t spins until `serving`
 * reaches t; a release is one store. With each thread on its own CPU, a
 * handoff is one cache-line transfer: the floor for any FIFO lock. With more
 * threads than CPUs it collapses: the next in line may not be running, and
 * every thread behind it burns its time slice spinning.
 */
struct ts_lock {
    unsigned next;    /* tickets drawn, atomic */
    unsigned serving; /* the ticket that may hold */
};

static void ts_acquire(struct ts_lock *l)
{
    unsigned t = __atomic_fetch_add(&l->next, 1, __ATOMIC_RELAXED);

    while (__atomic_load_n(&l->serving, __ATOMIC_ACQUIRE) != t)
        fifolock__cpu_relax();
}

static void ts_release(struct ts_lock *l)
{
    __atomic_store_n(&l->serving, __atomic_load_n(&l->serving, __ATOMIC_RELAXED) + 1,
                     __ATOMIC_RELEASE);
}

/* ---- the locks behind one interface ------------------------------------- */

enum kind { FIFOLOCK, TEXTBOOK, TICKET, SPINTICKET, MUTEX, RWLOCK, N_KINDS };
static const char *const kind_name[N_KINDS] = { "fifolock", "textbook", "ticket", "spinticket",
                                                "mutex",    "rwlock" };

static fifolock_mt fl;
static struct tb_lock tb = { PTHREAD_MUTEX_INITIALIZER, 0, 0, NULL, NULL };
static struct tk_lock tk = { PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, { NULL } };
static struct ts_lock ts __attribute__((aligned(64)));
static pthread_mutex_t pm = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t prw = PTHREAD_RWLOCK_INITIALIZER;

/* `op`: 0 = exclusive (fifolock_mutex), 1 = read, 2 = write */
static inline void lock_acquire(enum kind k, int op)
{
    switch (k) {
    case FIFOLOCK:
        fifolock_mt_acquire(&fl, op == 0   ? &fifolock_mutex
                                 : op == 1 ? &fifolock_read
                                           : &fifolock_write);
        break;
    case TEXTBOOK:
        tb_acquire(&tb, op != 1);
        break;
    case TICKET:
        tk_acquire(&tk);
        break;
    case SPINTICKET:
        ts_acquire(&ts);
        break;
    case MUTEX:
        pthread_mutex_lock(&pm);
        break;
    default:
        if (op == 1)
            pthread_rwlock_rdlock(&prw);
        else
            pthread_rwlock_wrlock(&prw);
        break;
    }
}

static inline void lock_release(enum kind k, int op)
{
    switch (k) {
    case FIFOLOCK:
        fifolock_mt_release(&fl, op == 0   ? &fifolock_mutex
                                 : op == 1 ? &fifolock_read
                                           : &fifolock_write);
        break;
    case TEXTBOOK:
        tb_release(&tb, op != 1);
        break;
    case TICKET:
        tk_release(&tk);
        break;
    case SPINTICKET:
        ts_release(&ts);
        break;
    case MUTEX:
        pthread_mutex_unlock(&pm);
        break;
    default:
        pthread_rwlock_unlock(&prw);
        break;
    }
}

/* Whether `op` holds the lock alone under lock kind `k`. */
static int exclusive(enum kind k, int op)
{
    return op != 1 || k == TICKET || k == SPINTICKET || k == MUTEX;
}

/* ---- time and statistics ------------------------------------------------- */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static inline uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Wait-time histogram: 16 buckets per power of two of nanoseconds. */
#define HB_SUB 16
#define HB_N (64 * HB_SUB)
struct histo {
    uint64_t n[HB_N];
    uint64_t max;
};

static int hb_index(uint64_t ns)
{
    int e;
    if (ns < HB_SUB)
        return (int)ns;
    e = 63 - __builtin_clzll(ns); /* ns in [2^e, 2^(e+1)) */
    return e * HB_SUB + (int)((ns >> (e - 4)) & (HB_SUB - 1));
}

static double hb_value(int i)
{
    int e = i / HB_SUB, sub = i % HB_SUB;
    if (i < HB_SUB)
        return i;
    return (1.0 + (sub + 0.5) / HB_SUB) * (double)(1ull << e);
}

static double hb_percentile(const struct histo *h, double p)
{
    uint64_t total = 0, seen = 0, want;
    int i;
    for (i = 0; i < HB_N; i++)
        total += h->n[i];
    if (total == 0)
        return 0;
    want = (uint64_t)(p * (double)total);
    if ((double)want < p * (double)total)
        want++;
    for (i = 0; i < HB_N; i++) {
        seen += h->n[i];
        if (seen >= want)
            return hb_value(i);
    }
    return (double)h->max;
}

/* ---- contended runs ------------------------------------------------------ */

#define MAX_THREADS 8

struct worker {
    pthread_t tid;
    enum kind kind;
    int read_pct; /* -1: every request exclusive (fifolock_mutex) */
    int timed;    /* record wait times and overtakes */
    int work_in, work_out;
    unsigned seed;
    uint64_t ops;
    uint64_t handoffs; /* exclusive holds taken right after another thread's */
    struct histo *h;
    char pad[64];
};

static volatile int stop;
static long gap_ms = 50; /* gap=MS: the quiet gap before each contended run */
static long run_ms;       /* ms=MS: the length of each run (0: the default) */
static int only_threads;  /* threads=N: part 2 with N threads only (0: all counts) */
static const char *only_locks; /* locks=a,b: part 2 runs only these (NULL: all) */

/* Whether part 2 runs lock kind `k` (locks=). */
static int chosen(int k)
{
    const char *p = only_locks;
    size_t n = strlen(kind_name[k]);

    if (p == NULL)
        return 1;
    for (; (p = strstr(p, kind_name[k])) != NULL; p += n)
        if ((p == only_locks || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
            return 1;
    return 0;
}
static pthread_barrier_t start_line;
static unsigned long shared_counter; /* the critical section's work */
static const struct worker *last_holder; /* the last exclusive holder; under the lock */
static int writers_in, readers_in;
static int violations;

static void work(int n)
{
    volatile int i;
    for (i = 0; i < n; i++)
        ;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint64_t ops = 0;
    unsigned seed = w->seed;

    pthread_barrier_wait(&start_line);
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        int op = 0;
        uint64_t t0 = 0;

        if (w->read_pct >= 0)
            op = (int)(rand_r(&seed) % 100) < w->read_pct ? 1 : 2;
        if (w->timed)
            t0 = now_ns();
        lock_acquire(w->kind, op);
        if (w->timed) {
            uint64_t d = now_ns() - t0;
            w->h->n[hb_index(d)]++;
            if (d > w->h->max)
                w->h->max = d;
        }
        if (!exclusive(w->kind, op)) {
            __atomic_fetch_add(&readers_in, 1, __ATOMIC_RELAXED);
            if (__atomic_load_n(&writers_in, __ATOMIC_RELAXED))
                __atomic_fetch_add(&violations, 1, __ATOMIC_RELAXED);
            work(w->work_in);
            __atomic_fetch_sub(&readers_in, 1, __ATOMIC_RELAXED);
        } else {
            if (__atomic_add_fetch(&writers_in, 1, __ATOMIC_RELAXED) != 1 ||
                __atomic_load_n(&readers_in, __ATOMIC_RELAXED))
                __atomic_fetch_add(&violations, 1, __ATOMIC_RELAXED);
            shared_counter++;
            if (last_holder != w) {
                w->handoffs++;
                last_holder = w;
            }
            work(w->work_in);
            __atomic_fetch_sub(&writers_in, 1, __ATOMIC_RELAXED);
        }
        lock_release(w->kind, op);
        ops++;
        work(w->work_out);
    }
    w->ops = ops;
    return NULL;
}

struct run {
    double ops_per_s;
    double jain;
    double handoffs; /* the share of exclusive holds that changed hands */
};

static struct run run_once(enum kind k, int threads, int read_pct, int work_in, int work_out,
                           double seconds, struct histo *h)
{
    struct worker ws[MAX_THREADS];
    struct run r = { 0, 0, 0 };
    double handoffs = 0;
    double sum = 0, sq = 0, t0, t1;
    int i;

    /*
     * A quiet gap first: each run starts on idle CPUs, whatever the run
     * before it left behind (the scheduler places new threads by how busy
     * the CPUs were lately).
     */
    if (gap_ms > 0)
        nanosleep(&(struct timespec){ gap_ms / 1000, (gap_ms % 1000) * 1000000L }, NULL);
    memset(ws, 0, sizeof ws);
    stop = 0;
    last_holder = NULL;
    pthread_barrier_init(&start_line, NULL, (unsigned)threads + 1);
    for (i = 0; i < threads; i++) {
        ws[i].kind = k;
        ws[i].read_pct = read_pct;
        ws[i].work_in = work_in;
        ws[i].work_out = work_out;
        ws[i].seed = 12345u + (unsigned)i * 7919u;
        ws[i].timed = h != NULL;
        if (h) {
            ws[i].h = calloc(1, sizeof *h);
            if (ws[i].h == NULL)
                abort();
        }
        pthread_create(&ws[i].tid, NULL, worker_main, &ws[i]);
    }
    pthread_barrier_wait(&start_line);
    t0 = now_s();
    usleep((useconds_t)(seconds * 1e6));
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    for (i = 0; i < threads; i++)
        pthread_join(ws[i].tid, NULL);
    t1 = now_s();
    pthread_barrier_destroy(&start_line);

    for (i = 0; i < threads; i++) {
        handoffs += (double)ws[i].handoffs;
        sum += (double)ws[i].ops;
        sq += (double)ws[i].ops * (double)ws[i].ops;
        if (h) {
            int j;
            for (j = 0; j < HB_N; j++)
                h->n[j] += ws[i].h->n[j];
            if (ws[i].h->max > h->max)
                h->max = ws[i].h->max;
            free(ws[i].h);
        }
    }
    r.ops_per_s = sum / (t1 - t0);
    r.jain = sq > 0 ? sum * sum / (threads * sq) : 1;
    r.handoffs = sum > 0 ? handoffs / sum : 0;
    return r;
}

/* ---- uncontended --------------------------------------------------------- */

static void *idle_main(void *arg)
{
    int *fd = arg;
    char c;
    while (read(fd[0], &c, 1) < 0 && errno == EINTR)
        ;
    return NULL;
}

static double uncontended_ns(enum kind k, int op, long n)
{
    double t0 = now_s(), t1;
    long i;

    for (i = 0; i < n; i++) {
        lock_acquire(k, op);
        __asm__ __volatile__("" ::: "memory");
        lock_release(k, op);
    }
    t1 = now_s();
    return (t1 - t0) / (double)n * 1e9;
}

static void print_load(const char *when)
{
    FILE *f = fopen("/proc/loadavg", "r");
    char buf[128] = "?\n";
    if (f) {
        if (fgets(buf, sizeof buf, f) == NULL)
            strcpy(buf, "?\n");
        fclose(f);
    }
    printf("load average %s: %s", when, buf);
}

/* ---- the parts ----------------------------------------------------------- */

static int quick, repeats;
static const char *data_dir; /* data=DIR: files for bench/plots.py, or NULL */

/* DIR/name for writing, or NULL (no data= given, or it can't be opened). */
static FILE *data_file(const char *name, const char *mode)
{
    char path[4096];
    FILE *f;

    if (data_dir == NULL)
        return NULL;
    snprintf(path, sizeof path, "%s/%s", data_dir, name);
    f = fopen(path, mode);
    if (f == NULL)
        perror(path);
    return f;
}
static double seconds;

static void part_uncontended(void)
{
    enum { N = 31 };
    const char *names[4] = { "fifolock_mt mutex", "pthread_mutex", "fifolock_mt read",
                             "pthread_rwlock rd" };
    const enum kind kinds[4] = { FIFOLOCK, MUTEX, FIFOLOCK, RWLOCK };
    const int ops[4] = { 0, 0, 1, 1 };
    long n = quick ? 100000 : 1000000;
    int reps = quick ? 1 : N, i, r;
    double v[4][N], lo[4], med[4];
    pthread_t idle;
    int pipefd[2];

    if (pipe(pipefd) != 0 || pthread_create(&idle, NULL, idle_main, pipefd) != 0)
        exit(1);
    for (r = 0; r < reps; r++)
        for (i = 0; i < 4; i++)
            v[i][r] = uncontended_ns(kinds[i], ops[i], n);
    printf("\n(1) uncontended acquire+release, ns: min and median of %d runs (an idle second "
           "thread lives)\n",
           reps);
    for (i = 0; i < 4; i++) {
        med[i] = median(v[i], reps); /* sorts */
        lo[i] = v[i][0];
        printf("  %-20s %6.2f %6.2f\n", names[i], lo[i], med[i]);
    }
    printf("  fifolock_mt mutex / pthread_mutex = %.2fx (median %.2fx); fifolock_mt read / "
           "pthread_rwlock = %.2fx (median %.2fx); goal <= 1.30x\n",
           lo[0] / lo[1], med[0] / med[1], lo[2] / lo[3], med[2] / med[3]);
    if (write(pipefd[1], "x", 1) != 1)
        exit(1);
    pthread_join(idle, NULL);
    close(pipefd[0]);
    close(pipefd[1]);
}

/* ---- (4) weighted requests and conversions, uncontended ------------------ */

static const fifolock_mode big_semaphore = FIFOLOCK_SEMAPHORE(1000000000);
static int weighted_errors;

static void loop_write(long n)
{
    for (long i = 0; i < n; i++)
        weighted_errors += fifolock_mt_acquire(&fl, &fifolock_write) != 0 ||
                           fifolock_mt_release(&fl, &fifolock_write) != 0;
}

static void loop_acquire_n(long n, size_t units)
{
    for (long i = 0; i < n; i++)
        weighted_errors += fifolock_mt_acquire_n(&fl, &big_semaphore, units) != 0 ||
                           fifolock_mt_release_n(&fl, &big_semaphore, units) != 0;
}

static void loop_acquire_n_1(long n)
{
    loop_acquire_n(n, 1);
}

static void loop_acquire_n_1000(long n)
{
    loop_acquire_n(n, 1000);
}

static void loop_acquire_n_1000000(long n)
{
    loop_acquire_n(n, 1000000);
}

static void loop_convert_down(long n)
{
    for (long i = 0; i < n; i++)
        weighted_errors += fifolock_mt_acquire(&fl, &fifolock_write) != 0 ||
                           fifolock_mt_convert(&fl, &fifolock_write, &fifolock_read) != 0 ||
                           fifolock_mt_release(&fl, &fifolock_read) != 0;
}

static void loop_convert_up(long n)
{
    for (long i = 0; i < n; i++)
        weighted_errors += fifolock_mt_acquire(&fl, &fifolock_upgradable) != 0 ||
                           fifolock_mt_convert(&fl, &fifolock_upgradable, &fifolock_write) != 0 ||
                           fifolock_mt_release(&fl, &fifolock_write) != 0;
}

static void part_weighted_convert(void)
{
    enum { N = 31, ROWS = 6 };
    static const struct {
        const char *name;
        void (*loop)(long n);
    } rows[ROWS] = {
        { "acquire + release, write", loop_write },
        { "acquire_n + release_n, n = 1", loop_acquire_n_1 },
        { "acquire_n + release_n, n = 1000", loop_acquire_n_1000 },
        { "acquire_n + release_n, n = 10^6", loop_acquire_n_1000000 },
        { "write, convert to read, release", loop_convert_down },
        { "upgradable, convert to write, release", loop_convert_up },
    };
    long n = quick ? 100000 : 1000000;
    int reps = quick ? 1 : N, i, r;
    double v[ROWS][N];
    pthread_t idle;
    int pipefd[2];

    if (pipe(pipefd) != 0 || pthread_create(&idle, NULL, idle_main, pipefd) != 0)
        exit(1);
    for (r = 0; r < reps; r++)
        for (i = 0; i < ROWS; i++) {
            double t0 = now_s();
            rows[i].loop(n);
            v[i][r] = (now_s() - t0) / (double)n * 1e9;
        }
    printf("\n(4) fifolock_mt, uncontended, semaphore of 10^9: ns per cycle, min and median of "
           "%d runs (an idle second thread lives)\n",
           reps);
    for (i = 0; i < ROWS; i++) {
        double med = median(v[i], reps); /* sorts */
        printf("  %-40s %7.2f %7.2f\n", rows[i].name, v[i][0], med);
    }
    if (weighted_errors)
        printf("  %d calls failed\n", weighted_errors);
    violations += weighted_errors;
    if (write(pipefd[1], "x", 1) != 1)
        exit(1);
    pthread_join(idle, NULL);
    close(pipefd[0]);
    close(pipefd[1]);
}

static void part_throughput(const char *title, int work_in, int work_out)
{
    static const int counts[] = { 2, 3, 4, 8 };
    double hand[4][N_KINDS];
    int c, i, k, r, first = 1;

    printf("\n(2%s) contended, exclusive, %s: thousand ops/s (median of %d), Jain's index\n",
           work_in ? "b" : "a", title, repeats);
    printf("  thr");
    for (k = 0; k < N_KINDS; k++)
        printf(" %14s", kind_name[k]);
    printf("   time of fifolock / of spinticket, mutex; speed / textbook\n");
    for (c = 0; c < 4; c++) {
        double med[N_KINDS], jain[N_KINDS], v[N_KINDS][16], j[N_KINDS][16], h[N_KINDS][16];
        hand[c][0] = -1;
        if (only_threads > 0 && counts[c] != only_threads)
            continue;
        /*
         * The kinds take turns within each repeat, each repeat starting with
         * the next one, so that a slow spell of a shared machine hits them
         * all alike and the ratios stay fair.
         */
        for (r = 0; r < repeats; r++)
            for (i = 0; i < N_KINDS; i++) {
                struct run x = { 0, 0, 0 };
                k = (r + i) % N_KINDS;
                if (chosen(k))
                    x = run_once((enum kind)k, counts[c], -1, work_in, work_out, seconds, NULL);
                v[k][r] = x.ops_per_s;
                j[k][r] = x.jain;
                h[k][r] = x.handoffs;
            }
        for (k = 0; k < N_KINDS; k++) {
            med[k] = median(v[k], repeats);
            jain[k] = median(j[k], repeats);
            hand[c][k] = median(h[k], repeats);
        }
        if (!work_in) {
            FILE *f = data_file("throughput.dat", first ? "w" : "a");
            if (f != NULL) {
                if (first) {
                    fprintf(f, "threads");
                    for (k = 0; k < N_KINDS; k++)
                        fprintf(f, " %s", kind_name[k]);
                    fprintf(f, "\n");
                }
                fprintf(f, "%d", counts[c]);
                for (k = 0; k < N_KINDS; k++)
                    fprintf(f, chosen(k) ? " %.0f" : " nan", med[k]);
                fprintf(f, "\n");
                fclose(f);
            }
            first = 0;
        }
        printf("  %3d", counts[c]);
        for (k = 0; k < N_KINDS; k++)
            printf(" %7.0f (%.2f)", med[k] / 1e3, jain[k]);
        printf("   %6.2fx %6.2fx %6.2fx\n", med[SPINTICKET] / med[FIFOLOCK],
               med[MUTEX] / med[FIFOLOCK], med[FIFOLOCK] / med[TEXTBOOK]);
    }
    /*
     * What the throughput mostly follows: how often the lock changes hands.
     * A strict FIFO lock hands over at every release that finds a waiter; a
     * barging one lets the releasing thread take it again.
     */
    printf("  holds that changed hands (%%, median):\n  thr");
    for (k = 0; k < N_KINDS; k++)
        printf(" %14s", kind_name[k]);
    printf("\n");
    for (c = 0; c < 4; c++) {
        if (hand[c][0] < 0)
            continue;
        printf("  %3d", counts[c]);
        for (k = 0; k < N_KINDS; k++)
            printf(" %13.1f%%", hand[c][k] * 100);
        printf("\n");
    }
}

/* Appends the distribution in `h` to DIR/waits8.dat (data=DIR): "lock wait_us cdf". */
static void write_cdf(const struct histo *h, const char *name, int first)
{
    FILE *f = data_file("waits8.dat", first ? "w" : "a");
    uint64_t total = 0, seen = 0;
    int i;

    if (f == NULL)
        return;
    for (i = 0; i < HB_N; i++)
        total += h->n[i];
    if (first)
        fprintf(f, "lock wait_us cdf\n");
    for (i = 0; i < HB_N && total != 0; i++) {
        if (h->n[i] == 0)
            continue;
        seen += h->n[i];
        fprintf(f, "%s %.4f %.6f\n", name, hb_value(i) / 1e3, (double)seen / (double)total);
    }
    fclose(f);
}

static void part_waits(void)
{
    static const int counts[] = { 1, 2, 4, 8 };
    static const struct {
        const char *name;
        int read_pct;
    } mixes[] = {
        { "exclusive", -1 },
        { "write-heavy (20% reads)", 20 },
        { "read-heavy (90% reads)", 90 },
    };
    int m, c, k;

    for (m = 0; m < 3; m++) {
        printf("\n(3) %s, empty critical section: wait in acquire p50 / p99 / max (us), "
               "Jain's index\n",
               mixes[m].name);
        printf("  thr");
        for (k = 0; k < N_KINDS; k++)
            printf(" %-27s", kind_name[k]);
        printf("\n");
        for (c = 0; c < 4; c++) {
            printf("  %3d", counts[c]);
            for (k = 0; k < N_KINDS; k++) {
                struct histo *h = calloc(1, sizeof *h);
                char cell[64];
                struct run x;
                if (h == NULL)
                    exit(1);
                x = run_once((enum kind)k, counts[c], mixes[m].read_pct, 0, 0, seconds, h);
                snprintf(cell, sizeof cell, "%.2f/%.1f/%.0f %.2f", hb_percentile(h, 0.5) / 1e3,
                         hb_percentile(h, 0.99) / 1e3, (double)h->max / 1e3, x.jain);
                printf(" %-27s", cell);
                if (m == 0 && counts[c] == 8)
                    write_cdf(h, kind_name[k], k == 0);
                free(h);
            }
            printf("\n");
        }
    }
}

/* ---- (5) the floors of a handoff ---------------------------------------- */

/*
 * Two threads pass a turn back and forth through one shared word, each
 * waiting for its turn; the time per pass is the least any lock that hands
 * over at every release can take. On two CPUs (each thread pinned to its
 * own) a pass is one cache-line transfer each way; on one CPU (both pinned
 * to CPU 0, waiting with sched_yield()) it is a context switch.
 */
static unsigned turn;
static int pin_failed; /* a thread of this run could not be pinned: it passes nothing */

struct pinger {
    pthread_t tid;
    unsigned me;
    int cpu;
    long passes;
    int yield;
    double seconds; /* from the start line to its last pass */
    int pinned;     /* it runs on `cpu` */
};

static void *pinger_main(void *arg)
{
    struct pinger *p = arg;
    cpu_set_t set;
    long i;

    CPU_ZERO(&set);
    CPU_SET(p->cpu, &set);
    p->pinned = pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
    if (!p->pinned)
        __atomic_store_n(&pin_failed, 1, __ATOMIC_RELAXED);
    pthread_barrier_wait(&start_line);
    if (__atomic_load_n(&pin_failed, __ATOMIC_RELAXED))
        return NULL;
    p->seconds = now_s();
    for (i = 0; i < p->passes; i++) {
        while (__atomic_load_n(&turn, __ATOMIC_ACQUIRE) != p->me) {
            if (p->yield)
                sched_yield();
            else
                fifolock__cpu_relax();
        }
        __atomic_store_n(&turn, 1 - p->me, __ATOMIC_RELEASE);
    }
    p->seconds = now_s() - p->seconds;
    return NULL;
}

/* ns per pass, median of `repeats` runs */
static double pass_ns(int same_cpu, long passes)
{
    double v[16];
    int r, i;

    for (r = 0; r < repeats; r++) {
        struct pinger p[2];
        turn = 0;
        pin_failed = 0;
        pthread_barrier_init(&start_line, NULL, 3);
        for (i = 0; i < 2; i++) {
            p[i] = (struct pinger){ 0, (unsigned)i, same_cpu ? 0 : i, passes, same_cpu, 0, 0 };
            pthread_create(&p[i].tid, NULL, pinger_main, &p[i]);
        }
        pthread_barrier_wait(&start_line);
        for (i = 0; i < 2; i++)
            pthread_join(p[i].tid, NULL);
        pthread_barrier_destroy(&start_line);
        if (!p[0].pinned || !p[1].pinned)
            return -1;
        v[r] = (p[0].seconds > p[1].seconds ? p[0].seconds : p[1].seconds) /
               (2.0 * (double)passes) * 1e9;
    }
    return median(v, repeats);
}

static void part_floors(void)
{
    long n = quick ? 2000 : 200000;
    double ns;

    printf("\n(5) the floors of a handoff, ns per pass (median of %d):\n", repeats);
    /* The first needs CPUs 0 and 1 (with one CPU, a pass would take a time slice). */
    ns = sysconf(_SC_NPROCESSORS_ONLN) >= 2 ? pass_ns(0, n) : -1;
    if (ns < 0)
        printf("  between two CPUs: n/a (threads can't be pinned to CPUs 0 and 1)\n");
    else
        printf("  between two CPUs (a cache-line transfer):      %8.0f\n", ns);
    ns = pass_ns(1, n / 4);
    if (ns < 0)
        printf("  on one CPU: n/a (threads can't be pinned to CPU 0)\n");
    else
        printf("  on one CPU, by sched_yield (a context switch): %8.0f\n", ns);
}

/* The fifolock_mt tuning knobs the command line may set (see the top). */
static const struct {
    const char *name; /* with its '=' */
    unsigned *knob;
} knobs[] = {
    { "spin=", &fifolock_mt__tuning.spin },
    { "yield=", &fifolock_mt__tuning.yield },
    { "behind=", &fifolock_mt__tuning.yield_behind },
    { "nudge=", &fifolock_mt__tuning.nudge },
    { "shared=", &fifolock_mt__tuning.shared_ns },
    { "defer=", &fifolock_mt__tuning.defer },
};

/* Sets the knob `arg` names ("spin=32"); 0 if it names none. */
static int set_knob(const char *arg)
{
    size_t i, n;

    for (i = 0; i < sizeof knobs / sizeof knobs[0]; i++) {
        n = strlen(knobs[i].name);
        if (strncmp(arg, knobs[i].name, n) == 0) {
            *knobs[i].knob = (unsigned)atoi(arg + n);
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *parts = "12345";
    int a;

    for (a = 1; a < argc; a++) {
        if (strcmp(argv[a], "quick") == 0)
            quick = 1;
        else if (strncmp(argv[a], "parts=", 6) == 0)
            parts = argv[a] + 6;
        else if (strncmp(argv[a], "data=", 5) == 0)
            data_dir = argv[a] + 5;
        else if (strncmp(argv[a], "gap=", 4) == 0)
            gap_ms = atol(argv[a] + 4);
        else if (strncmp(argv[a], "ms=", 3) == 0)
            run_ms = atol(argv[a] + 3);
        else if (strncmp(argv[a], "locks=", 6) == 0)
            only_locks = argv[a] + 6;
        else if (strncmp(argv[a], "threads=", 8) == 0)
            only_threads = atoi(argv[a] + 8);
        else if (!set_knob(argv[a])) {
            fprintf(stderr, "usage: %s [quick] [parts=12345] [data=DIR] [gap=MS] [ms=MS] [threads=N] [locks=a,b] [spin=N] [yield=N] [behind=N] [nudge=0|1] [shared=NS] [defer=N]\n",
                    argv[0]);
            return 2;
        }
    }
    repeats = quick ? 1 : 9;
    seconds = run_ms > 0 ? (double)run_ms / 1e3 : quick ? 0.02 : 0.1;

    fifolock_mt_init(&fl);
    printf("bench_mt: %ld CPUs, %s run, runs of %.0f ms; fifolock_mt waiters spin %u, "
           "yield %u (behind the head: %u, until one takes %u ns); defer behind %u\n",
           sysconf(_SC_NPROCESSORS_ONLN), quick ? "quick" : "full", seconds * 1e3,
           fifolock_mt__tuning.spin, fifolock_mt__tuning.yield, fifolock_mt__tuning.yield_behind,
           fifolock_mt__tuning.shared_ns, fifolock_mt__tuning.defer);
    print_load("at start");
    if (strchr(parts, '1'))
        part_uncontended();
    if (strchr(parts, '2')) {
        part_throughput("empty critical section, back to back", 0, 0);
        part_throughput("~0.2 us inside, ~0.2 us outside", 300, 300);
    }
    if (strchr(parts, '3'))
        part_waits();
    if (strchr(parts, '4'))
        part_weighted_convert();
    if (strchr(parts, '5'))
        part_floors();
    printf("\ninvariant violations seen: %d (must be 0; counter %lu)\n", violations,
           shared_counter);
    print_load("at end");
    fifolock_mt_destroy(&fl);
    return violations != 0;
}
