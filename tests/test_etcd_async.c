/*
 * The etcd lock's non-blocking API against a real single-member etcd:
 * fifolock_etcd_acquire_async() driven by a poll() loop over
 * fifolock_etcd_fd() and fifolock_etcd_timeout(), beside blocking waiters
 * of other sessions. FIFO order and sharing, deadlines, cancel before and
 * after the grant, release, the cost of a handoff, no thread per request,
 * and etcd going away. Skips (77) only when etcd is not installed.
 */
#include "check.h"
#include "etcd/harness.h"
#include "etcd/proxy.h"

#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>

static struct etcd_server srv;
static const char *ep;

static fifolock_etcd *open_or_die(const struct fifolock_etcd_options *o)
{
    return etcd_open_or_die(ep, o);
}

static long queue_len(const char *name)
{
    return etcd_queue_len(ep, name);
}

/* What a done callback saw. */
struct outcome {
    fifolock_etcd *s;
    const char *name;
    int calls;
    int err;
    int64_t token;
    int order;                  /* 1 for the first reported, ... */
    struct outcome *cancel;     /* cancel this one's request from the callback */
    fifolock_etcd_request *req;
    int cancel_rc;
    int64_t cancelled_held;     /* its hold's token, registered when cancelled; 0 */
    int key_after_cancel;       /* fifolock_etcd_key() for that token after the cancel */
    bool release;               /* release the hold from the callback */
};

static int reported;

/* The token of a hold of session s on `name` (of the first two entries) other than `token`; 0. */
static int64_t holds_another(fifolock_etcd *s, const char *name, int64_t token)
{
    char prefix[300], key[300], buf[300];
    int i;

    snprintf(prefix, sizeof prefix, "fifolock/%s/", name);
    for (i = 0; i < 2; i++) {
        long long rev;

        if (etcd_nth_entry(ep, prefix, i, key, sizeof key) == 0 || key[0] == '\0')
            continue;
        rev = etcd_create_revision(ep, key);
        if (rev != token && fifolock_etcd_key(s, name, rev, buf, sizeof buf) == 0)
            return rev;
    }
    return 0;
}

static void on_done(fifolock_etcd_request *req, int err, int64_t token, void *arg)
{
    struct outcome *o = arg;

    CHECK_TRUE(req == o->req);
    o->calls++;
    o->err = err;
    o->token = token;
    o->order = ++reported;
    if (o->cancel && o->cancel->calls == 0) {
        /* Is the other one granted already (its hold registered), not reported? */
        o->cancelled_held = holds_another(o->s, o->name, token);
        o->cancel_rc = fifolock_etcd_cancel(o->s, o->cancel->req);
        if (o->cancelled_held) {
            char key[300];

            o->key_after_cancel = fifolock_etcd_key(o->s, o->name, o->cancelled_held, key,
                                                    sizeof key);
        }
    }
    if (o->release && err == 0)
        CHECK_EQ(fifolock_etcd_release(o->s, o->name, token), 0);
}

static int start(fifolock_etcd *s, struct outcome *o, const char *name, const fifolock_mode *mode,
                 long deadline_ms)
{
    struct timespec d = etcd_in_ms(deadline_ms);

    memset(o, 0, sizeof *o);
    o->s = s;
    o->name = name;
    return fifolock_etcd_acquire_async(s, name, mode, 1, deadline_ms ? &d : NULL, on_done, o,
                                       &o->req);
}

/* The event loop: poll the descriptor for the timeout, then process. */
static void loop_once(fifolock_etcd *s, long max_ms, long lazy_ms)
{
    struct pollfd p = { fifolock_etcd_fd(s), POLLIN, 0 };
    int t = fifolock_etcd_timeout(s);

    CHECK_TRUE(p.fd >= 0);
    if (t < 0 || t > max_ms)
        t = (int)max_ms;
    if (poll(&p, 1, t) > 0 && lazy_ms)
        etcd_sleep_ms(lazy_ms); /* let every answer on its way arrive: one process() for all */
    CHECK_EQ(fifolock_etcd_process(s), 0);
}

