/*
 * The etcd lock against a real single-member etcd: sessions, the grant rule
 * across sessions, deadlines, the fencing token, lost locks, odd names and
 * modes, and what a closed or failed request leaves behind (nothing).
 * Skips (77) only when etcd is not installed.
 */
#include "check.h"
#include "etcd/harness.h"
#include "etcd/proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>

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

/* CHECKs that the queue of `name` reaches n entries (a waiter joined). */
static void wait_queue_len(const char *name, long n)
{
    etcd_check_queue_len(ep, name, n);
}

static void uncontended_acquire_gives_a_token_and_release_leaves_nothing(void)
{
    fifolock_etcd *s = open_or_die(NULL);
    int64_t token = 0;
    struct timespec until;

    CHECK_EQ(fifolock_etcd_acquire(s, "plain", &fifolock_mutex, NULL, &token), 0);
    CHECK_LT(0, token);
    CHECK_EQ(queue_len("plain"), 1);
    CHECK_EQ(fifolock_etcd_check(s, "plain", token, &until), 0);
    {
        /* Safe for most of the TTL (10 s) from now, on CLOCK_BOOTTIME. */
        struct timespec boot;
        long long left;

        clock_gettime(CLOCK_BOOTTIME, &boot);
        left = (until.tv_sec - boot.tv_sec) * 1000LL + (until.tv_nsec - boot.tv_nsec) / 1000000;
        CHECK_LT(5000, left);
        CHECK_LE(left, 10000);
    }
    CHECK_EQ(fifolock_etcd_release(s, "plain", token), 0);
    CHECK_EQ(queue_len("plain"), 0);
    CHECK_EQ(fifolock_etcd_release(s, "plain", token), EPERM);
    CHECK_EQ(fifolock_etcd_check(s, "plain", token, NULL), EPERM);
    CHECK_EQ(fifolock_etcd_close(s), 0);
}

static void bad_arguments_are_einval_and_leave_nothing(void)
{
    fifolock_etcd *s = open_or_die(NULL);
    fifolock_mode nameless = { fifolock_mutex.is_compatible, NULL, 0 };
    fifolock_mode stranger = { fifolock_mutex.is_compatible, "stranger", 0 };
    fifolock_etcd *none = NULL;
    struct fifolock_etcd_options o = { 0 };
    int64_t t;

    CHECK_EQ(fifolock_etcd_acquire(s, "", &fifolock_mutex, NULL, &t), EINVAL);
    CHECK_EQ(fifolock_etcd_acquire(s, NULL, &fifolock_mutex, NULL, &t), EINVAL);
    CHECK_EQ(fifolock_etcd_acquire(s, "bad", NULL, NULL, &t), EINVAL);
    CHECK_EQ(fifolock_etcd_acquire(s, "bad", &nameless, NULL, &t), EINVAL);
    CHECK_EQ(fifolock_etcd_acquire(s, "bad", &stranger, NULL, &t), EINVAL);
    CHECK_EQ(fifolock_etcd_acquire_n(s, "bad", &fifolock_read, 0, NULL, &t), EINVAL);
    CHECK_EQ(fifolock_etcd_release(s, NULL, 1), EINVAL);
    CHECK_EQ(fifolock_etcd_open(&none, "", NULL), EINVAL);
    CHECK_EQ(fifolock_etcd_open(NULL, ep, NULL), EINVAL);
    o.ttl = 1;
    CHECK_EQ(fifolock_etcd_open(&none, ep, &o), EINVAL);
    CHECK_TRUE(none == NULL);
    CHECK_EQ(fifolock_etcd_close(NULL), EINVAL);
    CHECK_EQ(queue_len("bad"), 0);
    CHECK_EQ(fifolock_etcd_close(s), 0);
}

/*
 * fifolock_etcd_open_config(): the 1.0 options and the newer ones, by size.
 * A member that accepts connections and never answers (a listening socket
 * nobody serves) costs one attempt of attempt_timeout_ms, then the next
 * endpoint is asked.
 */
static void open_config_takes_the_attempt_timeout_and_checks_its_size(void)
{
    struct fifolock_etcd_config c = FIFOLOCK_ETCD_CONFIG_INIT, unsized = FIFOLOCK_ETCD_CONFIG_INIT;
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    fifolock_etcd *s = NULL;
    char endpoints[1200];
    long t0, took;
    int mute;
    int64_t t;

    unsized.size = 0;
    CHECK_EQ(fifolock_etcd_open_config(&s, ep, &unsized), EINVAL);
    CHECK_TRUE(s == NULL);

    mute = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_EQ(bind(mute, (struct sockaddr *)&a, sizeof a), 0);
    CHECK_EQ(listen(mute, 16), 0);
    CHECK_EQ(getsockname(mute, (struct sockaddr *)&a, &alen), 0);
    snprintf(endpoints, sizeof endpoints, "http://127.0.0.1:%d,%s", ntohs(a.sin_port), ep);

    c.options.ttl = 5;
    c.attempt_timeout_ms = 300;
    t0 = etcd_now_ms();
    CHECK_EQ(fifolock_etcd_open_config(&s, endpoints, &c), 0);
    took = etcd_now_ms() - t0;
    CHECK_LE(250, took); /* the mute member had its attempt */
    CHECK_LT(took, 950); /* one of 300 ms, not the default 1000 */
    if (s != NULL) {
        CHECK_EQ(fifolock_etcd_acquire(s, "config", &fifolock_mutex, NULL, &t), 0);
        CHECK_EQ(fifolock_etcd_release(s, "config", t), 0);
        CHECK_EQ(fifolock_etcd_close(s), 0);
    }
    close(mute);
    CHECK_EQ(queue_len("config"), 0);
}

