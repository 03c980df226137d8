/*
 * bench_engine: what one call of the event-loop lock costs.
 *
 *   uncontended   try_acquire/acquire + release on an idle lock
 *   handoff       a release that grants the next queued waiter and runs its
 *                 callback (the callback only counts)
 *   grant loop    one release of a writer that grants a queue of readers:
 *                 the cost per reader granted
 *   enqueue       an acquire that has to queue
 *   cancel        withdrawing a queued waiter: the head (the grant loop runs
 *                 and finds the next head still blocked), or one in the middle
 *   weighted      acquire_n + release_n of n = 1, 1000 and 10^6 holds of a
 *                 semaphore of 10^9 (its predicate answers for n at once)
 *   convert       uncontended: write, convert down to read, release; and
 *                 upgradable, convert up to write, release (the whole cycle:
 *                 compare with try_acquire + release of write)
 *
 * Each operation is timed with clock_gettime(CLOCK_MONOTONIC) around a loop
 * of many calls; the table shows the median over several runs (and the
 * fastest and slowest), in nanoseconds per operation. Queued operations are
 * timed per batch of BATCH waiters, so the queue is set up outside the timed
 * part; the two clock reads per batch add well under 1 ns per operation.
 *
 * The bench also counts the library's allocations (through its one seam,
 * fifolock__alloc) while the measured loops run: the engine promises none
 * with up to three modes, and the bench exits 1 if it made any. Time targets are only reported: timings are noisy.
 *
 * Usage: bench_engine [-n OPS] [-r RUNS] [-c]
 *   -n  operations per run and operation (default 2000000)
 *   -r  runs; the median is reported (default 11)
 *   -c  print "<function> <operations>" per measured function and no table:
 *       bench/callgrind.sh runs this under callgrind to count instructions
 */
#define _POSIX_C_SOURCE 200809L

#include "internal.h" /* fifolock.h, and the allocation seam */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 256 /* waiters per queued batch: 16 KiB of waiters, fits L1 */

/* ---- counting allocations -------------------------------------------------- */

/*
 * Every allocation of the library goes through its one seam
 * (fifolock__alloc, src/internal.h): the bench counts them there.
 */
#define COUNT_ALLOCS 1

static unsigned long allocs; /* allocations (resizes) by the library so far */

static void *counting_alloc(void *p, size_t size)
{
    if (size == 0) {
        free(p);
        return NULL;
    }
    allocs++;
    return realloc(p, size);
}

/* ---- the measured operations ----------------------------------------------- */

static fifolock lock;
static fifolock_waiter waiters[BATCH];
static unsigned long grants; /* callbacks run */

static void die(const char *what)
{
    fprintf(stderr, "bench_engine: %s\n", what);
    exit(1);
}

static void on_granted(fifolock_waiter *waiter, void *arg)
{
    (void)waiter;
    (void)arg;
    grants++;
}

/*
 * Each op_* function is the measured part of one operation: the timer and
 * callgrind's --toggle-collect see exactly its calls. They are only called
 * through the table below, never directly, so the compiler neither inlines
 * nor clones them and their names stay what callgrind.sh asks for.
 */
#define MEASURED __attribute__((noinline))

MEASURED static size_t op_try_mutex(size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (fifolock_try_acquire(&lock, &fifolock_mutex) != 0 ||
            fifolock_release(&lock, &fifolock_mutex) != 0)
            die("uncontended mutex failed");
    return n;
}

MEASURED static size_t op_acquire_mutex(size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (fifolock_acquire(&lock, &waiters[0], &fifolock_mutex, on_granted, NULL) != 0 ||
            fifolock_release(&lock, &fifolock_mutex) != 0)
            die("uncontended mutex failed");
    return n;
}

MEASURED static size_t op_try_read(size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (fifolock_try_acquire(&lock, &fifolock_read) != 0 ||
            fifolock_release(&lock, &fifolock_read) != 0)
            die("uncontended read failed");
    return n;
}

MEASURED static size_t op_acquire_read(size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (fifolock_acquire(&lock, &waiters[0], &fifolock_read, on_granted, NULL) != 0 ||
            fifolock_release(&lock, &fifolock_read) != 0)
            die("uncontended read failed");
    return n;
}