/* Runs the loop until *flag is nonzero or ms pass; returns the flag. */
static int loop_until(fifolock_etcd *s, const int *flag, long ms)
{
    long end = etcd_now_ms() + ms;

    while (!*flag && etcd_now_ms() < end)
        loop_once(s, end - etcd_now_ms(), 0);
    return *flag;
}

/* Runs the loop until the queue of `name` has n entries. */
static void loop_until_queue(fifolock_etcd *s, const char *name, long n)
{
    long end = etcd_now_ms() + 5000;

    while (queue_len(name) != n && etcd_now_ms() < end)
        loop_once(s, 5, 0);
    CHECK_EQ(queue_len(name), n);
}

static void loop_for(fifolock_etcd *s, long ms)
{
    long end = etcd_now_ms() + ms;

    while (etcd_now_ms() < end)
        loop_once(s, end - etcd_now_ms(), 0);
}

static void bad_arguments_are_refused_at_once_without_a_callback(void)
{
    fifolock_etcd *s = open_or_die(NULL);
    fifolock_mode sem2 = FIFOLOCK_SEMAPHORE(2);
    struct outcome o;
    struct timespec d = etcd_in_ms(1000);
    fifolock_etcd_request *req = NULL;

    reported = 0;
    CHECK_EQ(start(s, &o, "", &fifolock_mutex, 0), EINVAL);
    CHECK_EQ(start(s, &o, "bad", NULL, 0), EINVAL);
    CHECK_EQ(fifolock_etcd_acquire_async(s, NULL, &fifolock_mutex, 1, &d, on_done, &o, &req),
             EINVAL);
    CHECK_EQ(fifolock_etcd_acquire_async(s, "bad", &fifolock_mutex, 1, &d, NULL, &o, &req),
             EINVAL);
    CHECK_EQ(fifolock_etcd_acquire_async(s, "bad", &fifolock_mutex, 1, &d, on_done, &o, NULL),
             EINVAL);
    CHECK_EQ(fifolock_etcd_acquire_async(s, "bad", &fifolock_mutex, 0, &d, on_done, &o, &req),
             EINVAL);
    CHECK_EQ(fifolock_etcd_acquire_async(NULL, "bad", &fifolock_mutex, 1, &d, on_done, &o, &req),
             EINVAL);
    CHECK_EQ(fifolock_etcd_acquire_async(s, "bad", &sem2, 3, &d, on_done, &o, &req), EDEADLK);
    CHECK_TRUE(req == NULL);
    CHECK_EQ(fifolock_etcd_cancel(s, NULL), EINVAL);
    CHECK_EQ(fifolock_etcd_cancel(NULL, NULL), EINVAL);
    CHECK_EQ(fifolock_etcd_process(NULL), EINVAL);
    CHECK_EQ(fifolock_etcd_timeout(NULL), -1);
    CHECK_EQ(fifolock_etcd_fd(NULL), -1);
    CHECK_EQ(fifolock_etcd_timeout(s), -1);     /* nothing pending */
    loop_for(s, 100);
    CHECK_EQ(reported, 0);
    CHECK_EQ(queue_len("bad"), 0);
    /* A request of another session is not this one's to cancel. */
    {
        fifolock_etcd *t = open_or_die(NULL);

        CHECK_EQ(start(s, &o, "bad", &fifolock_mutex, 0), 0);
        CHECK_EQ(fifolock_etcd_cancel(t, o.req), EINVAL);
        CHECK_EQ(fifolock_etcd_cancel(s, o.req), 0);
        CHECK_EQ(fifolock_etcd_cancel(s, o.req), EINVAL);   /* gone already */
        fifolock_etcd_close(t);
    }
    loop_for(s, 200);
    CHECK_EQ(o.calls, 0);
    fifolock_etcd_close(s);
}

