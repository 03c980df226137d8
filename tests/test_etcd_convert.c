/*
 * Conversions of the etcd lock (fifolock_etcd_convert and its try and timed
 * forms) against a real single-member etcd: the switch made at once, the
 * switch that waits ahead of every waiter, one waiting conversion per lock,
 * the deadline, the interrupt and a converter's death that leave `from`
 * held (or the lock free), and the new fencing token. Skips (77) only when
 * etcd is not installed.
 */
#include "check.h"
#include "etcd/harness.h"
#include "etcd/proxy.h"

#include <pthread.h>
#include <signal.h>

static struct etcd_server srv;
static const char *ep;

static fifolock_etcd *open_ttl(int ttl)
{
    struct fifolock_etcd_options o = { 0 };

    o.ttl = ttl;
    return etcd_open_or_die(ep, &o);
}

static fifolock_etcd *open_s(void)
{
    return etcd_open_or_die(ep, NULL);
}

/* Keys of the lock's queue: its requests, converted holds and claims. */
static long queue_len(const char *name)
{
    return etcd_queue_len(ep, name);
}

/* The lock's conversion claims (0 or 1). */
static long claims(const char *name)
{
    char prefix[300];

    snprintf(prefix, sizeof prefix, "fifolock/%s/~c", name);
    return etcd_count(ep, prefix, NULL);
}

static void wait_until(long (*count)(const char *), const char *name, long n)
{
    long i;

    for (i = 0; i < 1000 && count(name) != n; i++)
        etcd_sleep_ms(5);
    CHECK_EQ(count(name), n);
}

/* A thread that acquires, or converts, and reports. */
struct job {
    fifolock_etcd *s;
    const char *name;
    const fifolock_mode *mode;
    int64_t token;              /* convert: the hold's; then the new one */
    bool convert;
    long deadline_ms;           /* 0: none */
    int rc;                     /* -1 while it runs */
    pthread_t thread;
};

static void *job_main(void *arg)
{
    struct job *j = arg;
    struct timespec d = etcd_in_ms(j->deadline_ms);
    int64_t t = 0;
    int rc;

    if (j->convert)
        rc = fifolock_etcd_timed_convert(j->s, j->name, j->token, j->mode,
                                         j->deadline_ms ? &d : NULL, &t);
    else
        rc = fifolock_etcd_acquire(j->s, j->name, j->mode, j->deadline_ms ? &d : NULL, &t);
    if (rc == 0)
        j->token = t;
    __atomic_store_n(&j->rc, rc, __ATOMIC_SEQ_CST);
    return NULL;
}

static void start(struct job *j, fifolock_etcd *s, const char *name, const fifolock_mode *mode,
                  bool convert, int64_t token, long deadline_ms)
{
    j->s = s;
    j->name = name;
    j->mode = mode;
    j->convert = convert;
    j->token = token;
    j->deadline_ms = deadline_ms;
    j->rc = -1;
    pthread_create(&j->thread, NULL, job_main, j);
}

static int job_rc(struct job *j)
{
    return __atomic_load_n(&j->rc, __ATOMIC_SEQ_CST);
}

static void a_downgrade_is_made_at_once_with_a_new_larger_token(void)
{
    fifolock_etcd *a = open_s(), *b = open_s();
    int64_t t, t2 = 0, tb;
    char key[512];

    CHECK_EQ(fifolock_etcd_acquire(a, "down", &fifolock_write, NULL, &t), 0);
    CHECK_EQ(fifolock_etcd_convert(a, "down", t, &fifolock_read, &t2), 0);
    CHECK_LT(t, t2);
    CHECK_EQ(queue_len("down"), 1);
    CHECK_EQ(claims("down"), 0);
    /* The hold is a reader now: another reader joins it, a writer does not. */
    CHECK_EQ(fifolock_etcd_try_acquire(b, "down", &fifolock_write, &tb), EBUSY);
    CHECK_EQ(fifolock_etcd_try_acquire(b, "down", &fifolock_read, &tb), 0);
    CHECK_LT(t2, tb);
    CHECK_EQ(fifolock_etcd_check(a, "down", t2, NULL), 0);
    CHECK_EQ(fifolock_etcd_key(a, "down", t2, key, sizeof key), 0);
    CHECK_EQ(etcd_create_revision(ep, key), t2);
    CHECK_EQ(fifolock_etcd_release(b, "down", tb), 0);
    CHECK_EQ(fifolock_etcd_release(a, "down", t2), 0);
    CHECK_EQ(queue_len("down"), 0);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
}

static void the_old_token_is_refused_after_the_switch(void)
{
    fifolock_etcd *a = open_s();
    int64_t t, t2 = 0;
    char key[512];

    CHECK_EQ(fifolock_etcd_acquire(a, "old", &fifolock_upgradable, NULL, &t), 0);
    CHECK_EQ(fifolock_etcd_convert(a, "old", t, &fifolock_write, &t2), 0);
    CHECK_EQ(fifolock_etcd_check(a, "old", t, NULL), EPERM);
    CHECK_EQ(fifolock_etcd_key(a, "old", t, key, sizeof key), EPERM);
    CHECK_EQ(fifolock_etcd_release(a, "old", t), EPERM);
    CHECK_EQ(fifolock_etcd_convert(a, "old", t, &fifolock_read, NULL), EPERM);
    CHECK_EQ(fifolock_etcd_release(a, "old", t2), 0);
    CHECK_EQ(queue_len("old"), 0);
    fifolock_etcd_close(a);
}