static void try_acquire_is_refused_while_held_and_leaves_no_entry(void)
{
    fifolock_etcd *a = open_or_die(NULL), *b = open_or_die(NULL);
    int64_t ta, tb;

    CHECK_EQ(fifolock_etcd_try_acquire(a, "try", &fifolock_mutex, &ta), 0);
    CHECK_EQ(fifolock_etcd_try_acquire(b, "try", &fifolock_mutex, &tb), EBUSY);
    CHECK_EQ(queue_len("try"), 1);
    CHECK_EQ(fifolock_etcd_release(a, "try", ta), 0);
    CHECK_EQ(fifolock_etcd_try_acquire(b, "try", &fifolock_mutex, &tb), 0);
    CHECK_LT(ta, tb);
    CHECK_EQ(fifolock_etcd_release(b, "try", tb), 0);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
}

static void readers_share_and_a_writer_waits_for_them(void)
{
    fifolock_etcd *a = open_or_die(NULL), *b = open_or_die(NULL), *c = open_or_die(NULL);
    struct etcd_waiter w;
    int64_t ta, tb;

    CHECK_EQ(fifolock_etcd_acquire(a, "rw", &fifolock_read, NULL, &ta), 0);
    CHECK_EQ(fifolock_etcd_acquire(b, "rw", &fifolock_read, NULL, &tb), 0);
    etcd_start_waiter(&w, c, "rw", &fifolock_write, 10000, false);
    wait_queue_len("rw", 3);
    CHECK_EQ(fifolock_etcd_release(a, "rw", ta), 0);
    etcd_sleep_ms(100);
    CHECK_EQ(w.rc, -1); /* still one reader */
    CHECK_EQ(fifolock_etcd_release(b, "rw", tb), 0);
    pthread_join(w.thread, NULL);
    CHECK_EQ(w.rc, 0);
    CHECK_LT(tb, w.token);
    CHECK_EQ(fifolock_etcd_release(c, "rw", w.token), 0);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
    fifolock_etcd_close(c);
}

static void a_compatible_reader_queues_behind_a_waiting_writer(void)
{
    fifolock_etcd *a = open_or_die(NULL), *b = open_or_die(NULL), *c = open_or_die(NULL);
    struct etcd_waiter writer, reader;
    int64_t ta, tc;

    CHECK_EQ(fifolock_etcd_acquire(a, "fair", &fifolock_read, NULL, &ta), 0);
    etcd_start_waiter(&writer, b, "fair", &fifolock_write, 10000, false);
    wait_queue_len("fair", 2);
    /* A reader fits the holder, but a writer waits ahead of it. */
    CHECK_EQ(fifolock_etcd_try_acquire(c, "fair", &fifolock_read, &tc), EBUSY);
    etcd_start_waiter(&reader, c, "fair", &fifolock_read, 10000, false);
    wait_queue_len("fair", 3);
    etcd_sleep_ms(100);
    CHECK_EQ(reader.rc, -1);
    CHECK_EQ(fifolock_etcd_release(a, "fair", ta), 0);
    pthread_join(writer.thread, NULL);
    CHECK_EQ(writer.rc, 0);
    etcd_sleep_ms(100);
    CHECK_EQ(reader.rc, -1);
    CHECK_EQ(fifolock_etcd_release(b, "fair", writer.token), 0);
    pthread_join(reader.thread, NULL);
    CHECK_EQ(reader.rc, 0);
    CHECK_LT(writer.token, reader.token);
    CHECK_EQ(fifolock_etcd_release(c, "fair", reader.token), 0);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
    fifolock_etcd_close(c);
}

static void readers_behind_a_writer_are_all_granted_when_it_leaves(void)
{
    fifolock_etcd *w = open_or_die(NULL), *r[4];
    struct etcd_waiter rw[4];
    int64_t tw;
    int i;

    CHECK_EQ(fifolock_etcd_acquire(w, "chain", &fifolock_write, NULL, &tw), 0);
    for (i = 0; i < 4; i++) {
        r[i] = open_or_die(NULL);
        etcd_start_waiter(&rw[i], r[i], "chain", &fifolock_read, 10000, false);
        wait_queue_len("chain", i + 2);
    }
    CHECK_EQ(fifolock_etcd_release(w, "chain", tw), 0);
    for (i = 0; i < 4; i++) {
        pthread_join(rw[i].thread, NULL);
        CHECK_EQ(rw[i].rc, 0);
    }
    /* All four hold together: none released before the last was granted. */
    CHECK_EQ(queue_len("chain"), 4);
    for (i = 0; i < 4; i++) {
        CHECK_EQ(fifolock_etcd_check(r[i], "chain", rw[i].token, NULL), 0);
        CHECK_EQ(fifolock_etcd_release(r[i], "chain", rw[i].token), 0);
        fifolock_etcd_close(r[i]);
    }
    fifolock_etcd_close(w);
}

/* Waiters that hold until told to let go, in queue order. */
#define CROWD 15
static atomic_int crowd_go;

struct crowd_waiter {
    fifolock_etcd *s;
    int index;
    int rc;
    int64_t token;
    atomic_int granted;
    pthread_t thread;
};

static void *crowd_main(void *arg)
{
    struct crowd_waiter *w = arg;
    struct timespec d = etcd_in_ms(30000);

    w->rc = fifolock_etcd_acquire(w->s, "crowd", &fifolock_mutex, &d, &w->token);
    atomic_store(&w->granted, 1);
    while (atomic_load(&crowd_go) <= w->index)
        etcd_sleep_ms(2);
    if (w->rc == 0)
        fifolock_etcd_release(w->s, "crowd", w->token);
    return NULL;
}