static void an_uncontended_request_is_granted_and_releases_like_a_blocking_one(void)
{
    fifolock_etcd *s = open_or_die(NULL);
    struct outcome o;
    char key[300];

    reported = 0;
    CHECK_EQ(start(s, &o, "async-free", &fifolock_mutex, 0), 0);
    CHECK_EQ(o.calls, 0);   /* never inside the call that started it */
    CHECK_TRUE(loop_until(s, &o.calls, 3000));
    CHECK_EQ(o.err, 0);
    CHECK_LT(0, o.token);
    CHECK_EQ(queue_len("async-free"), 1);
    CHECK_EQ(fifolock_etcd_check(s, "async-free", o.token, NULL), 0);
    CHECK_EQ(fifolock_etcd_key(s, "async-free", o.token, key, sizeof key), 0);
    CHECK_EQ(etcd_create_revision(ep, key), o.token);
    CHECK_EQ(fifolock_etcd_release(s, "async-free", o.token), 0);
    CHECK_EQ(fifolock_etcd_check(s, "async-free", o.token, NULL), EPERM);
    CHECK_EQ(queue_len("async-free"), 0);
    CHECK_EQ(fifolock_etcd_timeout(s), -1);
    loop_for(s, 100);
    CHECK_EQ(o.calls, 1);
    fifolock_etcd_close(s);
}

/*
 * One session's async readers and another session's blocking writer, in
 * one queue: r1 r2 (async) W (blocking) r3 r4 (async), behind a held write.
 */
static void async_requests_keep_fifo_order_with_blocking_waiters_of_other_sessions(void)
{
    fifolock_etcd *a = open_or_die(NULL), *b = open_or_die(NULL), *c = open_or_die(NULL);
    struct outcome r[4];
    struct etcd_waiter w;
    int64_t tb;
    int i;

    reported = 0;
    CHECK_EQ(fifolock_etcd_acquire(b, "async-fifo", &fifolock_write, NULL, &tb), 0);
    CHECK_EQ(start(a, &r[0], "async-fifo", &fifolock_read, 0), 0);
    loop_until_queue(a, "async-fifo", 2);
    CHECK_EQ(start(a, &r[1], "async-fifo", &fifolock_read, 0), 0);
    loop_until_queue(a, "async-fifo", 3);
    etcd_start_waiter(&w, c, "async-fifo", &fifolock_write, 10000, true);
    loop_until_queue(a, "async-fifo", 4);
    CHECK_EQ(start(a, &r[2], "async-fifo", &fifolock_read, 0), 0);
    loop_until_queue(a, "async-fifo", 5);
    CHECK_EQ(start(a, &r[3], "async-fifo", &fifolock_read, 0), 0);
    loop_until_queue(a, "async-fifo", 6);
    loop_for(a, 200);
    CHECK_EQ(reported, 0);
    /* The writer leaves: the two readers ahead of the waiting writer share. */
    CHECK_EQ(fifolock_etcd_release(b, "async-fifo", tb), 0);
    CHECK_TRUE(loop_until(a, &r[1].calls, 5000));
    CHECK_TRUE(loop_until(a, &r[0].calls, 5000));
    CHECK_EQ(r[0].err, 0);
    CHECK_EQ(r[1].err, 0);
    CHECK_LT(r[0].token, r[1].token);
    /* The readers behind the waiting writer wait, though they would fit. */
    loop_for(a, 300);
    CHECK_EQ(r[2].calls, 0);
    CHECK_EQ(r[3].calls, 0);
    CHECK_EQ(w.rc, -1);
    CHECK_EQ(fifolock_etcd_release(a, "async-fifo", r[0].token), 0);
    loop_for(a, 200);
    CHECK_EQ(w.rc, -1);     /* one reader still holds */
    CHECK_EQ(fifolock_etcd_release(a, "async-fifo", r[1].token), 0);
    pthread_join(w.thread, NULL);
    CHECK_EQ(w.rc, 0);
    CHECK_LT(r[1].token, w.token);
    loop_for(a, 200);
    CHECK_EQ(r[2].calls, 0);
    CHECK_EQ(fifolock_etcd_release(c, "async-fifo", w.token), 0);
    CHECK_TRUE(loop_until(a, &r[3].calls, 5000));
    CHECK_TRUE(loop_until(a, &r[2].calls, 5000));
    CHECK_EQ(r[2].err, 0);
    CHECK_EQ(r[3].err, 0);
    CHECK_LT(w.token, r[2].token);
    CHECK_LT(r[2].token, r[3].token);
    for (i = 2; i < 4; i++)
        CHECK_EQ(fifolock_etcd_release(a, "async-fifo", r[i].token), 0);
    CHECK_EQ(queue_len("async-fifo"), 0);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
    fifolock_etcd_close(c);
}

