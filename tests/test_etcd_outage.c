/*
 * The etcd lock while etcd is away longer than a session's TTL: a single
 * real member paused with SIGSTOP (or killed and started again on its data
 * dir and ports) for longer than the TTL (2 s). A waiter held nothing, so
 * it opens a new lease and queues again, at the tail, while its deadline
 * allows; a holder is told its lock is lost, as ever. And an etcd that is
 * only slow (every answer later than one attempt's time) is still waited
 * for, within the budget. Each test starts its own etcd.
 * Skips (77) only when etcd is not installed.
 */
#include "check.h"
#include "etcd/harness.h"
#include "etcd/proxy.h"

#include <pthread.h>

static struct etcd_server srv;

/* A waiter of fifolock_mutex that says why its acquire failed, if it did. */
static void start_waiter(struct etcd_waiter *w, fifolock_etcd *s, const char *name, long wait_ms)
{
    etcd_start_waiter(w, s, name, &fifolock_mutex, wait_ms, true);
}

static struct etcd_lost_count lost;

static fifolock_etcd *open_ttl(int ttl)
{
    struct fifolock_etcd_options o = { 0 };

    o.ttl = ttl;
    o.lost = etcd_count_lost;
    o.lost_arg = &lost;
    return etcd_open_or_die(srv.endpoints, &o);
}

static void wait_queue_len(const char *name, long n)
{
    etcd_check_queue_len(srv.url[0], name, n);
}

/*
 * etcd paused for 3.5 s; the holder's and the waiter's leases (TTL 2) run
 * out. The holder is told (the callback, check()); the waiter, whose
 * deadline is far, gets a new lease and holds once etcd is back.
 */
static void a_waiter_outlives_an_outage_longer_than_its_ttl_and_the_holder_is_told(void)
{
    fifolock_etcd *h, *ws;
    struct etcd_waiter w;
    int64_t t;
    long resumed;

    if (etcd_up(&srv, 1, NULL) != 0)
        exit(1);
    memset(&lost, 0, sizeof lost);
    h = open_ttl(2);
    ws = open_ttl(2);
    CHECK_EQ(fifolock_etcd_acquire(h, "outage", &fifolock_mutex, NULL, &t), 0);
    start_waiter(&w, ws, "outage", 20000);
    wait_queue_len("outage", 2);
    etcd_sleep_ms(100);
    kill(srv.pid[0], SIGSTOP);
    etcd_sleep_ms(3500);
    kill(srv.pid[0], SIGCONT);
    resumed = etcd_now_ms();
    pthread_join(w.thread, NULL);
    printf("etcd paused 3.5 s (TTL 2 s): the waiter held %ld ms after it resumed\n",
           w.granted_at - resumed);
    CHECK_EQ(w.rc, 0);
    CHECK_LT(t, w.token);
    CHECK_LT(w.granted_at - resumed, 8000);
    CHECK_EQ(__atomic_load_n(&lost.calls, __ATOMIC_SEQ_CST), 1);
    CHECK_NE(fifolock_etcd_check(h, "outage", t, NULL), 0);
    CHECK_EQ(fifolock_etcd_check(ws, "outage", w.token, NULL), 0);
    /* One entry: the waiter's new one; the old went with the old lease. */
    CHECK_EQ(etcd_queue_len(srv.url[0], "outage"), 1);
    CHECK_EQ(fifolock_etcd_release(ws, "outage", w.token), 0);
    CHECK_EQ(fifolock_etcd_release(h, "outage", t), 0);
    fifolock_etcd_close(h);
    CHECK_EQ(fifolock_etcd_close(ws), 0);
    CHECK_EQ(etcd_queue_len(srv.url[0], "outage"), 0);
    etcd_down(&srv);
}

/*
 * A holder and a waiter behind it with long leases (TTL 30) and, between
 * them, a waiter with TTL 2. etcd is killed and started again 3.5 s later:
 * only the short lease runs out. That waiter queues again, at the tail: it
 * is granted after the one that was behind it, not before.
 */
