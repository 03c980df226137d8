/*
 * The etcd lock across processes, against a real single-member etcd: many
 * processes checking FIFO order and exclusion from their own logs, and
 * clients that die (kill -9) or pause (SIGSTOP) while they hold or wait.
 * Skips (77) only when etcd is not installed.
 */
#include "check.h"
#include "etcd/harness.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>

static struct etcd_server srv;
static const char *ep;

#define TTL 2

static fifolock_etcd *open_ttl(int ttl, fifolock_etcd_lost_fn *lost, void *arg)
{
    struct fifolock_etcd_options o = { 0 };

    o.ttl = ttl;
    o.lost = lost;
    o.lost_arg = arg;
    return etcd_open_or_die(ep, &o);
}

static long queue_len(const char *name)
{
    return etcd_queue_len(ep, name);
}

static long long now_us(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

/* ---- many processes ---- */

#define PROCS 20
#define ROUNDS 4

struct record {
    long long token, start, end;
    int writer;
};

static void child_round_trip(const char *log, int id)
{
    fifolock_etcd *s = open_ttl(10, NULL, NULL);
    int fd = open(log, O_WRONLY | O_APPEND), k, failed = 0;

    for (k = 0; k < ROUNDS; k++) {
        int writer = (id + k) % 3 == 0;
        struct timespec d = etcd_in_ms(60000);
        int64_t t;
        long long start, end;
        char line[128];
        int n;

        if (fifolock_etcd_acquire(s, "crowd", writer ? &fifolock_write : &fifolock_read, &d,
                                  &t) != 0) {
            failed = 1;
            break;
        }
        start = now_us();
        etcd_sleep_ms(writer ? 3 : 30); /* readers long enough to meet */
        end = now_us();
        if (fifolock_etcd_check(s, "crowd", t, NULL) != 0)
            failed = 1;
        n = snprintf(line, sizeof line, "%lld %d %lld %lld\n", (long long)t, writer, start, end);
        if (write(fd, line, (size_t)n) != n)
            failed = 1;
        if (fifolock_etcd_release(s, "crowd", t) != 0)
            failed = 1;
    }
    close(fd);
    fifolock_etcd_close(s);
    _exit(failed);
}

static void twenty_processes_keep_fifo_order_and_exclusion_by_their_own_logs(void)
{
    char log[300];
    struct record r[PROCS * ROUNDS];
    size_t n = 0, i, j;
    pid_t pids[PROCS];
    FILE *f;
    int k, status, overlaps = 0;

    snprintf(log, sizeof log, "%s/crowd.log", srv.dir);
    close(open(log, O_CREAT | O_WRONLY | O_TRUNC, 0600));
    for (k = 0; k < PROCS; k++) {
        pids[k] = fork();
        if (pids[k] == 0)
            child_round_trip(log, k);
    }
    for (k = 0; k < PROCS; k++) {
        waitpid(pids[k], &status, 0);
        CHECK_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    f = fopen(log, "r");
    while (n < PROCS * ROUNDS &&
           fscanf(f, "%lld %d %lld %lld", &r[n].token, &r[n].writer, &r[n].start, &r[n].end) == 4)
        n++;
    fclose(f);
    CHECK_EQ(n, PROCS * ROUNDS);
    for (i = 0; i < n; i++)
        for (j = 0; j < n; j++) {
            if (i == j)
                continue;
            CHECK_NE(r[i].token, r[j].token);
            if (!r[i].writer && !r[j].writer) {
                /* Readers may share; count it, to know the test saw sharing at all. */
                overlaps += r[i].start < r[j].end && r[j].start < r[i].end;
                continue;
            }
            /* Around a writer: everything earlier in the queue ended before it
             * started, everything later started after it ended. */
            if (r[j].token < r[i].token && r[j].end > r[i].start) {
                fprintf(stderr, "token %lld (writer %d) ran until %lld, after %lld (writer %d) "
                        "began at %lld\n", r[j].token, r[j].writer, r[j].end, r[i].token,
                        r[i].writer, r[i].start);
                check_failures++;
            }
        }
    CHECK_LT(0, overlaps);
    CHECK_EQ(queue_len("crowd"), 0);
}

/* ---- deaths and pauses ---- */

/* A child that takes `name` and reports its token on fd, then waits to die. */
static pid_t child_holding(const char *name, int ttl, int fd)
{
    pid_t pid = fork();

    if (pid == 0) {
        fifolock_etcd *s = open_ttl(ttl, NULL, NULL);
        int64_t t = 0;

        if (fifolock_etcd_acquire(s, name, &fifolock_mutex, NULL, &t) != 0)
            _exit(1);
        if (write(fd, &t, sizeof t) != sizeof t)
            _exit(1);
        for (;;)
            pause();
    }
    return pid;
}

/*
 * The children are forked before this process opens a session (it has no
 * thread of its own then): a fork keeps only the forking thread.
 */
static void a_holder_killed_with_sigkill_lets_the_next_in_within_the_ttl(void)
{
    fifolock_etcd *s;
    int fds[2], status;
    int64_t dead = 0, t = 0;
    struct timespec d;
    long t0;
    pid_t pid;

    CHECK_EQ(pipe(fds), 0);
    pid = child_holding("kill-holder", TTL, fds[1]);
    s = open_ttl(TTL, NULL, NULL);
    CHECK_EQ(read(fds[0], &dead, sizeof dead), (ssize_t)sizeof dead);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    t0 = etcd_now_ms();
    d = etcd_in_ms(3 * TTL * 1000);
    CHECK_EQ(fifolock_etcd_acquire(s, "kill-holder", &fifolock_mutex, &d, &t), 0);
    CHECK_LE(etcd_now_ms() - t0, TTL * 1000 + 1500);
    CHECK_LT(dead, t);
    CHECK_EQ(fifolock_etcd_release(s, "kill-holder", t), 0);
    close(fds[0]);
    close(fds[1]);
    fifolock_etcd_close(s);
}

static void a_waiter_killed_with_sigkill_leaves_the_queue_within_the_ttl(void)
{
    fifolock_etcd *a, *b;
    struct timespec d;
    int64_t ta, tb;
    long t0, i;
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
        s = open_ttl(TTL, NULL, NULL);
        fifolock_etcd_acquire(s, "kill-waiter", &fifolock_mutex, NULL, &t);
        _exit(0);
    }
    a = open_ttl(TTL, NULL, NULL);
    b = open_ttl(TTL, NULL, NULL);
    CHECK_EQ(fifolock_etcd_acquire(a, "kill-waiter", &fifolock_mutex, NULL, &ta), 0);
    CHECK_EQ(write(go[1], "g", 1), 1);
    for (i = 0; i < 500 && queue_len("kill-waiter") != 2; i++)
        etcd_sleep_ms(5);
    CHECK_EQ(queue_len("kill-waiter"), 2);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    CHECK_EQ(fifolock_etcd_release(a, "kill-waiter", ta), 0);
    t0 = etcd_now_ms();
    d = etcd_in_ms(3 * TTL * 1000);
    CHECK_EQ(fifolock_etcd_acquire(b, "kill-waiter", &fifolock_mutex, &d, &tb), 0);
    CHECK_LE(etcd_now_ms() - t0, TTL * 1000 + 1500);
    CHECK_EQ(fifolock_etcd_release(b, "kill-waiter", tb), 0);
    close(go[0]);
    close(go[1]);
    fifolock_etcd_close(a);
    fifolock_etcd_close(b);
}

static int told_fd = -1;

static void tell_parent(fifolock_etcd *s, const char *name, int64_t token, int reason, void *arg)
{
    (void)s;
    (void)name;
    (void)token;
    (void)arg;
    if (write(told_fd, &reason, sizeof reason) != sizeof reason)
        _exit(3);
}

static void a_holder_paused_past_its_ttl_is_told_it_lost_the_lock(void)
{
    fifolock_etcd *s;
    int up[2], told[2], go[2], reason = 0, checked = -1, status;
    int64_t paused_token = 0, t = 0;
    struct timespec d;
    pid_t pid;

    CHECK_EQ(pipe(up), 0);
    CHECK_EQ(pipe(told), 0);
    CHECK_EQ(pipe(go), 0);
    pid = fork();
    if (pid == 0) {
        fifolock_etcd *c;
        int64_t ct = 0;
        int rc, byte;

        told_fd = told[1];
        c = open_ttl(TTL, tell_parent, NULL);
        if (fifolock_etcd_acquire(c, "paused", &fifolock_mutex, NULL, &ct) != 0)
            _exit(1);
        if (write(up[1], &ct, sizeof ct) != sizeof ct)
            _exit(1);
        if (read(go[0], &byte, 1) != 1)
            _exit(1);
        rc = fifolock_etcd_check(c, "paused", ct, NULL);
        if (write(up[1], &rc, sizeof rc) != sizeof rc)
            _exit(1);
        fifolock_etcd_release(c, "paused", ct);
        fifolock_etcd_close(c);
        _exit(0);
    }
    s = open_ttl(TTL, NULL, NULL);
    CHECK_EQ(read(up[0], &paused_token, sizeof paused_token), (ssize_t)sizeof paused_token);
    kill(pid, SIGSTOP);
    d = etcd_in_ms(3 * TTL * 1000);
    CHECK_EQ(fifolock_etcd_acquire(s, "paused", &fifolock_mutex, &d, &t), 0);
    CHECK_LT(paused_token, t);
    kill(pid, SIGCONT);
    /* Resumed, it hears of the loss from its own clock or from etcd. */
    CHECK_EQ(read(told[0], &reason, sizeof reason), (ssize_t)sizeof reason);
    CHECK_TRUE(reason == ETIMEDOUT || reason == ENOLCK);
    CHECK_EQ(write(go[1], "g", 1), 1);
    CHECK_EQ(read(up[0], &checked, sizeof checked), (ssize_t)sizeof checked);
    CHECK_TRUE(checked == ETIMEDOUT || checked == ENOLCK);
    waitpid(pid, &status, 0);
    CHECK_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* The paused one's release did not take the new holder's lock. */
    CHECK_EQ(fifolock_etcd_check(s, "paused", t, NULL), 0);
    CHECK_EQ(queue_len("paused"), 1);
    CHECK_EQ(fifolock_etcd_release(s, "paused", t), 0);
    fifolock_etcd_close(s);
}

int main(int argc, char **argv)
{
    static const struct check_test tests[] = {
        TEST(twenty_processes_keep_fifo_order_and_exclusion_by_their_own_logs),
        TEST(a_holder_killed_with_sigkill_lets_the_next_in_within_the_ttl),
        TEST(a_waiter_killed_with_sigkill_leaves_the_queue_within_the_ttl),
        TEST(a_holder_paused_past_its_ttl_is_told_it_lost_the_lock),
    };
    int status;

    if (etcd_up(&srv, 1, NULL) == ETCD_SKIP) {
        printf("etcd is not installed: skipped\n");
        return ETCD_SKIP;
    }
    ep = srv.endpoints;
    status = etcd_run_tests(tests, sizeof tests / sizeof tests[0], argc, argv);
    etcd_down(&srv);
    return status;
}