static void bad_arguments_are_refused_and_change_nothing(void)
{
    fifolock_etcd *a = open_s();
    static const fifolock_mode nameless = { fifolock_semaphore_is_compatible, NULL, 2 };
    static const fifolock_mode stranger = { fifolock_semaphore_is_compatible, "stranger", 2 };
    int64_t t;

    CHECK_EQ(fifolock_etcd_acquire(a, "bad", &fifolock_read, NULL, &t), 0);
    CHECK_EQ(fifolock_etcd_convert(NULL, "bad", t, &fifolock_write, NULL), EINVAL);
    CHECK_EQ(fifolock_etcd_convert(a, NULL, t, &fifolock_write, NULL), EINVAL);
    CHECK_EQ(fifolock_etcd_convert(a, "", t, &fifolock_write, NULL), EINVAL);
    CHECK_EQ(fifolock_etcd_convert(a, "bad", t, NULL, NULL), EINVAL);
    CHECK_EQ(fifolock_etcd_convert(a, "bad", t, &nameless, NULL), EINVAL);
    CHECK_EQ(fifolock_etcd_convert(a, "bad", t, &stranger, NULL), EINVAL);
    CHECK_EQ(fifolock_etcd_convert(a, "bad", t + 1000, &fifolock_write, NULL), EPERM);
    CHECK_EQ(fifolock_etcd_convert(a, "other", t, &fifolock_write, NULL), EPERM);
    CHECK_EQ(fifolock_etcd_try_convert(a, "bad", t + 1000, &fifolock_write, NULL), EPERM);
    CHECK_EQ(fifolock_etcd_check(a, "bad", t, NULL), 0);
    CHECK_EQ(queue_len("bad"), 1);
    CHECK_EQ(fifolock_etcd_release(a, "bad", t), 0);
    fifolock_etcd_close(a);
}

static void a_weighted_hold_converts_whole(void)
{
    fifolock_etcd *a = open_s(), *b = open_s();
    static const fifolock_mode sem3 = FIFOLOCK_SEMAPHORE(3), sem2 = FIFOLOCK_SEMAPHORE(2);
    int64_t t, t2, tb;

    CHECK_EQ(fifolock_etcd_acquire_n(a, "weighted", &fifolock_read, 2, NULL, &t), 0);
    /* Two holds of write can never be: refused, and the two reads stay. */
    CHECK_EQ(fifolock_etcd_convert(a, "weighted", t, &fifolock_write, NULL), EDEADLK);
    CHECK_EQ(claims("weighted"), 0);
    CHECK_EQ(fifolock_etcd_release(a, "weighted", t), 0);
    CHECK_EQ(fifolock_etcd_acquire_n(a, "weighted", &sem3, 2, NULL, &t), 0);
    CHECK_EQ(fifolock_etcd_convert(a, "weighted", t, &sem2, &t2), 0);
    /* Two permits of the semaphore of 2 are taken: none is left. */
    CHECK_EQ(fifolock_etcd_try_acquire(b, "weighted", &sem2, &tb), EBUSY);
    CHECK_EQ(fifolock_etcd_try_acquire(b, "weighted", &sem3, &tb), 0);
    CHECK_EQ(fifolock_etcd_release(b, "weighted", tb), 0);
    CHECK_EQ(fifolock_etcd_release(a, "weighted", t2), 0);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
}

static void a_waiting_writer_does_not_see_the_converted_holder_go(void)
{
    fifolock_etcd *a = open_s(), *b = open_s();
    struct job w;
    int64_t t, t2;
    char key[512];

    /* The writer heads the waiters (it watches the queue for deletions);
     * the switch deletes the reader's entry, and the hold goes on. */
    CHECK_EQ(fifolock_etcd_acquire(a, "head", &fifolock_read, NULL, &t), 0);
    start(&w, b, "head", &fifolock_write, false, 0, 0);
    wait_until(queue_len, "head", 2);
    etcd_sleep_ms(200);
    CHECK_EQ(fifolock_etcd_convert(a, "head", t, &fifolock_upgradable, &t2), 0);
    etcd_sleep_ms(500);
    CHECK_EQ(job_rc(&w), -1);
    CHECK_EQ(fifolock_etcd_release(a, "head", t2), 0);
    pthread_join(w.thread, NULL);
    CHECK_EQ(w.rc, 0);
    /* w joined before the switch; its grant still has a larger token (C7). */
    CHECK_LT(t2, w.token);
    CHECK_EQ(fifolock_etcd_key(b, "head", w.token, key, sizeof key), 0);
    CHECK_EQ(etcd_create_revision(ep, key), w.token);
    CHECK_EQ(fifolock_etcd_release(b, "head", w.token), 0);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
}