static void a_deadline_reports_etimedout_and_leaves_no_entry(void)
{
    fifolock_etcd *a = open_or_die(NULL), *b = open_or_die(NULL);
    struct outcome o;
    int64_t tb;
    long t0;

    reported = 0;
    CHECK_EQ(fifolock_etcd_acquire(b, "async-deadline", &fifolock_mutex, NULL, &tb), 0);
    t0 = etcd_now_ms();
    CHECK_EQ(start(a, &o, "async-deadline", &fifolock_mutex, 400), 0);
    CHECK_TRUE(loop_until(a, &o.calls, 3000));
    CHECK_EQ(o.err, ETIMEDOUT);
    CHECK_EQ(o.token, 0);
    CHECK_LE(400, etcd_now_ms() - t0);
    CHECK_LE(etcd_now_ms() - t0, 1500);
    CHECK_EQ(queue_len("async-deadline"), 1);   /* withdrawn before the report */
    /* A deadline already past still takes a free lock. */
    CHECK_EQ(fifolock_etcd_release(b, "async-deadline", tb), 0);
    CHECK_EQ(start(a, &o, "async-deadline", &fifolock_mutex, -1), 0);
    CHECK_TRUE(loop_until(a, &o.calls, 3000));
    CHECK_EQ(o.err, 0);
    CHECK_EQ(fifolock_etcd_release(a, "async-deadline", o.token), 0);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
}

static void a_cancelled_waiter_lets_the_next_one_in_and_is_never_reported(void)
{
    fifolock_etcd *a = open_or_die(NULL), *b = open_or_die(NULL);
    struct outcome o1, o2;
    int64_t tb;

    reported = 0;
    CHECK_EQ(fifolock_etcd_acquire(b, "async-cancel", &fifolock_mutex, NULL, &tb), 0);
    CHECK_EQ(start(a, &o1, "async-cancel", &fifolock_mutex, 0), 0);
    loop_until_queue(a, "async-cancel", 2);
    CHECK_EQ(start(a, &o2, "async-cancel", &fifolock_mutex, 0), 0);
    loop_until_queue(a, "async-cancel", 3);
    loop_for(a, 200);   /* both watch */
    CHECK_EQ(fifolock_etcd_cancel(a, o1.req), 0);
    loop_until_queue(a, "async-cancel", 2);     /* its entry goes at once */
    CHECK_EQ(fifolock_etcd_release(b, "async-cancel", tb), 0);
    CHECK_TRUE(loop_until(a, &o2.calls, 5000));
    CHECK_EQ(o2.err, 0);
    CHECK_EQ(o1.calls, 0);
    CHECK_EQ(fifolock_etcd_release(a, "async-cancel", o2.token), 0);
    loop_for(a, 200);
    CHECK_EQ(o1.calls, 0);
    CHECK_EQ(queue_len("async-cancel"), 0);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
}

/*
 * Two readers granted in one process() call: the first reported cancels
 * the other, granted and not yet reported: its hold goes, as a release.
 */