static void a_waiter_whose_lease_ran_out_queues_again_at_the_tail(void)
{
    fifolock_etcd *a, *b, *c;
    struct etcd_waiter wb, wc;
    int64_t t;

    if (etcd_up(&srv, 1, NULL) != 0)
        exit(1);
    memset(&lost, 0, sizeof lost);
    a = open_ttl(30);
    b = open_ttl(2);
    c = open_ttl(30);
    CHECK_EQ(fifolock_etcd_acquire(a, "tail", &fifolock_mutex, NULL, &t), 0);
    start_waiter(&wb, b, "tail", 20000);
    wait_queue_len("tail", 2);
    start_waiter(&wc, c, "tail", 20000);
    wait_queue_len("tail", 3);
    etcd_sleep_ms(100);
    kill(srv.pid[0], SIGKILL);
    etcd_sleep_ms(3500);
    CHECK_EQ(etcd_restart(&srv, 0), 0);
    /* b rejoins behind c. */
    {
        char key[300];
        int i;

        for (i = 0; i < 800; i++) {
            if (etcd_queue_len(srv.url[0], "tail") == 3 &&
                etcd_nth_entry(srv.url[0], "fifolock/tail/", 2, key, sizeof key) != 0 &&
                etcd_nth_entry(srv.url[0], "fifolock/tail/", 1, key, sizeof key) != 0)
                break;
            etcd_sleep_ms(10);
        }
    }
    etcd_sleep_ms(300);
    CHECK_EQ(etcd_queue_len(srv.url[0], "tail"), 3);
    CHECK_EQ(wb.rc, -1);
    CHECK_EQ(wc.rc, -1);
    CHECK_EQ(fifolock_etcd_check(a, "tail", t, NULL), 0);
    CHECK_EQ(fifolock_etcd_release(a, "tail", t), 0);
    pthread_join(wc.thread, NULL);
    CHECK_EQ(wc.rc, 0);
    etcd_sleep_ms(200);
    CHECK_EQ(wb.rc, -1);    /* still waiting, behind c */
    CHECK_EQ(fifolock_etcd_release(c, "tail", wc.token), 0);
    pthread_join(wb.thread, NULL);
    CHECK_EQ(wb.rc, 0);
    CHECK_LT(wc.token, wb.token);
    CHECK_LE(wc.granted_at, wb.granted_at);
    CHECK_EQ(__atomic_load_n(&lost.calls, __ATOMIC_SEQ_CST), 0);
    CHECK_EQ(fifolock_etcd_release(b, "tail", wb.token), 0);
    CHECK_EQ(fifolock_etcd_close(a), 0);
    CHECK_EQ(fifolock_etcd_close(b), 0);
    CHECK_EQ(fifolock_etcd_close(c), 0);
    CHECK_EQ(etcd_queue_len(srv.url[0], "tail"), 0);
    etcd_down(&srv);
}

/* Outage longer than the waiter's deadline: ETIMEDOUT at the deadline, no entry left. */
static void a_waiter_whose_deadline_passes_during_the_outage_times_out(void)
{
    fifolock_etcd *h, *ws;
    struct etcd_waiter w;
    int64_t t;
    long t0;

    if (etcd_up(&srv, 1, NULL) != 0)
        exit(1);
    h = open_ttl(30);
    ws = open_ttl(2);
    CHECK_EQ(fifolock_etcd_acquire(h, "deadline", &fifolock_mutex, NULL, &t), 0);
    t0 = etcd_now_ms();
    start_waiter(&w, ws, "deadline", 3000);
    wait_queue_len("deadline", 2);
    kill(srv.pid[0], SIGSTOP);
    pthread_join(w.thread, NULL);
    CHECK_EQ(w.rc, ETIMEDOUT);
    CHECK_LT(etcd_now_ms() - t0, 4500);
    kill(srv.pid[0], SIGCONT);
    etcd_sleep_ms(1500);    /* the old entry goes: revoked, or expired */
    CHECK_EQ(etcd_queue_len(srv.url[0], "deadline"), 1);
    CHECK_EQ(fifolock_etcd_release(h, "deadline", t), 0);
    CHECK_EQ(fifolock_etcd_close(h), 0);
    fifolock_etcd_close(ws);
    etcd_down(&srv);
}