static void the_head_waiter_is_not_granted_past_a_waiting_conversion(void)
{
    fifolock_etcd *a = open_s(), *b = open_s(), *c = open_s();
    struct job conv, w;
    int64_t ta, tb;

    /* w heads the waiters, behind b's upgradable; a's read upgrades and
     * waits for b. When b leaves, w would fit a's read: it must not pass
     * the conversion, which then makes a a writer. */
    CHECK_EQ(fifolock_etcd_acquire(a, "pass", &fifolock_read, NULL, &ta), 0);
    CHECK_EQ(fifolock_etcd_acquire(b, "pass", &fifolock_upgradable, NULL, &tb), 0);
    start(&w, c, "pass", &fifolock_upgradable, false, 0, 0);
    wait_until(queue_len, "pass", 3);
    etcd_sleep_ms(200);
    start(&conv, a, "pass", &fifolock_write, true, ta, 0);
    wait_until(claims, "pass", 1);
    etcd_sleep_ms(200);
    CHECK_EQ(fifolock_etcd_release(b, "pass", tb), 0);
    pthread_join(conv.thread, NULL);
    CHECK_EQ(conv.rc, 0);
    etcd_sleep_ms(300);
    CHECK_EQ(job_rc(&w), -1);
    CHECK_EQ(fifolock_etcd_release(a, "pass", conv.token), 0);
    pthread_join(w.thread, NULL);
    CHECK_EQ(w.rc, 0);
    CHECK_EQ(fifolock_etcd_release(c, "pass", w.token), 0);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
    fifolock_etcd_close(c);
}

static void a_reader_that_fits_queues_behind_a_waiting_conversion(void)
{
    fifolock_etcd *a = open_s(), *b = open_s(), *c = open_s();
    struct job conv, r;
    int64_t ta, tb, tc;

    CHECK_EQ(fifolock_etcd_acquire(a, "fits", &fifolock_upgradable, NULL, &ta), 0);
    CHECK_EQ(fifolock_etcd_acquire(b, "fits", &fifolock_read, NULL, &tb), 0);
    start(&conv, a, "fits", &fifolock_write, true, ta, 0);
    wait_until(claims, "fits", 1);
    etcd_sleep_ms(100);
    /* read fits upgradable and read, but nothing passes the conversion. */
    CHECK_EQ(fifolock_etcd_try_acquire(c, "fits", &fifolock_read, &tc), EBUSY);
    start(&r, c, "fits", &fifolock_read, false, 0, 0);
    wait_until(queue_len, "fits", 4);
    etcd_sleep_ms(300);
    CHECK_EQ(job_rc(&r), -1);
    CHECK_EQ(fifolock_etcd_release(b, "fits", tb), 0);
    pthread_join(conv.thread, NULL);
    CHECK_EQ(conv.rc, 0);
    etcd_sleep_ms(200);
    CHECK_EQ(job_rc(&r), -1);
    CHECK_EQ(fifolock_etcd_release(a, "fits", conv.token), 0);
    pthread_join(r.thread, NULL);
    CHECK_EQ(r.rc, 0);
    CHECK_EQ(fifolock_etcd_release(c, "fits", r.token), 0);
    CHECK_EQ(queue_len("fits"), 0);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
    fifolock_etcd_close(c);
}

static void an_upgrade_waits_ahead_of_a_queued_writer(void)
{
    fifolock_etcd *a = open_s(), *b = open_s(), *c = open_s();
    struct job conv, w, r;
    int64_t ta, tb;

    CHECK_EQ(fifolock_etcd_acquire(a, "ahead", &fifolock_upgradable, NULL, &ta), 0);
    CHECK_EQ(fifolock_etcd_acquire(b, "ahead", &fifolock_read, NULL, &tb), 0);
    start(&w, c, "ahead", &fifolock_write, false, 0, 0);
    wait_until(queue_len, "ahead", 3);
    start(&conv, a, "ahead", &fifolock_write, true, ta, 0);
    wait_until(claims, "ahead", 1);
    /* A reader fits the holders, but the conversion waits: it queues. */
    start(&r, b, "ahead", &fifolock_read, false, 0, 0);
    wait_until(queue_len, "ahead", 5);
    etcd_sleep_ms(300);
    CHECK_EQ(job_rc(&conv), -1);
    CHECK_EQ(job_rc(&w), -1);
    CHECK_EQ(job_rc(&r), -1);
    CHECK_EQ(fifolock_etcd_check(a, "ahead", ta, NULL), 0);
    CHECK_EQ(fifolock_etcd_release(b, "ahead", tb), 0);
    pthread_join(conv.thread, NULL);
    CHECK_EQ(conv.rc, 0);
    CHECK_LT(ta, conv.token);
    CHECK_LT(tb, conv.token);
    etcd_sleep_ms(300);
    CHECK_EQ(job_rc(&w), -1);
    CHECK_EQ(job_rc(&r), -1);
    CHECK_EQ(claims("ahead"), 0);
    CHECK_EQ(fifolock_etcd_release(a, "ahead", conv.token), 0);
    pthread_join(w.thread, NULL);
    CHECK_EQ(w.rc, 0);
    CHECK_LT(conv.token, w.token);
    etcd_sleep_ms(200);
    CHECK_EQ(job_rc(&r), -1);
    CHECK_EQ(fifolock_etcd_release(c, "ahead", w.token), 0);
    pthread_join(r.thread, NULL);
    CHECK_EQ(r.rc, 0);
    CHECK_LT(w.token, r.token);
    CHECK_EQ(fifolock_etcd_release(b, "ahead", r.token), 0);
    CHECK_EQ(queue_len("ahead"), 0);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
    fifolock_etcd_close(c);
}