static void a_release_wakes_a_constant_number_of_waiters(void)
{
    struct fifolock_etcd_options o = { 0 };
    static struct crowd_waiter w[CROWD];
    struct etcd_counters before, after;
    fifolock_etcd *holder;
    int64_t t;
    int i;

    o.ttl = 60;
    holder = open_or_die(&o);
    atomic_store(&crowd_go, 0);
    CHECK_EQ(fifolock_etcd_acquire(holder, "crowd", &fifolock_mutex, NULL, &t), 0);
    for (i = 0; i < CROWD; i++) {
        w[i].s = open_or_die(&o);
        w[i].index = i;
        w[i].rc = -1;
        atomic_store(&w[i].granted, 0);
        pthread_create(&w[i].thread, NULL, crowd_main, &w[i]);
        wait_queue_len("crowd", i + 2);
    }
    etcd_sleep_ms(300); /* every waiter watches; the holder's watch has started */
    before = etcd_read_counters(ep);
    CHECK_EQ(fifolock_etcd_release(holder, "crowd", t), 0);
    for (i = 0; i < 3000 && !atomic_load(&w[0].granted); i++)
        etcd_sleep_ms(1);
    CHECK_EQ(w[0].rc, 0);
    etcd_sleep_ms(300); /* the mark, the next one's read and watch, the new holder's watch */
    after = etcd_read_counters(ep);
    /* A release, a mark, a read, two watches; two or three events: not one per waiter. */
    CHECK_LE(after.requests - before.requests, 8);
    CHECK_LE(after.events - before.events, 4);
    printf("one handoff with %d waiting: %.0f requests, %.0f watch events\n", CROWD,
           after.requests - before.requests, after.events - before.events);
    for (i = 1; i < CROWD; i++)
        CHECK_EQ(atomic_load(&w[i].granted), 0);
    atomic_store(&crowd_go, CROWD);
    for (i = 0; i < CROWD; i++) {
        pthread_join(w[i].thread, NULL);
        CHECK_EQ(w[i].rc, 0);
        if (i > 0)
            CHECK_LT(w[i - 1].token, w[i].token);
        fifolock_etcd_close(w[i].s);
    }
    fifolock_etcd_close(holder);
}

static void a_semaphore_admits_its_size_in_weighted_requests(void)
{
    fifolock_etcd *a = open_or_die(NULL), *b = open_or_die(NULL);
    fifolock_mode sem = FIFOLOCK_SEMAPHORE(3);
    struct timespec soon;
    int64_t t1, t2, t3;

    CHECK_EQ(fifolock_etcd_acquire_n(a, "sem", &sem, 2, NULL, &t1), 0);
    CHECK_EQ(fifolock_etcd_acquire_n(b, "sem", &sem, 1, NULL, &t2), 0);
    soon = etcd_in_ms(200);
    CHECK_EQ(fifolock_etcd_acquire_n(b, "sem", &sem, 1, &soon, &t3), ETIMEDOUT);
    CHECK_EQ(fifolock_etcd_release(a, "sem", t1), 0);
    CHECK_EQ(fifolock_etcd_acquire_n(b, "sem", &sem, 2, NULL, &t3), 0);
    CHECK_EQ(fifolock_etcd_release(b, "sem", t2), 0);
    CHECK_EQ(fifolock_etcd_release(b, "sem", t3), 0);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
}

/* n above a semaphore's size, write with n = 2: refused at once, nothing sent, nobody blocked. */
static void a_request_that_never_fits_is_edeadlk_and_leaves_no_entry(void)
{
    fifolock_etcd *a = open_or_die(NULL);
    fifolock_mode sem = FIFOLOCK_SEMAPHORE(3);
    struct timespec soon = etcd_in_ms(5000);
    int64_t t = -1;
    long t0 = etcd_now_ms();

    CHECK_EQ(fifolock_etcd_acquire_n(a, "never", &sem, 4, NULL, &t), EDEADLK);
    CHECK_EQ(fifolock_etcd_acquire_n(a, "never", &sem, 4, &soon, &t), EDEADLK);
    CHECK_EQ(fifolock_etcd_acquire_n(a, "never", &fifolock_write, 2, &soon, &t), EDEADLK);
    CHECK_LE(etcd_now_ms() - t0, 1500); /* at once, not at the deadline */
    CHECK_EQ(t, -1);
    CHECK_EQ(queue_len("never"), 0);
    /* what fits goes on as if nothing came */
    CHECK_EQ(fifolock_etcd_acquire_n(a, "never", &sem, 3, &soon, &t), 0);
    CHECK_EQ(fifolock_etcd_release(a, "never", t), 0);
    fifolock_etcd_close(a);
}

static void a_deadline_withdraws_the_request_without_a_trace(void)
{
    fifolock_etcd *a = open_or_die(NULL), *b = open_or_die(NULL);
    struct timespec soon = etcd_in_ms(300), past = etcd_in_ms(0);
    int64_t ta, tb;
    long t0 = etcd_now_ms();

    CHECK_EQ(fifolock_etcd_acquire(a, "deadline", &fifolock_mutex, NULL, &ta), 0);
    CHECK_EQ(fifolock_etcd_acquire(b, "deadline", &fifolock_mutex, &soon, &tb), ETIMEDOUT);
    CHECK_LE(etcd_now_ms() - t0, 1500);
    CHECK_EQ(queue_len("deadline"), 1);
    CHECK_EQ(fifolock_etcd_acquire(b, "deadline", &fifolock_mutex, &past, &tb), ETIMEDOUT);
    CHECK_EQ(queue_len("deadline"), 1);
    CHECK_EQ(fifolock_etcd_release(a, "deadline", ta), 0);
    /* A deadline already past still takes a free lock. */
    CHECK_EQ(fifolock_etcd_acquire(b, "deadline", &fifolock_mutex, &past, &tb), 0);
    CHECK_EQ(fifolock_etcd_release(b, "deadline", tb), 0);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
}