static void a_cancel_after_the_grant_before_its_report_releases_the_hold(void)
{
    fifolock_etcd *a = open_or_die(NULL), *b = open_or_die(NULL);
    int round;
    bool seen = false;

    for (round = 0; round < 10 && !seen; round++) {
        struct outcome o1, o2, *first, *second;
        struct timespec d;
        int64_t tb;
        long end;

        reported = 0;
        CHECK_EQ(start(a, &o1, "async-late", &fifolock_read, 0), 0);
        CHECK_EQ(start(a, &o2, "async-late", &fifolock_read, 0), 0);
        o1.cancel = &o2;
        o2.cancel = &o1;
        end = etcd_now_ms() + 5000;
        while (reported == 0 && etcd_now_ms() < end)
            loop_once(a, 100, 50);
        CHECK_EQ(reported, 1);
        first = o1.calls ? &o1 : &o2;
        second = first == &o1 ? &o2 : &o1;
        CHECK_EQ(first->err, 0);
        CHECK_EQ(first->cancel_rc, 0);
        seen = first->cancelled_held != 0;
        if (seen)   /* the hold is gone with the cancel, as with a release */
            CHECK_EQ(first->key_after_cancel, EPERM);
        loop_for(a, 200);
        CHECK_EQ(second->calls, 0);
        /* The cancelled one left nothing: a writer gets in once the first leaves. */
        CHECK_EQ(fifolock_etcd_release(a, "async-late", first->token), 0);
        d = etcd_in_ms(3000);
        CHECK_EQ(fifolock_etcd_acquire(b, "async-late", &fifolock_write, &d, &tb), 0);
        CHECK_EQ(queue_len("async-late"), 1);
        CHECK_EQ(fifolock_etcd_release(b, "async-late", tb), 0);
    }
    printf("granted and cancelled before its report in round %d\n", round);
    CHECK_TRUE(seen);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
}

/*
 * The holder leaves after the join was applied and before its answer (held
 * up by a slow relay) arrives: D says wait, and the watch starts after the
 * deletion. The gap between the two is read again, or the waiter would
 * sleep through its grant.
 */
static void a_release_between_the_join_and_the_watch_is_not_missed(void)
{
    struct fifolock_etcd_options o = { 0 };
    static struct proxy px; /* its thread outlives the test: never on the stack */
    fifolock_etcd *a, *b = open_or_die(NULL);
    struct outcome w;
    int64_t tb;

    proxy_start(&px, atoi(strrchr(ep, ':') + 1));
    o.timeout_ms = 3000;
    a = etcd_open_or_die(px.url, &o);
    reported = 0;
    CHECK_EQ(fifolock_etcd_acquire(b, "async-gap", &fifolock_mutex, NULL, &tb), 0);
    proxy_delay(&px, 400);
    CHECK_EQ(start(a, &w, "async-gap", &fifolock_mutex, 3000), 0);
    loop_until_queue(a, "async-gap", 2);    /* applied; its answer is held up */
    CHECK_EQ(fifolock_etcd_release(b, "async-gap", tb), 0);
    CHECK_TRUE(loop_until(a, &w.calls, 5000));
    CHECK_EQ(w.err, 0);
    proxy_delay(&px, 0);
    CHECK_EQ(fifolock_etcd_release(a, "async-gap", w.token), 0);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
}

/* As test_etcd's a_release_wakes_a_constant_number_of_waiters, the waiters async. */
#define CROWD 24