/*
 * Every answer 1.3 s late (a loaded disk), longer than one attempt (1 s):
 * the lease grant is sent again with a longer attempt and gets through
 * within its budget (5 s), and the grant etcd applied twice is one lease
 * (by its ID). The keepalive, too, waits longer after a failure: the lease
 * (TTL 6 s) outlives a hold longer than the TTL. (The relay cannot delay
 * answers on a connection it turned into a pipe, as the join's may be.)
 */
static void a_slow_etcd_is_waited_for_within_the_budget(void)
{
    static struct proxy px; /* its thread outlives the test */
    struct fifolock_etcd_options o = { 0 };
    fifolock_etcd *s = NULL;
    int64_t t = 0;
    long t0;
    int rc;

    if (etcd_up(&srv, 1, NULL) != 0)
        exit(1);
    proxy_start(&px, atoi(strrchr(srv.url[0], ':') + 1));
    proxy_delay(&px, 1300);
    o.ttl = 6;
    o.lost = etcd_count_lost;
    o.lost_arg = &lost;
    memset(&lost, 0, sizeof lost);
    t0 = etcd_now_ms();
    rc = fifolock_etcd_open(&s, px.url, &o);
    printf("every answer 1.3 s late: open took %ld ms", etcd_now_ms() - t0);
    if (rc != 0)
        fprintf(stderr, "\nopen: %s (%s)\n", fifolock_etcd_strerror(rc), fifolock_etcd_last_error());
    CHECK_EQ(rc, 0);
    if (s == NULL) {
        printf("\n");
        etcd_down(&srv);
        return;
    }
    CHECK_EQ(etcd_lease_count(srv.url[0], NULL), 1);
    t0 = etcd_now_ms();
    CHECK_EQ(fifolock_etcd_acquire(s, "slow", &fifolock_mutex, NULL, &t), 0);
    printf(", acquire %ld ms\n", etcd_now_ms() - t0);
    CHECK_EQ(etcd_queue_len(srv.url[0], "slow"), 1);
    etcd_sleep_ms(7000);
    CHECK_EQ(fifolock_etcd_check(s, "slow", t, NULL), 0);
    CHECK_EQ(__atomic_load_n(&lost.calls, __ATOMIC_SEQ_CST), 0);
    CHECK_EQ(fifolock_etcd_release(s, "slow", t), 0);
    CHECK_EQ(fifolock_etcd_close(s), 0);
    CHECK_EQ(etcd_queue_len(srv.url[0], "slow"), 0);
    CHECK_EQ(etcd_lease_count(srv.url[0], NULL), 0);
    proxy_delay(&px, 0);
    etcd_down(&srv);
}

int main(int argc, char **argv)
{
    static const struct check_test tests[] = {
        TEST(a_waiter_outlives_an_outage_longer_than_its_ttl_and_the_holder_is_told),
        TEST(a_waiter_whose_lease_ran_out_queues_again_at_the_tail),
        TEST(a_waiter_whose_deadline_passes_during_the_outage_times_out),
        TEST(a_slow_etcd_is_waited_for_within_the_budget),
    };

    if (etcd_up(&srv, 1, NULL) == ETCD_SKIP) {
        printf("etcd is not installed: skipped\n");
        return ETCD_SKIP;
    }
    etcd_down(&srv);
    return etcd_run_tests(tests, sizeof tests / sizeof tests[0], argc, argv);
}