static void a_withdrawn_head_waiter_lets_the_next_one_in(void)
{
    fifolock_etcd *a = open_or_die(NULL), *b = open_or_die(NULL), *c = open_or_die(NULL);
    struct etcd_waiter wb, wc;
    int64_t ta;

    CHECK_EQ(fifolock_etcd_acquire(a, "cancel", &fifolock_read, NULL, &ta), 0);
    etcd_start_waiter(&wb, b, "cancel", &fifolock_write, 400, false);
    wait_queue_len("cancel", 2);
    etcd_start_waiter(&wc, c, "cancel", &fifolock_read, 10000, false);
    wait_queue_len("cancel", 3);
    pthread_join(wb.thread, NULL);
    CHECK_EQ(wb.rc, ETIMEDOUT);
    /* The writer left; the reader behind it fits the holder now. */
    pthread_join(wc.thread, NULL);
    CHECK_EQ(wc.rc, 0);
    CHECK_EQ(fifolock_etcd_release(a, "cancel", ta), 0);
    CHECK_EQ(fifolock_etcd_release(c, "cancel", wc.token), 0);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
    fifolock_etcd_close(c);
}

static void closing_a_session_lets_its_waiters_and_holds_go_at_once(void)
{
    fifolock_etcd *a = open_or_die(NULL), *b = open_or_die(NULL), *c = open_or_die(NULL);
    struct etcd_waiter wb, wc;
    int64_t ta;
    long t0;

    CHECK_EQ(fifolock_etcd_acquire(a, "close", &fifolock_mutex, NULL, &ta), 0);
    etcd_start_waiter(&wb, b, "close", &fifolock_mutex, 500, false);
    wait_queue_len("close", 2);
    etcd_start_waiter(&wc, c, "close", &fifolock_mutex, 10000, false);
    wait_queue_len("close", 3);
    pthread_join(wb.thread, NULL);
    CHECK_EQ(wb.rc, ETIMEDOUT);
    t0 = etcd_now_ms();
    CHECK_EQ(fifolock_etcd_close(a), 0);
    pthread_join(wc.thread, NULL);
    CHECK_EQ(wc.rc, 0);
    CHECK_LE(wc.granted_at - t0, 1000); /* not the TTL */
    CHECK_EQ(fifolock_etcd_close(c), 0);
    CHECK_EQ(queue_len("close"), 0);
    fifolock_etcd_close(b);
}

static void tokens_grow_with_grant_order(void)
{
    fifolock_etcd *s = open_or_die(NULL);
    int64_t last = 0, t;
    int i;

    for (i = 0; i < 5; i++) {
        CHECK_EQ(fifolock_etcd_acquire(s, "tokens", &fifolock_mutex, NULL, &t), 0);
        CHECK_LT(last, t);
        last = t;
        CHECK_EQ(fifolock_etcd_release(s, "tokens", t), 0);
    }
    fifolock_etcd_close(s);
}

static int lost_calls;
static int lost_reason;
static int64_t lost_token;
static pthread_mutex_t lost_mu = PTHREAD_MUTEX_INITIALIZER;

static void on_lost(fifolock_etcd *s, const char *name, int64_t token, int reason, void *arg)
{
    (void)s;
    (void)name;
    (void)arg;
    pthread_mutex_lock(&lost_mu);
    lost_calls++;
    lost_reason = reason;
    lost_token = token;
    pthread_mutex_unlock(&lost_mu);
}

static void a_deleted_entry_is_a_lost_lock_the_holder_is_told_of(void)
{
    struct fifolock_etcd_options o = { 0 };
    fifolock_etcd *s;
    char key[300];
    int64_t t;
    int i, calls = 0;

    o.lost = on_lost;
    s = open_or_die(&o);
    lost_calls = 0;
    CHECK_EQ(fifolock_etcd_acquire(s, "lost", &fifolock_mutex, NULL, &t), 0);
    CHECK_EQ(fifolock_etcd_key(s, "lost", t, key, sizeof key), 0);
    CHECK_EQ(fifolock_etcd_key(s, "lost", t, key, 5), ERANGE);
    CHECK_EQ(fifolock_etcd_check(s, "lost", t, NULL), 0);
    CHECK_EQ(etcd_delete(ep, key), 0);
    for (i = 0; i < 200 && calls == 0; i++) {
        etcd_sleep_ms(10);
        pthread_mutex_lock(&lost_mu);
        calls = lost_calls;
        pthread_mutex_unlock(&lost_mu);
    }
    CHECK_EQ(calls, 1);
    CHECK_EQ(lost_reason, ENOLCK);
    CHECK_EQ(lost_token, t);
    CHECK_EQ(fifolock_etcd_check(s, "lost", t, NULL), ENOLCK);
    CHECK_EQ(fifolock_etcd_release(s, "lost", t), 0);
    CHECK_EQ(fifolock_etcd_check(s, "lost", t, NULL), EPERM);
    /* The session itself goes on. */
    CHECK_EQ(fifolock_etcd_acquire(s, "lost", &fifolock_mutex, NULL, &t), 0);
    CHECK_EQ(fifolock_etcd_release(s, "lost", t), 0);
    CHECK_EQ(lost_calls, 1);
    fifolock_etcd_close(s);
}