static void a_second_waiting_conversion_is_edeadlk(void)
{
    fifolock_etcd *a = open_s(), *b = open_s();
    struct job conv;
    int64_t ta, tb;

    CHECK_EQ(fifolock_etcd_acquire(a, "two", &fifolock_read, NULL, &ta), 0);
    CHECK_EQ(fifolock_etcd_acquire(b, "two", &fifolock_read, NULL, &tb), 0);
    start(&conv, a, "two", &fifolock_write, true, ta, 0);
    wait_until(claims, "two", 1);
    etcd_sleep_ms(100);
    CHECK_EQ(fifolock_etcd_convert(b, "two", tb, &fifolock_write, NULL), EDEADLK);
    CHECK_EQ(fifolock_etcd_try_convert(b, "two", tb, &fifolock_write, NULL), EBUSY);
    CHECK_EQ(fifolock_etcd_check(b, "two", tb, NULL), 0);
    CHECK_EQ(job_rc(&conv), -1);
    CHECK_EQ(fifolock_etcd_release(b, "two", tb), 0);
    pthread_join(conv.thread, NULL);
    CHECK_EQ(conv.rc, 0);
    CHECK_EQ(fifolock_etcd_release(a, "two", conv.token), 0);
    CHECK_EQ(queue_len("two"), 0);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
}

static void a_conversion_that_fits_is_made_beside_a_waiting_one(void)
{
    fifolock_etcd *a = open_s(), *b = open_s();
    struct job conv;
    int64_t ta, tb, tb2 = 0;

    /* a upgrades (waits for b's read); b's read to read switches at once. */
    CHECK_EQ(fifolock_etcd_acquire(a, "beside", &fifolock_upgradable, NULL, &ta), 0);
    CHECK_EQ(fifolock_etcd_acquire(b, "beside", &fifolock_read, NULL, &tb), 0);
    start(&conv, a, "beside", &fifolock_write, true, ta, 0);
    wait_until(claims, "beside", 1);
    etcd_sleep_ms(200);
    CHECK_EQ(fifolock_etcd_convert(b, "beside", tb, &fifolock_read, &tb2), 0);
    CHECK_LT(tb, tb2);
    etcd_sleep_ms(200);
    CHECK_EQ(job_rc(&conv), -1);
    CHECK_EQ(fifolock_etcd_release(b, "beside", tb2), 0);
    pthread_join(conv.thread, NULL);
    CHECK_EQ(conv.rc, 0);
    CHECK_LT(tb2, conv.token);
    CHECK_EQ(fifolock_etcd_release(a, "beside", conv.token), 0);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
}

static void two_switches_decided_from_one_read_are_not_both_made(void)
{
    struct fifolock_etcd_options o = { 0 };
    static struct proxy px; /* its thread outlives the test: never on the stack */
    fifolock_etcd *a = NULL, *b = open_s(), *c = open_s();
    const char *colon = strrchr(ep, ':');
    struct job conv, up;
    int64_t ta, tb, tc, tb2;

    /* c waits to upgrade to write; a and b, readers, both turn upgradable
     * beside it. a reads the queue before b's switch and, its answers held
     * back by a slow relay, switches after it: one of them only. */
    proxy_start(&px, atoi(colon + 1));
    o.timeout_ms = 5000;
    CHECK_EQ(fifolock_etcd_open(&a, px.url, &o), 0);
    CHECK_EQ(fifolock_etcd_acquire(c, "beside2", &fifolock_read, NULL, &tc), 0);
    CHECK_EQ(fifolock_etcd_acquire(a, "beside2", &fifolock_read, NULL, &ta), 0);
    CHECK_EQ(fifolock_etcd_acquire(b, "beside2", &fifolock_read, NULL, &tb), 0);
    start(&conv, c, "beside2", &fifolock_write, true, tc, 0);
    wait_until(claims, "beside2", 1);
    etcd_sleep_ms(300);     /* bounded */
    proxy_delay(&px, 500);
    start(&up, a, "beside2", &fifolock_upgradable, true, ta, 0);
    etcd_sleep_ms(150);     /* a's read is done; its answer is on its way */
    CHECK_EQ(fifolock_etcd_convert(b, "beside2", tb, &fifolock_upgradable, &tb2), 0);
    pthread_join(up.thread, NULL);
    proxy_delay(&px, 0);
    CHECK_EQ(up.rc, EDEADLK);
    CHECK_EQ(fifolock_etcd_check(a, "beside2", ta, NULL), 0);
    CHECK_EQ(job_rc(&conv), -1);
    CHECK_EQ(fifolock_etcd_release(a, "beside2", ta), 0);
    CHECK_EQ(fifolock_etcd_release(b, "beside2", tb2), 0);
    pthread_join(conv.thread, NULL);
    CHECK_EQ(conv.rc, 0);
    CHECK_EQ(fifolock_etcd_release(c, "beside2", conv.token), 0);
    CHECK_EQ(queue_len("beside2"), 0);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
    fifolock_etcd_close(c);
}