/* Holds `mode` and queues BATCH waiters of `queued` behind it. */
static void hold_and_queue(const fifolock_mode *mode, const fifolock_mode *queued)
{
    size_t i;

    if (fifolock_try_acquire(&lock, mode) != 0)
        die("setup: lock not free");
    for (i = 0; i < BATCH; i++)
        if (fifolock_acquire(&lock, &waiters[i], queued, on_granted, NULL) != FIFOLOCK_WAITING)
            die("setup: acquire did not queue");
    grants = 0;
}

static void setup_mutex_queue(void)
{
    hold_and_queue(&fifolock_mutex, &fifolock_mutex);
}

/* Each release hands the mutex to the next waiter: BATCH grants. */
MEASURED static size_t op_handoff(size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (fifolock_release(&lock, &fifolock_mutex) != 0)
            die("handoff: release failed");
    return n;
}

static void teardown_handoff(void)
{
    if (grants != BATCH || fifolock_waiting(&lock) != 0)
        die("handoff: lost a grant");
    if (fifolock_release(&lock, &fifolock_mutex) != 0)
        die("handoff: last release failed");
}

static void setup_readers_queue(void)
{
    hold_and_queue(&fifolock_write, &fifolock_read);
}

/* One release of the writer grants all BATCH readers. */
MEASURED static size_t op_grant_readers(size_t n)
{
    if (n != BATCH || fifolock_release(&lock, &fifolock_write) != 0)
        die("grant loop: release failed");
    return n;
}

static void teardown_grant_readers(void)
{
    size_t i;

    if (grants != BATCH || fifolock_waiting(&lock) != 0)
        die("grant loop: lost a grant");
    for (i = 0; i < BATCH; i++)
        if (fifolock_release(&lock, &fifolock_read) != 0)
            die("grant loop: release failed");
}

static void setup_hold(void)
{
    if (fifolock_try_acquire(&lock, &fifolock_mutex) != 0)
        die("setup: lock not free");
}

/* Every acquire queues behind the held mutex. */
MEASURED static size_t op_enqueue(size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (fifolock_acquire(&lock, &waiters[i], &fifolock_mutex, on_granted, NULL) !=
            FIFOLOCK_WAITING)
            die("enqueue: acquire did not queue");
    return n;
}

static void teardown_enqueue(void)
{
    size_t i = BATCH;

    while (i-- > 0) /* from the tail: no grant loop */
        if (fifolock_cancel(&lock, &waiters[i]) != 0)
            die("enqueue: cancel failed");
    if (fifolock_release(&lock, &fifolock_mutex) != 0)
        die("enqueue: release failed");
}

/* Cancels the head each time; the grant loop then finds the new head blocked. */
MEASURED static size_t op_cancel_head(size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (fifolock_cancel(&lock, &waiters[i]) != 0)
            die("cancel head failed");
    return n;
}

static void teardown_cancel_head(void)
{
    if (grants != 0 || fifolock_waiting(&lock) != 0)
        die("cancel head: the queue is not empty");
    if (fifolock_release(&lock, &fifolock_mutex) != 0)
        die("cancel head: release failed");
}

/* Cancels waiters[BATCH-2] down to waiters[1]: each has a neighbour both sides. */
MEASURED static size_t op_cancel_middle(size_t n)
{
    size_t i;

    if (n != BATCH - 2)
        die("cancel middle: wrong batch");
    for (i = BATCH - 2; i >= 1; i--)
        if (fifolock_cancel(&lock, &waiters[i]) != 0)
            die("cancel middle failed");
    return n;
}

static void teardown_cancel_middle(void)
{
    if (fifolock_waiting(&lock) != 2 || fifolock_cancel(&lock, &waiters[BATCH - 1]) != 0 ||
        fifolock_cancel(&lock, &waiters[0]) != 0 || fifolock_release(&lock, &fifolock_mutex) != 0)
        die("cancel middle: teardown failed");
}

/* ---- weighted requests and conversions ------------------------------------- */

static const fifolock_mode big_semaphore = FIFOLOCK_SEMAPHORE(1000000000);

static void acquire_n_release_n(size_t n, size_t units)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (fifolock_acquire_n(&lock, &waiters[0], &big_semaphore, units, on_granted, NULL) !=
                0 ||
            fifolock_release_n(&lock, &big_semaphore, units) != 0)
            die("uncontended acquire_n failed");
}

MEASURED static size_t op_acquire_n_1(size_t n)
{
    acquire_n_release_n(n, 1);
    return n;
}

