/*
 * Readers and writers on a libuv loop.
 *
 * A few hundred requests arrive on timers, each wanting to read or write one
 * of a handful of keys (one fifolock per key). A request holds its lock across
 * asynchronous work (another timer), then releases it. Some requests are
 * impatient: if they are still waiting after a while, a timeout aborts them.
 * "Flush" requests are barriers: they take the write mode and drop it at once,
 * so they are granted when everything that came before them on that key has
 * finished.
 *
 * The two event-loop habits shown here (docs/libuv.md explains them):
 *
 *  - Deferring grants. fifolock calls a waiter's `granted` callback inside the
 *    fifolock_release() or fifolock_cancel() that made room. Here that
 *    callback only records the grant and puts the request on a ready list; a
 *    uv_idle_t runs the continuations from the loop, after the call that
 *    granted them has returned. (With --direct the continuation runs inside
 *    the callback instead, which is allowed too.)
 *
 *  - Cancelling on timeout. An impatient request's uv_timer_t calls
 *    fifolock_cancel(): 0 means it left the queue and will never be granted;
 *    EALREADY means it was granted but its continuation has not run yet: it
 *    holds the lock, so it releases it.
 *
 * Usage: uv_readers_writers [--direct] [--trace] [--tick-ms N] [SEED]
 *
 * Times are in ticks of N milliseconds (default 2). The seed fixes every arrival,
 * hold time and timeout, and timers are started at absolute ticks, so the
 * same seed prints the same run. The one exception is a machine so loaded
 * that the loop reaches a tick after a timer due then should have started:
 * such a timer fires late and the order of events may differ; the result
 * line counts them as `late=`. The locking checks hold either way.
 *
 * The output ends with one line per key and a result line, key=value pairs
 * meant for people and for tests/uv_check.py alike; --trace prints every
 * event instead of the first few, in a form that script replays.
 */
#define _POSIX_C_SOURCE 200809L /* uv.h needs POSIX types under -std=c11 */

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "fifolock.h"

#define NKEYS 4
#define NREQUESTS 300
#define DEFAULT_TICK_MS 2
#define TIMELINE_LINES 24
#define DEFAULT_SEED 1

enum kind { READ, WRITE, FLUSH };
static const char *const kind_name[] = { "read", "write", "flush" };

enum state {
    NEW,     /* not arrived yet */
    WAITING, /* queued on its key's lock */
    READY,   /* granted; its continuation has not run yet */
    WORKING, /* holds the lock, work timer running */
    DONE,    /* released after its work (or a flush) */
    GAVE_UP, /* timed out: cancelled, or released unused */
};

struct app;

struct request {
    struct app *app;
    int id;              /* order of arrival */
    int key;
    enum kind kind;
    uint64_t arrive;     /* tick it arrives */
    uint64_t hold;       /* ticks of work once granted */
    uint64_t patience;   /* ticks it waits before giving up; 0: for ever */
    uint64_t granted_at; /* tick it was granted */
    size_t seq;          /* order of its fifolock_acquire() on its key */
    enum state state;
    fifolock_waiter waiter;
    uv_timer_t timer;    /* arrival, then the work */
    uv_timer_t timeout;  /* gives up waiting */
    struct request *next_ready;
};

struct key {
    fifolock lock;
    struct request *by_seq[NREQUESTS]; /* requests in acquire order */
    size_t requests;
    size_t readers, writers;           /* holders, counted here to check the lock */
    size_t grants, cancelled, released_unused, flushes, max_readers;
    bool fifo, exclusive;
};

struct app {
    uv_loop_t loop;
    uv_idle_t idle; /* runs deferred continuations */
    uint64_t t0;    /* loop time of tick 0 */
    uint64_t now;   /* tick of the event being handled */
    uint64_t tick_ms;
    bool direct, trace;
    unsigned late;  /* timers started after their tick */
    size_t events;
    struct request *ready_head, **ready_tail;
    struct key keys[NKEYS];
    struct request requests[NREQUESTS];
};

static void on_work_done(uv_timer_t *t);

static void die(const char *what, int rc)
{
    fprintf(stderr, "uv_readers_writers: %s: %s\n", what,
            rc > 0 ? fifolock_strerror(rc) : uv_strerror(rc));
    exit(2);
}

/* ---- bookkeeping: timeline and checks ----------------------------------- */

/*
 * One event of the run: `event` for --trace (tests/uv_check.py replays those),
 * `detail` for the short timeline (NULL: not shown there).
 */