static void a_handoff_costs_a_constant_number_of_requests_however_many_wait(void)
{
    struct fifolock_etcd_options o = { 0 };
    fifolock_etcd *a, *b;
    static struct outcome w[CROWD];
    struct etcd_counters before, after;
    int64_t tb;
    int i;

    o.ttl = 60;
    a = open_or_die(&o);
    b = open_or_die(&o);
    reported = 0;
    CHECK_EQ(fifolock_etcd_acquire(b, "async-crowd", &fifolock_mutex, NULL, &tb), 0);
    for (i = 0; i < CROWD; i++) {
        CHECK_EQ(start(a, &w[i], "async-crowd", &fifolock_mutex, 0), 0);
        loop_until_queue(a, "async-crowd", i + 2);
    }
    loop_for(a, 300);   /* every waiter watches */
    before = etcd_read_counters(ep);
    CHECK_EQ(fifolock_etcd_release(b, "async-crowd", tb), 0);
    CHECK_TRUE(loop_until(a, &w[0].calls, 3000));
    CHECK_EQ(w[0].err, 0);
    loop_for(a, 300);   /* the mark, the next one's read and watch, the new holder's watch */
    after = etcd_read_counters(ep);
    CHECK_LE(after.requests - before.requests, 8);
    CHECK_LE(after.events - before.events, 4);
    printf("one async handoff with %d waiting: %.0f requests, %.0f watch events\n", CROWD,
           after.requests - before.requests, after.events - before.events);
    for (i = 1; i < CROWD; i++)
        CHECK_EQ(w[i].calls, 0);
    /* Each releases from its callback: all granted in order. */
    for (i = 1; i < CROWD; i++)
        w[i].release = true;
    CHECK_EQ(fifolock_etcd_release(a, "async-crowd", w[0].token), 0);
    CHECK_TRUE(loop_until(a, &w[CROWD - 1].calls, 20000));
    for (i = 1; i < CROWD; i++) {
        CHECK_EQ(w[i].err, 0);
        CHECK_LT(w[i - 1].token, w[i].token);
        CHECK_EQ(w[i].order, i + 1);
    }
    CHECK_EQ(queue_len("async-crowd"), 0);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
}