MEASURED static size_t op_acquire_n_1000(size_t n)
{
    acquire_n_release_n(n, 1000);
    return n;
}

MEASURED static size_t op_acquire_n_1000000(size_t n)
{
    acquire_n_release_n(n, 1000000);
    return n;
}

/* The baseline of the two conversion cycles below. */
MEASURED static size_t op_try_write(size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (fifolock_try_acquire(&lock, &fifolock_write) != 0 ||
            fifolock_release(&lock, &fifolock_write) != 0)
            die("uncontended write failed");
    return n;
}

MEASURED static size_t op_convert_down(size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (fifolock_try_acquire(&lock, &fifolock_write) != 0 ||
            fifolock_convert(&lock, &waiters[0], &fifolock_write, &fifolock_read, on_granted,
                             NULL) != 0 ||
            fifolock_release(&lock, &fifolock_read) != 0)
            die("downgrade failed");
    return n;
}

MEASURED static size_t op_convert_up(size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (fifolock_try_acquire(&lock, &fifolock_upgradable) != 0 ||
            fifolock_convert(&lock, &waiters[0], &fifolock_upgradable, &fifolock_write,
                             on_granted, NULL) != 0 ||
            fifolock_release(&lock, &fifolock_write) != 0)
            die("upgrade failed");
    return n;
}

/* ---- the harness ----------------------------------------------------------- */

struct bench {
    const char *label;
    const char *symbol;      /* the measured function, for callgrind.sh */
    size_t (*run)(size_t n); /* the measured part; returns operations done */
    double target_ns;        /* 0: none */
    size_t chunk;            /* operations per run() call; 0: all at once */
    void (*setup)(void);     /* before each run() call, not timed */
    void (*teardown)(void);  /* after each run() call, not timed */
};

#define OP(fn) #fn, fn

static const struct bench benches[] = {
    { "uncontended try_acquire + release, mutex", OP(op_try_mutex), 10, 0, NULL, NULL },
    { "uncontended acquire + release, mutex", OP(op_acquire_mutex), 10, 0, NULL, NULL },
    { "uncontended try_acquire + release, read", OP(op_try_read), 10, 0, NULL, NULL },
    { "uncontended acquire + release, read", OP(op_acquire_read), 10, 0, NULL, NULL },
    { "handoff: release grants next, callback", OP(op_handoff), 25, BATCH,
      setup_mutex_queue, teardown_handoff },
    { "grant loop: per reader granted", OP(op_grant_readers), 0, BATCH,
      setup_readers_queue, teardown_grant_readers },
    { "enqueue: acquire that queues", OP(op_enqueue), 0, BATCH, setup_hold, teardown_enqueue },
    { "cancel, queued head", OP(op_cancel_head), 10, BATCH, setup_mutex_queue,
      teardown_cancel_head },
    { "cancel, queued in the middle", OP(op_cancel_middle), 10, BATCH - 2, setup_mutex_queue,
      teardown_cancel_middle },
    { "acquire_n + release_n, n = 1 (sem 10^9)", OP(op_acquire_n_1), 0, 0, NULL, NULL },
    { "acquire_n + release_n, n = 1000", OP(op_acquire_n_1000), 0, 0, NULL, NULL },
    { "acquire_n + release_n, n = 10^6", OP(op_acquire_n_1000000), 0, 0, NULL, NULL },
    { "try_acquire + release, write", OP(op_try_write), 0, 0, NULL, NULL },
    { "write, convert to read, release", OP(op_convert_down), 0, 0, NULL, NULL },
    { "upgradable, convert to write, release", OP(op_convert_up), 0, 0, NULL, NULL },
};