static void a_revoked_lease_is_a_lost_session_the_holder_is_told_of(void)
{
    struct fifolock_etcd_options o = { 0 };
    fifolock_etcd *s;
    char key[300];
    long long lease;
    int64_t t, t2;
    int i, calls = 0;

    o.lost = on_lost;
    o.ttl = 3;
    s = open_or_die(&o);
    lost_calls = 0;
    CHECK_EQ(fifolock_etcd_acquire(s, "revoked", &fifolock_mutex, NULL, &t), 0);
    lease = etcd_nth_entry(ep, "fifolock/revoked/", 0, key, sizeof key);
    CHECK_NE(lease, 0);
    CHECK_EQ(etcd_revoke(ep, lease), 0);
    for (i = 0; i < 300 && calls == 0; i++) {
        etcd_sleep_ms(10);
        pthread_mutex_lock(&lost_mu);
        calls = lost_calls;
        pthread_mutex_unlock(&lost_mu);
    }
    CHECK_EQ(calls, 1);
    CHECK_EQ(lost_reason, ENOLCK);
    CHECK_EQ(fifolock_etcd_check(s, "revoked", t, NULL), ENOLCK);
    /* Wait for the keepalive to say so too: then the session is lost. */
    for (i = 0; i < 300 && fifolock_etcd_safe_until(s).tv_sec != 0; i++)
        etcd_sleep_ms(10);
    CHECK_EQ(fifolock_etcd_safe_until(s).tv_sec, 0);
    CHECK_EQ(fifolock_etcd_acquire(s, "revoked", &fifolock_mutex, NULL, &t2), ENOLCK);
    CHECK_EQ(fifolock_etcd_release(s, "revoked", t), 0);
    CHECK_EQ(fifolock_etcd_close(s), 0);
    CHECK_EQ(queue_len("revoked"), 0);
}

static void a_waiter_whose_entry_is_deleted_is_told_at_once(void)
{
    fifolock_etcd *a = open_or_die(NULL), *b = open_or_die(NULL);
    struct etcd_waiter w;
    char key[300];
    int64_t ta;
    long t0;

    CHECK_EQ(fifolock_etcd_acquire(a, "gone", &fifolock_mutex, NULL, &ta), 0);
    etcd_start_waiter(&w, b, "gone", &fifolock_mutex, 10000, false);
    wait_queue_len("gone", 2);
    etcd_sleep_ms(50);
    CHECK_NE(etcd_nth_entry(ep, "fifolock/gone/", 1, key, sizeof key), 0);
    t0 = etcd_now_ms();
    CHECK_EQ(etcd_delete(ep, key), 0);
    pthread_join(w.thread, NULL);
    CHECK_EQ(w.rc, ENOLCK);
    CHECK_LE(w.granted_at - t0, 2000);
    CHECK_EQ(fifolock_etcd_check(a, "gone", ta, NULL), 0);
    CHECK_EQ(fifolock_etcd_release(a, "gone", ta), 0);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
}

static void an_entry_of_an_unknown_mode_is_never_granted_past(void)
{
    fifolock_etcd *s = open_or_die(NULL);
    struct timespec soon = etcd_in_ms(300);
    int64_t t;

    CHECK_EQ(etcd_put(ep, "fifolock/unknown/0000-foreign",
                      "{\"mode\":\"frobnicate\",\"limit\":0,\"n\":1}"),
             0);
    CHECK_EQ(fifolock_etcd_acquire(s, "unknown", &fifolock_read, &soon, &t), ETIMEDOUT);
    CHECK_EQ(etcd_put(ep, "fifolock/unknown/0000-foreign", "not json at all"), 0);
    soon = etcd_in_ms(300);
    CHECK_EQ(fifolock_etcd_acquire(s, "unknown", &fifolock_read, &soon, &t), ETIMEDOUT);
    CHECK_EQ(queue_len("unknown"), 1);
    CHECK_EQ(etcd_delete(ep, "fifolock/unknown/0000-foreign"), 0);
    soon = etcd_in_ms(2000);
    CHECK_EQ(fifolock_etcd_acquire(s, "unknown", &fifolock_read, &soon, &t), 0);
    CHECK_EQ(fifolock_etcd_release(s, "unknown", t), 0);
    fifolock_etcd_close(s);
}

static bool odd_is_compatible(const fifolock_mode *self, const fifolock_holds *holds)
{
    return fifolock_held(holds, self) < 2;
}