static void note(struct app *a, const struct request *r, const char *event, const char *detail)
{
    if (a->trace) {
        printf("E %" PRIu64 " %d %d %s %s\n", a->now, r->key, r->id, kind_name[r->kind], event);
        return;
    }
    if (detail == NULL)
        return;
    a->events++;
    if (a->events <= TIMELINE_LINES)
        printf("%5" PRIu64 "  key %d  #%-3d %-5s  %s\n", a->now, r->key, r->id,
               kind_name[r->kind], detail);
    else if (a->events == TIMELINE_LINES + 1)
        printf("  ...  (--trace prints every event)\n");
}

static const fifolock_mode *mode_of(const struct request *r)
{
    return r->kind == READ ? &fifolock_read : &fifolock_write;
}

/*
 * Called for every grant, at once or from the callback, in the order the lock
 * makes them. FIFO: nobody who asked earlier on this key may still be
 * waiting. Exclusion: counted independently of the lock, then compared.
 */
static void record_grant(struct app *a, struct request *r)
{
    struct key *k = &a->keys[r->key];
    const fifolock_holds *holds = fifolock_holds_of(&k->lock);
    size_t i;

    for (i = 0; i < r->seq; i++)
        if (k->by_seq[i]->state == WAITING)
            k->fifo = false;
    if (r->kind == READ) {
        if (k->writers != 0)
            k->exclusive = false;
        k->readers++;
    } else {
        if (k->readers != 0 || k->writers != 0)
            k->exclusive = false;
        k->writers++;
    }
    if (fifolock_held(holds, &fifolock_read) != k->readers ||
        fifolock_held(holds, &fifolock_write) != k->writers)
        k->exclusive = false;
    if (k->readers > k->max_readers)
        k->max_readers = k->readers;
    k->grants++;
    r->granted_at = a->now;
    r->state = READY;
}

/* Drops r's hold. Counts first: the release may grant others right away. */
static void release(struct app *a, struct request *r)
{
    struct key *k = &a->keys[r->key];
    int rc;

    if (r->kind == READ)
        k->readers--;
    else
        k->writers--;
    note(a, r, "release", r->kind == FLUSH ? NULL : "releases");
    rc = fifolock_release(&k->lock, mode_of(r));
    if (rc != 0)
        die("fifolock_release", rc);
}

/* ---- time ---------------------------------------------------------------- */

/* Starts `t` to fire at `tick`, counted from tick 0, not from now. */
static void start_at(struct app *a, uv_timer_t *t, uv_timer_cb cb, uint64_t tick)
{
    uint64_t due = a->t0 + tick * a->tick_ms, now = uv_now(&a->loop);
    int rc;

    if (due < now) {
        a->late++;
        due = now;
    }
    rc = uv_timer_start(t, cb, due - now, 0);
    if (rc != 0)
        die("uv_timer_start", rc);
}

/* ---- deferred continuations ---------------------------------------------- */

/* The continuation of a granted request: its asynchronous work begins. */
static void start_work(struct request *r)
{
    struct app *a = r->app;

    uv_timer_stop(&r->timeout);
    r->state = WORKING;
    start_at(a, &r->timer, on_work_done, r->granted_at + r->hold);
}

static void run_ready(struct app *a)
{
    struct request *r;

    while ((r = a->ready_head) != NULL) {
        a->ready_head = r->next_ready;
        if (a->ready_head == NULL)
            a->ready_tail = &a->ready_head;
        if (r->state == READY) /* not given up since */
            start_work(r);
    }
}

static void on_idle(uv_idle_t *idle)
{
    struct app *a = idle->data;

    run_ready(a);
    uv_idle_stop(idle);
}

/*
 * Every timer callback starts here. Continuations of grants made at an
 * earlier tick run before anything of a later tick, so where the loop
 * handles several ticks in one pass the outcome is still that of the ticks.
 */
static void advance(struct app *a, uint64_t tick)
{
    if (tick > a->now) {
        run_ready(a);
        a->now = tick;
    }
}

/*
 * Runs inside the fifolock_release() or fifolock_cancel() that made room,
 * possibly for many waiters in a row. It records the grant and defers the
 * rest to the loop.
 */