static void a_timeout_keeps_from_and_the_old_token(void)
{
    fifolock_etcd *a = open_s(), *b = open_s(), *c = open_s();
    struct timespec soon = etcd_in_ms(300), past = etcd_in_ms(0);
    int64_t ta, tb, tc, t2 = 0;
    long t0 = etcd_now_ms();

    CHECK_EQ(fifolock_etcd_acquire(a, "timeout", &fifolock_read, NULL, &ta), 0);
    CHECK_EQ(fifolock_etcd_acquire(b, "timeout", &fifolock_read, NULL, &tb), 0);
    CHECK_EQ(fifolock_etcd_timed_convert(a, "timeout", ta, &fifolock_write, &soon, &t2), ETIMEDOUT);
    CHECK_LE(300, etcd_now_ms() - t0);
    CHECK_LE(etcd_now_ms() - t0, 2000);
    CHECK_EQ(t2, 0);
    CHECK_EQ(fifolock_etcd_timed_convert(a, "timeout", ta, &fifolock_write, &past, &t2), ETIMEDOUT);
    CHECK_EQ(fifolock_etcd_try_convert(a, "timeout", ta, &fifolock_write, &t2), EBUSY);
    CHECK_EQ(claims("timeout"), 0);
    CHECK_EQ(queue_len("timeout"), 2);
    /* Still a reader, under its token: another reader joins at once. */
    CHECK_EQ(fifolock_etcd_check(a, "timeout", ta, NULL), 0);
    CHECK_EQ(fifolock_etcd_try_acquire(c, "timeout", &fifolock_read, &tc), 0);
    CHECK_EQ(fifolock_etcd_release(c, "timeout", tc), 0);
    CHECK_EQ(fifolock_etcd_release(b, "timeout", tb), 0);
    /* A deadline already past still switches when it can. */
    CHECK_EQ(fifolock_etcd_timed_convert(a, "timeout", ta, &fifolock_write, &past, &t2), 0);
    CHECK_EQ(fifolock_etcd_release(a, "timeout", t2), 0);
    CHECK_EQ(queue_len("timeout"), 0);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
    fifolock_etcd_close(c);
}

static void a_deadline_nearer_than_etcd_cuts_no_step_short(void)
{
    struct fifolock_etcd_options o = { 0 };
    static struct proxy px; /* its thread outlives the test: never on the stack */
    fifolock_etcd *a = NULL, *b = open_s();
    const char *colon = strrchr(ep, ':');
    struct timespec soon;
    int64_t ta, t2 = 0, tb;

    /* etcd answers in 200 ms; the deadline is 5 ms away. The switch can be
     * made at once: it is, rather than leave a claim cut short behind. */
    proxy_start(&px, atoi(colon + 1));
    o.timeout_ms = 5000;
    CHECK_EQ(fifolock_etcd_open(&a, px.url, &o), 0);
    CHECK_EQ(fifolock_etcd_acquire(a, "near", &fifolock_write, NULL, &ta), 0);
    proxy_delay(&px, 200);
    soon = etcd_in_ms(5);
    CHECK_EQ(fifolock_etcd_timed_convert(a, "near", ta, &fifolock_read, &soon, &t2), 0);
    proxy_delay(&px, 0);
    CHECK_LT(ta, t2);
    CHECK_EQ(claims("near"), 0);
    CHECK_EQ(fifolock_etcd_try_acquire(b, "near", &fifolock_read, &tb), 0);
    CHECK_EQ(fifolock_etcd_release(b, "near", tb), 0);
    CHECK_EQ(fifolock_etcd_release(a, "near", t2), 0);
    CHECK_EQ(queue_len("near"), 0);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
}

static void an_interrupt_ends_a_waiting_conversion_and_keeps_from(void)
{
    fifolock_etcd *a = open_s(), *b = open_s();
    struct job conv, w;
    int64_t ta, tb, t2;

    CHECK_EQ(fifolock_etcd_acquire(a, "intr", &fifolock_read, NULL, &ta), 0);
    CHECK_EQ(fifolock_etcd_acquire(b, "intr", &fifolock_read, NULL, &tb), 0);
    start(&conv, a, "intr", &fifolock_write, true, ta, 0);
    wait_until(claims, "intr", 1);
    start(&w, b, "intr", &fifolock_write, false, 0, 0);
    wait_until(queue_len, "intr", 4);
    etcd_sleep_ms(100);
    CHECK_EQ(fifolock_etcd_interrupt(a), 0);
    pthread_join(conv.thread, NULL);
    CHECK_EQ(conv.rc, EINTR);
    CHECK_EQ(conv.token, ta);
    CHECK_EQ(claims("intr"), 0);
    CHECK_EQ(fifolock_etcd_check(a, "intr", ta, NULL), 0);
    /* Sticky until cleared, as for acquire; try_convert is not affected. */
    CHECK_EQ(fifolock_etcd_convert(a, "intr", ta, &fifolock_write, &t2), EINTR);
    CHECK_EQ(fifolock_etcd_try_convert(a, "intr", ta, &fifolock_write, &t2), EBUSY);
    CHECK_EQ(fifolock_etcd_clear_interrupt(a), 0);
    CHECK_EQ(job_rc(&w), -1);
    CHECK_EQ(fifolock_etcd_release(a, "intr", ta), 0);
    CHECK_EQ(fifolock_etcd_release(b, "intr", tb), 0);
    pthread_join(w.thread, NULL);
    CHECK_EQ(w.rc, 0);
    CHECK_EQ(fifolock_etcd_release(b, "intr", w.token), 0);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
}