static void odd_lock_and_mode_names_stay_apart_and_work(void)
{
    static const fifolock_mode odd = { odd_is_compatible, "my mode/\"%\xc3\xa9\n", 7 };
    static const fifolock_mode *table[] = { &odd };
    struct fifolock_etcd_options o = { 0 };
    fifolock_etcd *a, *b, *plain;
    const char *names[] = { "a", "a/b", "a%2Fb", "sp ace\n\t", "\xc3\xa9t\xc3\xa9", "/", "%" };
    int64_t t[7], t1, t2, t3;
    struct timespec soon;
    size_t i;

    o.modes = table;
    o.nmodes = 1;
    a = open_or_die(&o);
    b = open_or_die(&o);
    plain = open_or_die(NULL);
    /* Names that a careless escape would merge: each its own queue. */
    for (i = 0; i < 7; i++)
        CHECK_EQ(fifolock_etcd_try_acquire(a, names[i], &fifolock_mutex, &t[i]), 0);
    for (i = 0; i < 7; i++)
        CHECK_EQ(fifolock_etcd_release(a, names[i], t[i]), 0);
    /* A user mode with odd characters crosses the wire by name and limit. */
    CHECK_EQ(fifolock_etcd_acquire(a, "odd", &odd, NULL, &t1), 0);
    CHECK_EQ(fifolock_etcd_acquire(b, "odd", &odd, NULL, &t2), 0);
    CHECK_EQ(fifolock_etcd_try_acquire(b, "odd", &odd, &t3), EBUSY);
    /* A session that does not know it cannot use it, nor pass it. */
    CHECK_EQ(fifolock_etcd_acquire(plain, "odd", &odd, NULL, &t3), EINVAL);
    CHECK_EQ(fifolock_etcd_release(a, "odd", t1), 0);
    soon = etcd_in_ms(300);
    CHECK_EQ(fifolock_etcd_acquire(plain, "odd", &fifolock_read, &soon, &t3), ETIMEDOUT);
    CHECK_EQ(fifolock_etcd_release(b, "odd", t2), 0);
    CHECK_EQ(fifolock_etcd_acquire(plain, "odd", &fifolock_read, NULL, &t3), 0);
    CHECK_EQ(fifolock_etcd_release(plain, "odd", t3), 0);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
    fifolock_etcd_close(plain);
}

static void mode_names_parse_as_the_command_line_spells_them(void)
{
    fifolock_mode storage;
    const fifolock_mode *m = NULL;

    CHECK_EQ(fifolock_etcd_parse_mode("mutex", &storage, &m), 0);
    CHECK_TRUE(m == &fifolock_mutex);
    CHECK_EQ(fifolock_etcd_parse_mode("six", &storage, &m), 0);
    CHECK_TRUE(m == &fifolock_six);
    CHECK_EQ(fifolock_etcd_parse_mode("upgradable", &storage, &m), 0);
    CHECK_TRUE(m == &fifolock_upgradable);
    CHECK_EQ(fifolock_etcd_parse_mode("semaphore:5", &storage, &m), 0);
    CHECK_TRUE(m == &storage);
    CHECK_EQ(storage.limit, 5);
    CHECK_EQ(fifolock_etcd_parse_mode("semaphore:0", &storage, &m), EINVAL);
    CHECK_EQ(fifolock_etcd_parse_mode("semaphore:", &storage, &m), EINVAL);
    CHECK_EQ(fifolock_etcd_parse_mode("semaphore:-3", &storage, &m), EINVAL);
    CHECK_EQ(fifolock_etcd_parse_mode("semaphore:3x", &storage, &m), EINVAL);
    CHECK_EQ(fifolock_etcd_parse_mode("Mutex", &storage, &m), EINVAL);
    CHECK_EQ(fifolock_etcd_parse_mode(NULL, &storage, &m), EINVAL);
}

static void upgradable_shares_with_readers_and_excludes_itself(void)
{
    fifolock_etcd *a = open_or_die(NULL), *b = open_or_die(NULL);
    int64_t t1, t2, t3;

    CHECK_EQ(fifolock_etcd_acquire(a, "upg", &fifolock_upgradable, NULL, &t1), 0);
    CHECK_EQ(fifolock_etcd_try_acquire(b, "upg", &fifolock_read, &t2), 0);
    CHECK_EQ(fifolock_etcd_try_acquire(b, "upg", &fifolock_upgradable, &t3), EBUSY);
    CHECK_EQ(fifolock_etcd_try_acquire(b, "upg", &fifolock_write, &t3), EBUSY);
    CHECK_EQ(fifolock_etcd_release(a, "upg", t1), 0);
    CHECK_EQ(fifolock_etcd_release(b, "upg", t2), 0);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
}

static void unreachable_endpoints_fail_clearly_within_the_timeout(void)
{
    struct fifolock_etcd_options o = { 0 };
    fifolock_etcd *s = NULL;
    char both[1200];
    long t0 = etcd_now_ms();
    int64_t t;

    o.timeout_ms = 500;
    CHECK_EQ(fifolock_etcd_open(&s, "http://127.0.0.1:1,http://127.0.0.1:2", &o), ECONNREFUSED);
    CHECK_LE(etcd_now_ms() - t0, 1500);
    CHECK_TRUE(strstr(fifolock_etcd_last_error(), "127.0.0.1") != NULL);
    CHECK_TRUE(s == NULL);
    /* A dead endpoint first in the list: the next one answers. */
    snprintf(both, sizeof both, "http://127.0.0.1:1,%s", ep);
    CHECK_EQ(fifolock_etcd_open(&s, both, &o), 0);
    CHECK_EQ(fifolock_etcd_acquire(s, "failover", &fifolock_mutex, NULL, &t), 0);
    CHECK_EQ(fifolock_etcd_release(s, "failover", t), 0);
    CHECK_EQ(fifolock_etcd_close(s), 0);
}