static void on_granted(fifolock_waiter *w, void *arg)
{
    struct request *r = arg;
    struct app *a = r->app;

    (void)w;
    record_grant(a, r);
    note(a, r, "granted", r->kind == FLUSH ? "granted: everything before it is done" : "granted");
    if (r->kind == FLUSH) {
        /*
         * A barrier needs no work: drop the lock right here. Calling the
         * same lock from its own callback is allowed; the outer call grants
         * whoever this lets in, after this callback returns.
         */
        uv_timer_stop(&r->timeout);
        r->state = DONE;
        a->keys[r->key].flushes++;
        release(a, r);
        return;
    }
    if (a->direct) {
        start_work(r);
        return;
    }
    r->next_ready = NULL;
    *a->ready_tail = r;
    a->ready_tail = &r->next_ready;
    uv_idle_start(&a->idle, on_idle); /* no-op if already started */
}

/* ---- the requests' timers ----------------------------------------------- */

static void on_timeout(uv_timer_t *t)
{
    struct request *r = t->data;
    struct app *a = r->app;
    struct key *k = &a->keys[r->key];
    int rc;

    advance(a, r->arrive + r->patience);
    if (r->state != WAITING && r->state != READY)
        return; /* its work began at an earlier tick of this same pass */
    /*
     * Gone from here on. If it was the head, the cancel grants the waiters
     * behind it, inside the call, before it returns: they must not find this
     * request still counted as waiting.
     */
    r->state = GAVE_UP;
    note(a, r, "cancel", NULL);
    rc = fifolock_cancel(&k->lock, &r->waiter);
    if (rc == 0) {
        /* It left the queue; its callback will never run. */
        k->cancelled++;
        note(a, r, "cancelled", "times out: cancelled while waiting");
    } else if (rc == EALREADY) {
        /* Granted, continuation still on the ready list: release unused. */
        k->released_unused++;
        note(a, r, "cancel-granted", "times out: already granted (EALREADY)");
        release(a, r);
    } else {
        die("fifolock_cancel", rc);
    }
}

static void on_arrive(uv_timer_t *t)
{
    struct request *r = t->data;
    struct app *a = r->app;
    struct key *k = &a->keys[r->key];
    char detail[64];
    int rc;

    advance(a, r->arrive);
    r->seq = k->requests++;
    k->by_seq[r->seq] = r;
    rc = fifolock_acquire(&k->lock, &r->waiter, mode_of(r), on_granted, r);
    if (rc == 0) {
        /* Held at once; `on_granted` will not be called. */
        record_grant(a, r);
        note(a, r, "acquired", "asks: held at once");
        if (r->kind == FLUSH) {
            r->state = DONE;
            k->flushes++;
            release(a, r);
        } else {
            start_work(r);
        }
        return;
    }
    if (rc != FIFOLOCK_WAITING)
        die("fifolock_acquire", rc);
    r->state = WAITING;
    snprintf(detail, sizeof detail, "asks: waits, %zu in the queue", fifolock_waiting(&k->lock));
    note(a, r, "acquire", detail);
    if (r->patience != 0)
        start_at(a, &r->timeout, on_timeout, r->arrive + r->patience);
}

static void on_work_done(uv_timer_t *t)
{
    struct request *r = t->data;
    struct app *a = r->app;

    advance(a, r->granted_at + r->hold);
    r->state = DONE;
    release(a, r);
}

/* ---- setup and report ---------------------------------------------------- */