static void lost_replies_to_the_claim_and_the_switch_are_retried_whole(void)
{
    struct fifolock_etcd_options o = { 0 };
    static struct proxy px; /* its thread outlives the test: never on the stack */
    fifolock_etcd *a = NULL, *b = open_s();
    const char *colon = strrchr(ep, ':');
    struct job conv;
    char key[512];
    int64_t ta, tb, t2;

    proxy_start(&px, atoi(colon + 1));
    o.timeout_ms = 3000;
    CHECK_EQ(fifolock_etcd_open(&a, px.url, &o), 0);
    /* The claim applied, its reply lost: the retry finds its own claim. */
    CHECK_EQ(fifolock_etcd_acquire(a, "lost", &fifolock_write, NULL, &ta), 0);
    proxy_drop(&px, "/v3/kv/txn", 1);
    CHECK_EQ(fifolock_etcd_convert(a, "lost", ta, &fifolock_read, &t2), 0);
    CHECK_EQ(atomic_load(&px.dropped), 1);
    CHECK_EQ(claims("lost"), 0);
    CHECK_EQ(queue_len("lost"), 1);
    /* A waiting upgrade whose switch is applied and its reply lost: the
     * retry finds the converted hold made, and takes its token. */
    CHECK_EQ(fifolock_etcd_acquire(b, "lost", &fifolock_read, NULL, &tb), 0);
    start(&conv, a, "lost", &fifolock_write, true, t2, 0);
    wait_until(claims, "lost", 1);
    etcd_sleep_ms(300);
    proxy_drop(&px, "/v3/kv/txn", 1);
    CHECK_EQ(fifolock_etcd_release(b, "lost", tb), 0);
    pthread_join(conv.thread, NULL);
    CHECK_EQ(conv.rc, 0);
    CHECK_EQ(atomic_load(&px.dropped), 2);
    CHECK_EQ(claims("lost"), 0);
    CHECK_EQ(queue_len("lost"), 1);
    CHECK_EQ(fifolock_etcd_key(a, "lost", conv.token, key, sizeof key), 0);
    CHECK_EQ(etcd_create_revision(ep, key), conv.token);
    CHECK_EQ(fifolock_etcd_try_acquire(b, "lost", &fifolock_read, &tb), EBUSY);
    CHECK_EQ(fifolock_etcd_release(a, "lost", conv.token), 0);
    CHECK_EQ(queue_len("lost"), 0);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
}

static int lost_calls;
static int64_t lost_token;
static pthread_mutex_t lost_mu = PTHREAD_MUTEX_INITIALIZER;

static void on_lost(fifolock_etcd *s, const char *name, int64_t token, int reason, void *arg)
{
    (void)s;
    (void)name;
    (void)reason;
    (void)arg;
    pthread_mutex_lock(&lost_mu);
    lost_calls++;
    lost_token = token;
    pthread_mutex_unlock(&lost_mu);
}

static void a_lost_converted_hold_is_told_under_the_new_token(void)
{
    struct fifolock_etcd_options o = { 0 };
    fifolock_etcd *a;
    char key[512];
    int64_t t, t2;
    int i, calls = 0;

    o.lost = on_lost;
    a = etcd_open_or_die(ep, &o);
    lost_calls = 0;
    CHECK_EQ(fifolock_etcd_acquire(a, "told", &fifolock_upgradable, NULL, &t), 0);
    CHECK_EQ(fifolock_etcd_convert(a, "told", t, &fifolock_write, &t2), 0);
    /* The switch deleted the old entry: no loss for it. */
    etcd_sleep_ms(300);
    CHECK_EQ(lost_calls, 0);
    CHECK_EQ(fifolock_etcd_key(a, "told", t2, key, sizeof key), 0);
    CHECK_EQ(etcd_delete(ep, key), 0);
    for (i = 0; i < 300 && calls == 0; i++) {
        etcd_sleep_ms(10);
        pthread_mutex_lock(&lost_mu);
        calls = lost_calls;
        pthread_mutex_unlock(&lost_mu);
    }
    CHECK_EQ(calls, 1);
    CHECK_EQ(lost_token, t2);
    CHECK_EQ(fifolock_etcd_check(a, "told", t2, NULL), ENOLCK);
    CHECK_EQ(fifolock_etcd_convert(a, "told", t2, &fifolock_read, NULL), ENOLCK);
    CHECK_EQ(fifolock_etcd_release(a, "told", t2), 0);
    fifolock_etcd_close(a);
}