static void a_lost_reply_to_the_join_leaves_one_entry_and_the_same_token(void)
{
    struct fifolock_etcd_options o = { 0 };
    static struct proxy px; /* its thread outlives the test: never on the stack */
    fifolock_etcd *s = NULL;
    const char *colon = strrchr(ep, ':');
    char key[300];
    int64_t t;

    proxy_start(&px, atoi(colon + 1));
    o.timeout_ms = 3000;
    CHECK_EQ(fifolock_etcd_open(&s, px.url, &o), 0);
    /* The join's transaction is applied, its reply lost: the retry finds the entry. */
    proxy_drop(&px, "/v3/kv/txn", 1);
    CHECK_EQ(fifolock_etcd_acquire(s, "idem", &fifolock_mutex, NULL, &t), 0);
    CHECK_EQ(atomic_load(&px.dropped), 1);
    CHECK_EQ(queue_len("idem"), 1);
    CHECK_EQ(fifolock_etcd_key(s, "idem", t, key, sizeof key), 0);
    CHECK_EQ(etcd_create_revision(ep, key), t);
    /* A lost reply to the release's delete: deleting again is harmless. */
    proxy_drop(&px, "/v3/kv/deleterange", 1);
    CHECK_EQ(fifolock_etcd_release(s, "idem", t), 0);
    CHECK_EQ(atomic_load(&px.dropped), 2);
    CHECK_EQ(queue_len("idem"), 0);
    CHECK_EQ(fifolock_etcd_close(s), 0);
}

/* A grant applied and its reply lost: the retry finds its own lease, no second one. */
static void a_lost_reply_to_the_lease_grant_leaves_one_lease(void)
{
    struct fifolock_etcd_options o = { 0 };
    static struct proxy px; /* its thread outlives the test: never on the stack */
    fifolock_etcd *s = NULL;
    const char *colon = strrchr(ep, ':');
    long before = etcd_lease_count(ep, NULL);
    int64_t t;

    proxy_start(&px, atoi(colon + 1));
    o.timeout_ms = 3000;
    proxy_drop(&px, "/v3/lease/grant", 1);
    CHECK_EQ(fifolock_etcd_open(&s, px.url, &o), 0);
    CHECK_EQ(atomic_load(&px.dropped), 1);
    CHECK_EQ(etcd_lease_count(ep, NULL), before + 1);
    if (s == NULL)
        return;
    CHECK_EQ(fifolock_etcd_acquire(s, "grant", &fifolock_mutex, NULL, &t), 0);
    CHECK_EQ(fifolock_etcd_release(s, "grant", t), 0);
    CHECK_EQ(fifolock_etcd_close(s), 0);
    CHECK_EQ(etcd_lease_count(ep, NULL), before);
}

/* A long TTL: an entry left behind would block the next session for 60 s. */
static fifolock_etcd *open_long_lease(void)
{
    struct fifolock_etcd_options o;

    memset(&o, 0, sizeof o);
    o.ttl = 60;
    return open_or_die(&o);
}

static void an_interrupt_ends_every_wait_of_the_session_and_leaves_no_entry(void)
{
    fifolock_etcd *a = open_long_lease(), *b = open_long_lease(), *c = open_long_lease();
    struct etcd_waiter head, behind, cw;
    struct timespec soon = etcd_in_ms(2000);
    int64_t t1, t2, tc;
    long t0;

    /* Deadlines only so that a broken interrupt fails instead of hanging.
     * intr1: b heads the waiters (W1); intr2: b waits behind c's waiter (W2). */
    CHECK_EQ(fifolock_etcd_acquire(a, "intr1", &fifolock_mutex, NULL, &t1), 0);
    CHECK_EQ(fifolock_etcd_acquire(a, "intr2", &fifolock_mutex, NULL, &t2), 0);
    etcd_start_waiter(&head, b, "intr1", &fifolock_mutex, 15000, false);
    wait_queue_len("intr1", 2);
    etcd_start_waiter(&cw, c, "intr2", &fifolock_write, 20000, false);
    wait_queue_len("intr2", 2);
    etcd_start_waiter(&behind, b, "intr2", &fifolock_write, 15000, false);
    wait_queue_len("intr2", 3);
    etcd_sleep_ms(200); /* both watches are open */
    t0 = etcd_now_ms();
    CHECK_EQ(fifolock_etcd_interrupt(b), 0);
    pthread_join(head.thread, NULL);
    pthread_join(behind.thread, NULL);
    CHECK_EQ(head.rc, EINTR);
    CHECK_EQ(behind.rc, EINTR);
    CHECK_LE(head.granted_at - t0, 1000);
    CHECK_LE(behind.granted_at - t0, 1000);
    /* Withdrawn, while b's lease lives on: the others go next, at once. */
    CHECK_EQ(queue_len("intr1"), 1);
    CHECK_EQ(queue_len("intr2"), 2);
    CHECK_EQ(fifolock_etcd_release(a, "intr1", t1), 0);
    t0 = etcd_now_ms();
    CHECK_EQ(fifolock_etcd_acquire(c, "intr1", &fifolock_mutex, &soon, &tc), 0);
    CHECK_LE(etcd_now_ms() - t0, 1000);
    CHECK_EQ(fifolock_etcd_release(c, "intr1", tc), 0);
    CHECK_EQ(fifolock_etcd_release(a, "intr2", t2), 0);
    pthread_join(cw.thread, NULL);
    CHECK_EQ(cw.rc, 0);
    CHECK_EQ(fifolock_etcd_release(c, "intr2", cw.token), 0);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
    fifolock_etcd_close(c);
}