static uint64_t next_random(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* The whole run, fixed by the seed. */
static void plan(struct app *a, uint64_t seed)
{
    uint64_t s = seed, tick = 0;
    int i;

    for (i = 0; i < NREQUESTS; i++) {
        struct request *r = &a->requests[i];
        unsigned p = next_random(&s) % 100;

        r->app = a;
        r->id = i;
        r->key = next_random(&s) % 2 ? (int)(next_random(&s) % NKEYS) : 0; /* key 0 is busiest */
        r->kind = p < 70 ? READ : p < 94 ? WRITE : FLUSH;
        tick += next_random(&s) % 3;
        r->arrive = tick;
        r->hold = r->kind == FLUSH ? 0 : 1 + next_random(&s) % (r->kind == READ ? 4 : 2);
        r->patience = next_random(&s) % 4 == 0 ? 1 + next_random(&s) % 8 : 0;
    }
}

static int report(struct app *a, uint64_t seed)
{
    size_t grants = 0, cancelled = 0, unused = 0, held = 0, waiting = 0;
    bool fifo = true, exclusive = true, ok;
    int i, unfinished = 0;

    printf("\nper key (fifo: every grant in request order):\n");
    for (i = 0; i < NKEYS; i++) {
        struct key *k = &a->keys[i];
        size_t h = fifolock_held_total(fifolock_holds_of(&k->lock));
        size_t w = fifolock_waiting(&k->lock);

        printf("key=%d requests=%zu grants=%zu fifo=%s exclusive=%s max_readers=%zu "
               "flushes=%zu cancelled=%zu released_unused=%zu held=%zu waiting=%zu\n",
               i, k->requests, k->grants, k->fifo ? "yes" : "no", k->exclusive ? "yes" : "no",
               k->max_readers, k->flushes, k->cancelled, k->released_unused, h, w);
        grants += k->grants;
        cancelled += k->cancelled;
        unused += k->released_unused;
        held += h;
        waiting += w;
        fifo = fifo && k->fifo;
        exclusive = exclusive && k->exclusive;
        if (fifolock_destroy(&k->lock) != 0)
            unfinished++;
    }
    for (i = 0; i < NREQUESTS; i++)
        if (a->requests[i].state != DONE && a->requests[i].state != GAVE_UP)
            unfinished++;
    ok = fifo && exclusive && held == 0 && waiting == 0 && unfinished == 0;
    printf("result seed=%" PRIu64 " continuations=%s requests=%d grants=%zu cancelled=%zu "
           "released_unused=%zu fifo=%s exclusive=%s held=%zu waiting=%zu unfinished=%d "
           "late=%u ok=%s\n",
           seed, a->direct ? "direct" : "deferred", NREQUESTS, grants, cancelled, unused,
           fifo ? "yes" : "no", exclusive ? "yes" : "no", held, waiting, unfinished, a->late,
           ok ? "yes" : "no");
    return ok ? 0 : 1;
}

static void usage(void)
{
    fprintf(stderr, "usage: uv_readers_writers [--direct] [--trace] [--tick-ms N] [SEED]\n");
    exit(2);
}

static uint64_t number(const char *s)
{
    char *end;
    uint64_t n;

    if (*s < '0' || *s > '9')
        usage();
    n = strtoull(s, &end, 10);
    if (*end != '\0')
        usage();
    return n;
}

int main(int argc, char **argv)
{
    static struct app app; /* large, so static; zeroed, as waiters must start */
    struct app *a = &app;
    uint64_t seed = DEFAULT_SEED;
    int i, rc, status;

    a->tick_ms = DEFAULT_TICK_MS;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--direct") == 0)
            a->direct = true;
        else if (strcmp(argv[i], "--trace") == 0)
            a->trace = true;
        else if (strcmp(argv[i], "--tick-ms") == 0 && i + 1 < argc)
            a->tick_ms = number(argv[++i]);
        else
            seed = number(argv[i]);
    }
    if (a->tick_ms == 0)
        usage();

    if ((rc = uv_loop_init(&a->loop)) != 0)
        die("uv_loop_init", rc);
    uv_idle_init(&a->loop, &a->idle);
    a->idle.data = a;
    a->ready_tail = &a->ready_head;
    for (i = 0; i < NKEYS; i++) {
        fifolock_init(&a->keys[i].lock);
        a->keys[i].fifo = a->keys[i].exclusive = true;
    }
    plan(a, seed);
    printf("%d requests on %d keys, seed %" PRIu64 ", continuations %s, ticks of %" PRIu64 " ms\n",
           NREQUESTS, NKEYS, seed, a->direct ? "run inside the callback" : "deferred to the loop",
           a->tick_ms);
    if (!a->trace)
        printf(" tick  key    req  mode   event\n");

    a->t0 = uv_now(&a->loop);
    for (i = 0; i < NREQUESTS; i++) {
        struct request *r = &a->requests[i];
        uv_timer_init(&a->loop, &r->timer);
        uv_timer_init(&a->loop, &r->timeout);
        r->timer.data = r->timeout.data = r;
        start_at(a, &r->timer, on_arrive, r->arrive);
    }
    uv_run(&a->loop, UV_RUN_DEFAULT);

    status = report(a, seed);
    for (i = 0; i < NREQUESTS; i++) {
        uv_close((uv_handle_t *)&a->requests[i].timer, NULL);
        uv_close((uv_handle_t *)&a->requests[i].timeout, NULL);
    }
    uv_close((uv_handle_t *)&a->idle, NULL);
    uv_run(&a->loop, UV_RUN_DEFAULT);
    if ((rc = uv_loop_close(&a->loop)) != 0)
        die("uv_loop_close", rc);
    return status;
}