#define N_BENCHES (sizeof benches / sizeof benches[0])

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* One run of `b`: about `ops` operations. Returns ns per operation. */
static double run_once(const struct bench *b, size_t ops, size_t *done, unsigned long *allocated)
{
    double ns = 0, t0;
    size_t n = 0;
    unsigned long a0;

    if (b->chunk == 0) {
        a0 = allocs;
        t0 = now_ns();
        n = b->run(ops);
        ns = now_ns() - t0;
        *allocated += allocs - a0;
    } else {
        while (n < ops) {
            b->setup();
            a0 = allocs;
            t0 = now_ns();
            n += b->run(b->chunk);
            ns += now_ns() - t0;
            *allocated += allocs - a0;
            b->teardown();
        }
    }
    if (fifolock_waiting(&lock) != 0 || fifolock_held_total(fifolock_holds_of(&lock)) != 0)
        die("a run left the lock busy");
    *done += n;
    return ns / (double)n;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

#if COUNT_ALLOCS
/* Proves the counter counts: a fourth mode held at once needs memory. */
static unsigned long alloc_self_test(void)
{
    static const fifolock_mode a = FIFOLOCK_SEMAPHORE(1), b = FIFOLOCK_SEMAPHORE(1),
                               c = FIFOLOCK_SEMAPHORE(1), d = FIFOLOCK_SEMAPHORE(1);
    unsigned long before = allocs;

    if (fifolock_try_acquire(&lock, &a) || fifolock_try_acquire(&lock, &b) ||
        fifolock_try_acquire(&lock, &c) || fifolock_try_acquire(&lock, &d) ||
        fifolock_release(&lock, &d) || fifolock_release(&lock, &c) ||
        fifolock_release(&lock, &b) || fifolock_release(&lock, &a))
        die("self-test failed");
    return allocs - before;
}
#endif

static void print_load(void)
{
    char buf[128] = "";
    FILE *f = fopen("/proc/loadavg", "r");

    if (f != NULL) {
        if (fgets(buf, sizeof buf, f) == NULL)
            buf[0] = '\0';
        fclose(f);
    }
    buf[strcspn(buf, "\n")] = '\0';
    printf("load average (1, 5, 15 min; runnable/total; last pid): %s\n", buf);
}

int main(int argc, char **argv)
{
    size_t ops = 2000000, runs = 11, i, r;
    int callgrind = 0, missed = 0, allocating = 0;
    double *ns;

    fifolock__alloc = counting_alloc;
    for (i = 1; i < (size_t)argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < (size_t)argc)
            ops = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "-r") == 0 && i + 1 < (size_t)argc)
            runs = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "-c") == 0)
            callgrind = 1;
        else {
            fprintf(stderr, "usage: %s [-n OPS] [-r RUNS] [-c]\n", argv[0]);
            return 2;
        }
    }
    if (ops < BATCH || runs < 1)
        die("need -n >= 256 and -r >= 1");
    ns = malloc(runs * sizeof *ns);
    if (ns == NULL)
        die("out of memory");
    fifolock_init(&lock);

    if (callgrind) {
        for (i = 0; i < N_BENCHES; i++) {
            size_t done = 0;
            unsigned long allocated = 0;
            for (r = 0; r < runs; r++)
                run_once(&benches[i], ops, &done, &allocated);
            printf("%s %zu\n", benches[i].symbol, done);
        }
        free(ns);
        return 0;
    }

    printf("fifolock engine: ns per operation, median of %zu runs of ~%zu operations\n", runs,
           ops);
    print_load();
#if COUNT_ALLOCS
    printf("allocation counter self-test: a 4th mode held at once allocated %lu time(s)\n",
           alloc_self_test());
#else
    printf("allocations are not counted in a sanitizer build\n");
#endif
    printf("\n%-42s %7s %7s %7s %9s %7s\n", "operation", "median", "min", "max", "target",
           "allocs");
    for (i = 0; i < N_BENCHES; i++) {
        const struct bench *b = &benches[i];
        size_t done = 0;
        unsigned long allocated = 0;
        char target[16] = "";
        int ok;

        run_once(b, ops, &done, &allocated); /* warm up: caches, branch predictors */
        for (r = 0; r < runs; r++)
            ns[r] = run_once(b, ops, &done, &allocated);
        qsort(ns, runs, sizeof *ns, by_value);
        ok = b->target_ns == 0 || ns[runs / 2] < b->target_ns;
        if (b->target_ns != 0)
            snprintf(target, sizeof target, "< %.0f %s", b->target_ns, ok ? "ok" : "MISS");
        printf("%-42s %7.2f %7.2f %7.2f %9s %7lu\n", b->label, ns[runs / 2], ns[0],
               ns[runs - 1], target, COUNT_ALLOCS ? allocated : 0);
        missed += !ok;
        allocating += COUNT_ALLOCS && allocated != 0;
    }
    free(ns);
    if (missed)
        printf("\n%d operation(s) missed the time target (noise? see the load average)\n",
               missed);
    if (allocating)
        printf("\n%d operation(s) allocated memory: the engine promises not to\n", allocating);
    return allocating ? 1 : 0;
}