static void an_interrupt_stays_until_cleared_and_spares_try_acquire(void)
{
    fifolock_etcd *a = open_long_lease(), *b = open_long_lease();
    struct timespec soon = etcd_in_ms(300);
    int64_t ta, tb;
    long t0;

    CHECK_EQ(fifolock_etcd_interrupt(NULL), EINVAL);
    CHECK_EQ(fifolock_etcd_clear_interrupt(NULL), EINVAL);
    CHECK_EQ(fifolock_etcd_acquire(a, "sticky", &fifolock_mutex, NULL, &ta), 0);
    CHECK_EQ(fifolock_etcd_interrupt(b), 0);
    CHECK_EQ(fifolock_etcd_interrupt(b), 0);
    /* An interrupt that came before the wait is not lost: it sends nothing. */
    t0 = etcd_now_ms();
    CHECK_EQ(fifolock_etcd_acquire(b, "sticky", &fifolock_mutex, NULL, &tb), EINTR);
    CHECK_EQ(fifolock_etcd_acquire_n(b, "sticky", &fifolock_mutex, 1, NULL, &tb), EINTR);
    CHECK_LE(etcd_now_ms() - t0, 200);
    CHECK_EQ(queue_len("sticky"), 1);
    CHECK_EQ(fifolock_etcd_acquire(b, "free", &fifolock_mutex, NULL, &tb), EINTR);
    CHECK_EQ(queue_len("free"), 0);
    CHECK_EQ(fifolock_etcd_try_acquire(b, "sticky", &fifolock_mutex, &tb), EBUSY);
    CHECK_EQ(fifolock_etcd_try_acquire(b, "free", &fifolock_mutex, &tb), 0);
    CHECK_EQ(fifolock_etcd_release(b, "free", tb), 0);
    /* Cleared (twice is harmless): waits run to their deadline again. */
    CHECK_EQ(fifolock_etcd_clear_interrupt(b), 0);
    errno = 1234; /* async-signal-safe: errno is kept, even with nothing to clear */
    CHECK_EQ(fifolock_etcd_clear_interrupt(b), 0);
    CHECK_EQ(errno, 1234);
    CHECK_EQ(fifolock_etcd_acquire(b, "sticky", &fifolock_mutex, &soon, &tb), ETIMEDOUT);
    CHECK_EQ(fifolock_etcd_release(a, "sticky", ta), 0);
    CHECK_EQ(fifolock_etcd_acquire(b, "sticky", &fifolock_mutex, NULL, &tb), 0);
    CHECK_EQ(fifolock_etcd_release(b, "sticky", tb), 0);
    CHECK_EQ(queue_len("sticky"), 0);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
}

static fifolock_etcd *signalled_session;

static void interrupt_on_signal(int sig)
{
    (void)sig;
    fifolock_etcd_interrupt(signalled_session);
}

static void a_signal_handler_on_the_waiting_thread_interrupts_its_wait(void)
{
    fifolock_etcd *a = open_long_lease(), *b = open_long_lease();
    struct sigaction sa, old;
    struct etcd_waiter w;
    int64_t ta;
    long t0;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = interrupt_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, &old);
    signalled_session = b;
    CHECK_EQ(fifolock_etcd_acquire(a, "signal", &fifolock_mutex, NULL, &ta), 0);
    etcd_start_waiter(&w, b, "signal", &fifolock_mutex, 15000, false);
    wait_queue_len("signal", 2);
    etcd_sleep_ms(200);
    t0 = etcd_now_ms();
    pthread_kill(w.thread, SIGUSR1);
    pthread_join(w.thread, NULL);
    CHECK_EQ(w.rc, EINTR);
    CHECK_LE(w.granted_at - t0, 1000);
    CHECK_EQ(queue_len("signal"), 1);
    sigaction(SIGUSR1, &old, NULL);
    CHECK_EQ(fifolock_etcd_release(a, "signal", ta), 0);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
}

int main(int argc, char **argv)
{
    static const struct check_test tests[] = {
        TEST(uncontended_acquire_gives_a_token_and_release_leaves_nothing),
        TEST(bad_arguments_are_einval_and_leave_nothing),
        TEST(open_config_takes_the_attempt_timeout_and_checks_its_size),
        TEST(try_acquire_is_refused_while_held_and_leaves_no_entry),
        TEST(readers_share_and_a_writer_waits_for_them),
        TEST(a_compatible_reader_queues_behind_a_waiting_writer),
        TEST(readers_behind_a_writer_are_all_granted_when_it_leaves),
        TEST(a_semaphore_admits_its_size_in_weighted_requests),
        TEST(a_request_that_never_fits_is_edeadlk_and_leaves_no_entry),
        TEST(a_release_wakes_a_constant_number_of_waiters),
        TEST(a_deadline_withdraws_the_request_without_a_trace),
        TEST(a_withdrawn_head_waiter_lets_the_next_one_in),
        TEST(closing_a_session_lets_its_waiters_and_holds_go_at_once),
        TEST(tokens_grow_with_grant_order),
        TEST(a_deleted_entry_is_a_lost_lock_the_holder_is_told_of),
        TEST(a_revoked_lease_is_a_lost_session_the_holder_is_told_of),
        TEST(a_waiter_whose_entry_is_deleted_is_told_at_once),
        TEST(an_entry_of_an_unknown_mode_is_never_granted_past),
        TEST(odd_lock_and_mode_names_stay_apart_and_work),
        TEST(mode_names_parse_as_the_command_line_spells_them),
        TEST(upgradable_shares_with_readers_and_excludes_itself),
        TEST(unreachable_endpoints_fail_clearly_within_the_timeout),
        TEST(a_lost_reply_to_the_join_leaves_one_entry_and_the_same_token),
        TEST(a_lost_reply_to_the_lease_grant_leaves_one_lease),
        TEST(an_interrupt_ends_every_wait_of_the_session_and_leaves_no_entry),
        TEST(an_interrupt_stays_until_cleared_and_spares_try_acquire),
        TEST(a_signal_handler_on_the_waiting_thread_interrupts_its_wait),
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