static void a_converter_whose_lease_is_revoked_lets_the_others_go_at_once(void)
{
    fifolock_etcd *a = open_s(), *b = open_s(), *c = open_s();
    struct job conv, w;
    char key[512];
    long long lease;
    int64_t ta, tb;
    long t0;

    /* What closing the converting session does (close can't run beside
     * the convert call): its lease goes, with its entry and its claim. */
    CHECK_EQ(fifolock_etcd_acquire(a, "revoked", &fifolock_read, NULL, &ta), 0);
    CHECK_EQ(fifolock_etcd_acquire(b, "revoked", &fifolock_read, NULL, &tb), 0);
    start(&conv, a, "revoked", &fifolock_write, true, ta, 0);
    wait_until(claims, "revoked", 1);
    start(&w, c, "revoked", &fifolock_write, false, 0, 10000);
    wait_until(queue_len, "revoked", 4);
    lease = etcd_nth_entry(ep, "fifolock/revoked/", 0, key, sizeof key);
    CHECK_NE(lease, 0);
    CHECK_EQ(etcd_revoke(ep, lease), 0);
    pthread_join(conv.thread, NULL);
    CHECK_EQ(conv.rc, ENOLCK);
    CHECK_EQ(claims("revoked"), 0);
    t0 = etcd_now_ms();
    CHECK_EQ(fifolock_etcd_release(b, "revoked", tb), 0);
    pthread_join(w.thread, NULL);
    CHECK_EQ(w.rc, 0);
    CHECK_LE(etcd_now_ms() - t0, 1000);
    CHECK_EQ(fifolock_etcd_release(c, "revoked", w.token), 0);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
    fifolock_etcd_close(c);
}

/* ---- many sessions converting at random ---- */

#define STRESS_THREADS 4
#define STRESS_ROUNDS 60

static pthread_mutex_t stress_mu = PTHREAD_MUTEX_INITIALIZER;
static int stress_r, stress_u, stress_w, stress_bad, stress_deadlk, stress_conv;
static int64_t stress_max_token;

enum { MR, MU, MW };

static const fifolock_mode *stress_mode(int m)
{
    return m == MR ? &fifolock_read : m == MU ? &fifolock_upgradable : &fifolock_write;
}

static int *stress_count(int m)
{
    return m == MR ? &stress_r : m == MU ? &stress_u : &stress_w;
}

/* Under stress_mu: may one more of m join the counted holders? */
static bool stress_fits(int m)
{
    return m == MR ? stress_w == 0
                   : m == MU ? stress_w == 0 && stress_u == 0
                             : stress_r == 0 && stress_u == 0 && stress_w == 0;
}

/* A grant of m with token t: it must fit, and an exclusive one has the largest token. */
static void stress_enter(int m, int64_t t)
{
    pthread_mutex_lock(&stress_mu);
    if (!stress_fits(m) || (m == MW && t != -1 && t <= stress_max_token)) {
        fprintf(stderr, "stress: %s (token %lld, largest %lld) joins r=%d u=%d w=%d\n",
                stress_mode(m)->name, (long long)t, (long long)stress_max_token, stress_r,
                stress_u, stress_w);
        stress_bad++;
    }
    (*stress_count(m))++;
    if (t > stress_max_token)
        stress_max_token = t;
    pthread_mutex_unlock(&stress_mu);
}

static void stress_fail(const char *what)
{
    pthread_mutex_lock(&stress_mu);
    fprintf(stderr, "stress: %s failed\n", what);
    stress_bad++;
    pthread_mutex_unlock(&stress_mu);
}

static void stress_leave(int m)
{
    pthread_mutex_lock(&stress_mu);
    (*stress_count(m))--;
    pthread_mutex_unlock(&stress_mu);
}