static int threads_now(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    int n = 0;

    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static void fifty_waiting_requests_take_no_thread_and_close_frees_them(void)
{
    fifolock_etcd *a = open_or_die(NULL), *b = open_or_die(NULL);
    static struct outcome w[50];
    int64_t tb;
    int i, before, during;

    reported = 0;
    CHECK_EQ(fifolock_etcd_acquire(b, "async-many", &fifolock_mutex, NULL, &tb), 0);
    loop_for(a, 50);
    before = threads_now();
    for (i = 0; i < 50; i++)
        CHECK_EQ(start(a, &w[i], "async-many", &fifolock_mutex, 0), 0);
    loop_until_queue(a, "async-many", 51);
    loop_for(a, 300);
    during = threads_now();
    printf("threads: %d before 50 waiting requests, %d with them\n", before, during);
    CHECK_EQ(during, before);
    CHECK_EQ(reported, 0);
    /* Closing the session frees them without a report; their entries go with its lease. */
    CHECK_EQ(fifolock_etcd_close(a), 0);
    CHECK_EQ(reported, 0);
    CHECK_EQ(queue_len("async-many"), 1);
    CHECK_EQ(fifolock_etcd_release(b, "async-many", tb), 0);
    fifolock_etcd_close(b);
}

/*
 * etcd paused for 3.5 s; both leases (TTL 2) run out. The async waiter,
 * whose deadline is far, gets the session a new lease and queues again
 * (J2), and holds once etcd is back; the loop never stops meanwhile.
 */
static void an_async_waiter_outlives_an_outage_longer_than_its_ttl(void)
{
    struct fifolock_etcd_options o = { 0 };
    fifolock_etcd *a, *h;
    struct outcome w;
    int64_t th;
    long resumed;

    o.ttl = 2;
    h = open_or_die(&o);
    a = open_or_die(&o);
    reported = 0;
    CHECK_EQ(fifolock_etcd_acquire(h, "async-outage", &fifolock_mutex, NULL, &th), 0);
    CHECK_EQ(start(a, &w, "async-outage", &fifolock_mutex, 20000), 0);
    loop_until_queue(a, "async-outage", 2);
    loop_for(a, 100);
    kill(srv.pid[0], SIGSTOP);
    loop_for(a, 3500);
    kill(srv.pid[0], SIGCONT);
    resumed = etcd_now_ms();
    CHECK_TRUE(loop_until(a, &w.calls, 15000));
    printf("etcd paused 3.5 s (TTL 2 s): the async waiter held %ld ms after it resumed\n",
           etcd_now_ms() - resumed);
    CHECK_EQ(w.err, 0);
    CHECK_LT(th, w.token);
    CHECK_NE(fifolock_etcd_check(h, "async-outage", th, NULL), 0);
    CHECK_EQ(fifolock_etcd_check(a, "async-outage", w.token, NULL), 0);
    CHECK_EQ(queue_len("async-outage"), 1);     /* its new entry only */
    CHECK_EQ(fifolock_etcd_release(a, "async-outage", w.token), 0);
    CHECK_EQ(fifolock_etcd_release(h, "async-outage", th), 0);
    fifolock_etcd_close(h);
    CHECK_EQ(fifolock_etcd_close(a), 0);
    CHECK_EQ(queue_len("async-outage"), 0);
}

/* Last: etcd killed, and started again. */
static void etcd_away_ends_requests_with_an_error_not_a_hang(void)
{
    struct fifolock_etcd_options o = { 0 };
    fifolock_etcd *a, *b;
    struct outcome waiting, joining;
    int64_t tb;
    long t0;

    o.timeout_ms = 1000;
    o.ttl = 30;
    a = open_or_die(&o);
    b = open_or_die(&o);
    reported = 0;
    CHECK_EQ(fifolock_etcd_acquire(b, "async-away", &fifolock_mutex, NULL, &tb), 0);
    CHECK_EQ(start(a, &waiting, "async-away", &fifolock_mutex, 2500), 0);
    loop_until_queue(a, "async-away", 2);
    loop_for(a, 200);
    t0 = etcd_now_ms();
    kill(srv.pid[0], SIGKILL);
    waitpid(srv.pid[0], NULL, WNOHANG);
    etcd_sleep_ms(100);
    CHECK_EQ(start(a, &joining, "async-away", &fifolock_mutex, 0), 0);
    CHECK_TRUE(loop_until(a, &joining.calls, 5000));
    CHECK_EQ(joining.err, ECONNREFUSED);
    CHECK_LE(etcd_now_ms() - t0, 2500);
    CHECK_TRUE(loop_until(a, &waiting.calls, 5000));
    CHECK_EQ(waiting.err, ETIMEDOUT);
    CHECK_LE(etcd_now_ms() - t0, 4000);
    CHECK_EQ(etcd_restart(&srv, 0), 0);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
}

int main(int argc, char **argv)
{
    static const struct check_test tests[] = {
        TEST(bad_arguments_are_refused_at_once_without_a_callback),
        TEST(an_uncontended_request_is_granted_and_releases_like_a_blocking_one),
        TEST(async_requests_keep_fifo_order_with_blocking_waiters_of_other_sessions),
        TEST(a_deadline_reports_etimedout_and_leaves_no_entry),
        TEST(a_cancelled_waiter_lets_the_next_one_in_and_is_never_reported),
        TEST(a_cancel_after_the_grant_before_its_report_releases_the_hold),
        TEST(a_release_between_the_join_and_the_watch_is_not_missed),
        TEST(a_handoff_costs_a_constant_number_of_requests_however_many_wait),
        TEST(fifty_waiting_requests_take_no_thread_and_close_frees_them),
        TEST(an_async_waiter_outlives_an_outage_longer_than_its_ttl),
        TEST(etcd_away_ends_requests_with_an_error_not_a_hang),
    };
    int status;
    int rc = etcd_up(&srv, 1, NULL);

    if (rc == ETCD_SKIP) {
        printf("etcd is not installed: skipped\n");
        return ETCD_SKIP;
    }
    ep = srv.endpoints;
    status = etcd_run_tests(tests, sizeof tests / sizeof tests[0], argc, argv);
    etcd_down(&srv);
    return status;
}