static void *stress_main(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    fifolock_etcd *s = open_s();
    int round;

    for (round = 0; round < STRESS_ROUNDS; round++) {
        int m = (int)(rand_r(&seed) % 3), to = (int)(rand_r(&seed) % 3), rc;
        struct timespec d = etcd_in_ms(rand_r(&seed) % 150);
        int64_t t, t2 = 0;

        if (fifolock_etcd_acquire(s, "stress", stress_mode(m), NULL, &t) != 0) {
            stress_fail("acquire");
            continue;
        }
        stress_enter(m, t);
        etcd_sleep_ms(rand_r(&seed) % 4);
        if (rand_r(&seed) % 3 != 0 && to != m) {
            bool down = to < m;     /* read < upgradable < write */

            if (down) {             /* others may join `to` as soon as it switches */
                stress_leave(m);
                stress_enter(to, 0);
            }
            rc = rand_r(&seed) % 2 ? fifolock_etcd_timed_convert(s, "stress", t, stress_mode(to), &d, &t2)
                                   : fifolock_etcd_try_convert(s, "stress", t, stress_mode(to), &t2);
            if (rc == 0 && !down) {
                stress_leave(m);
                stress_enter(to, t2);
            }
            if (rc == 0) {
                pthread_mutex_lock(&stress_mu);
                stress_conv++;
                if (t2 <= t)
                    stress_bad++;
                pthread_mutex_unlock(&stress_mu);
                m = to;
                t = t2;
            } else {
                if (rc == EDEADLK) {
                    pthread_mutex_lock(&stress_mu);
                    stress_deadlk++;
                    pthread_mutex_unlock(&stress_mu);
                } else if (rc != ETIMEDOUT && rc != EBUSY) {
                    stress_fail(fifolock_etcd_strerror(rc));
                }
                if (down) {
                    /* Still `m` under t, counted again (t was checked when granted). */
                    stress_leave(to);
                    stress_enter(m, -1);
                }
            }
            etcd_sleep_ms(rand_r(&seed) % 3);
        }
        stress_leave(m);
        if (fifolock_etcd_release(s, "stress", t) != 0)
            stress_fail("release");
    }
    fifolock_etcd_close(s);
    return NULL;
}

static void sessions_converting_at_random_keep_exclusion_and_token_order(void)
{
    pthread_t th[STRESS_THREADS];
    uintptr_t i;

    for (i = 0; i < STRESS_THREADS; i++)
        pthread_create(&th[i], NULL, stress_main, (void *)(i * 7919 + 1));
    for (i = 0; i < STRESS_THREADS; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ(stress_bad, 0);
    CHECK_LT(0, stress_conv);
    CHECK_EQ(queue_len("stress"), 0);
    CHECK_EQ(claims("stress"), 0);
    printf("stress: %d conversions, %d EDEADLK\n", stress_conv, stress_deadlk);
}

#define TTL 2

static void a_converter_killed_while_it_waits_leaves_the_lock_usable(void)
{
    fifolock_etcd *b, *c;
    struct job w;
    int64_t tb;
    long t0;
    int status, go[2];
    pid_t pid;

    CHECK_EQ(pipe(go), 0);
    pid = fork();
    if (pid == 0) {
        fifolock_etcd *s;
        int64_t t;
        char byte;

        if (read(go[0], &byte, 1) != 1)
            _exit(1);
        s = open_ttl(TTL);
        if (fifolock_etcd_acquire(s, "killed", &fifolock_read, NULL, &t) != 0)
            _exit(1);
        fifolock_etcd_convert(s, "killed", t, &fifolock_write, NULL);
        _exit(0);
    }
    b = open_ttl(TTL);
    c = open_ttl(TTL);
    CHECK_EQ(fifolock_etcd_acquire(b, "killed", &fifolock_read, NULL, &tb), 0);
    CHECK_EQ(write(go[1], "g", 1), 1);
    wait_until(claims, "killed", 1);
    start(&w, c, "killed", &fifolock_write, false, 0, 10000);
    wait_until(queue_len, "killed", 4);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    CHECK_EQ(fifolock_etcd_release(b, "killed", tb), 0);
    t0 = etcd_now_ms();
    pthread_join(w.thread, NULL);
    CHECK_EQ(w.rc, 0);
    CHECK_LE(etcd_now_ms() - t0, TTL * 1000 + 1500);
    CHECK_EQ(claims("killed"), 0);
    CHECK_EQ(fifolock_etcd_release(c, "killed", w.token), 0);
    CHECK_EQ(queue_len("killed"), 0);
    close(go[0]);
    close(go[1]);
    fifolock_etcd_close(b);
    fifolock_etcd_close(c);
}

int main(int argc, char **argv)
{
    static const struct check_test tests[] = {
        TEST(a_converter_killed_while_it_waits_leaves_the_lock_usable),
        TEST(a_downgrade_is_made_at_once_with_a_new_larger_token),
        TEST(the_old_token_is_refused_after_the_switch),
        TEST(bad_arguments_are_refused_and_change_nothing),
        TEST(a_weighted_hold_converts_whole),
        TEST(a_waiting_writer_does_not_see_the_converted_holder_go),
        TEST(an_upgrade_waits_ahead_of_a_queued_writer),
        TEST(a_reader_that_fits_queues_behind_a_waiting_conversion),
        TEST(the_head_waiter_is_not_granted_past_a_waiting_conversion),
        TEST(a_second_waiting_conversion_is_edeadlk),
        TEST(a_conversion_that_fits_is_made_beside_a_waiting_one),
        TEST(two_switches_decided_from_one_read_are_not_both_made),
        TEST(a_timeout_keeps_from_and_the_old_token),
        TEST(a_deadline_nearer_than_etcd_cuts_no_step_short),
        TEST(an_interrupt_ends_a_waiting_conversion_and_keeps_from),
        TEST(lost_replies_to_the_claim_and_the_switch_are_retried_whole),
        TEST(a_lost_converted_hold_is_told_under_the_new_token),
        TEST(a_converter_whose_lease_is_revoked_lets_the_others_go_at_once),
        TEST(sessions_converting_at_random_keep_exclusion_and_token_order),
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
