/*
 * The etcd lock on a real 3-member etcd cluster with members killed (kill -9)
 * while locks are held and waited on: a follower, then the leader. Holds
 * survive (the lease is kept alive through the other members), waiters are
 * still granted, in order. Each test starts its own cluster.
 * Skips (77) only when etcd is not installed.
 */
#include "check.h"
#include "etcd/harness.h"

#include <pthread.h>

#define TTL 5

static struct etcd_server srv;

/* Which member leads (index), -1 if no live member knows. */
static int leader_of(const struct etcd_server *e, const bool *dead)
{
    int i, j;

    for (i = 0; i < e->members; i++) {
        json_object *r, *header, *leader;
        const char *leader_id = NULL;
        int found = -1;

        if (dead[i])
            continue;
        r = etcd_raw(e->url[i], "/v3/maintenance/status", "{}", NULL);
        if (r && json_object_object_get_ex(r, "leader", &leader))
            leader_id = json_object_get_string(leader);
        for (j = 0; leader_id && j < e->members && found < 0; j++) {
            json_object *s2 = dead[j] ? NULL : etcd_raw(e->url[j], "/v3/maintenance/status", "{}", NULL), *id;
            if (s2 && json_object_object_get_ex(s2, "header", &header) &&
                json_object_object_get_ex(header, "member_id", &id) &&
                strcmp(json_object_get_string(id), leader_id) == 0)
                found = j;
            json_object_put(s2);
        }
        json_object_put(r);
        if (found >= 0)
            return found;
    }
    return -1;
}

struct waiter {
    fifolock_etcd *s;
    const char *name;
    int rc;
    int64_t token;
    pthread_t thread;
};

static void *waiter_main(void *arg)
{
    struct waiter *w = arg;
    struct timespec d = etcd_in_ms(20000);

    w->rc = fifolock_etcd_acquire(w->s, w->name, &fifolock_mutex, &d, &w->token);
    return NULL;
}

static fifolock_etcd *open_victim_first(int victim)
{
    struct fifolock_etcd_options o = { 0 };
    char eps[600];
    int i;

    /* The member to be killed first in the list: the session talks to it. */
    snprintf(eps, sizeof eps, "%s", srv.url[victim]);
    for (i = 0; i < srv.members; i++)
        if (i != victim) {
            strcat(eps, ",");
            strcat(eps, srv.url[i]);
        }
    o.ttl = TTL;
    o.timeout_ms = 3000;
    return etcd_open_or_die(eps, &o);
}

static long queue_len(int live, const char *name)
{
    return etcd_queue_len(srv.url[live], name);
}

static long ms_of(struct timespec t)
{
    return (long)(t.tv_sec * 1000 + t.tv_nsec / 1000000);
}

static void member_killed_while_held_and_waited_on(bool kill_leader)
{
    bool dead[3] = { false, false, false };
    int leader, victim, live, i;
    fifolock_etcd *holder, *w1s, *w2s;
    struct waiter w1, w2;
    int64_t t;
    long safe_before;

    if (etcd_up(&srv, 3, NULL) != 0)
        exit(1);
    for (i = 0; i < 100 && (leader = leader_of(&srv, dead)) < 0; i++)
        etcd_sleep_ms(50);
    CHECK_LE(0, leader);
    victim = kill_leader ? leader : (leader + 1) % 3;
    live = (victim + 1) % 3;
    holder = open_victim_first(victim);
    w1s = open_victim_first(victim);
    w2s = open_victim_first(victim);
    CHECK_EQ(fifolock_etcd_acquire(holder, "cluster", &fifolock_mutex, NULL, &t), 0);
    w1.s = w1s;
    w1.name = "cluster";
    w1.rc = -1;
    pthread_create(&w1.thread, NULL, waiter_main, &w1);
    for (i = 0; i < 400 && queue_len(live, "cluster") != 2; i++)
        etcd_sleep_ms(5);
    w2.s = w2s;
    w2.name = "cluster";
    w2.rc = -1;
    pthread_create(&w2.thread, NULL, waiter_main, &w2);
    for (i = 0; i < 400 && queue_len(live, "cluster") != 3; i++)
        etcd_sleep_ms(5);
    CHECK_EQ(queue_len(live, "cluster"), 3);

    safe_before = ms_of(fifolock_etcd_safe_until(holder));
    kill(srv.pid[victim], SIGKILL);
    dead[victim] = true;
    /* Past a keepalive period or two: the lease was renewed through the others. */
    etcd_sleep_ms(TTL * 1000 / 3 * 2 + 500);
    for (i = 0; i < 100 && leader_of(&srv, dead) < 0; i++)
        etcd_sleep_ms(50);
    CHECK_LE(0, leader_of(&srv, dead));
    CHECK_EQ(fifolock_etcd_check(holder, "cluster", t, NULL), 0);
    CHECK_LT(safe_before, ms_of(fifolock_etcd_safe_until(holder)));
    CHECK_EQ(w1.rc, -1);
    CHECK_EQ(w2.rc, -1);
    CHECK_EQ(queue_len(live, "cluster"), 3);

    /* The waiters are granted, in order. */
    CHECK_EQ(fifolock_etcd_release(holder, "cluster", t), 0);
    pthread_join(w1.thread, NULL);
    CHECK_EQ(w1.rc, 0);
    CHECK_LT(t, w1.token);
    etcd_sleep_ms(100);
    CHECK_EQ(w2.rc, -1);
    CHECK_EQ(fifolock_etcd_release(w1s, "cluster", w1.token), 0);
    pthread_join(w2.thread, NULL);
    CHECK_EQ(w2.rc, 0);
    CHECK_LT(w1.token, w2.token);
    CHECK_EQ(fifolock_etcd_release(w2s, "cluster", w2.token), 0);
    CHECK_EQ(fifolock_etcd_close(holder), 0);
    CHECK_EQ(fifolock_etcd_close(w1s), 0);
    CHECK_EQ(fifolock_etcd_close(w2s), 0);
    CHECK_EQ(queue_len(live, "cluster"), 0);
    etcd_down(&srv);
}

static void a_killed_follower_keeps_holds_and_grants_waiters(void)
{
    member_killed_while_held_and_waited_on(false);
}

static void a_killed_leader_keeps_holds_and_grants_waiters(void)
{
    member_killed_while_held_and_waited_on(true);
}

int main(int argc, char **argv)
{
    static const struct check_test tests[] = {
        TEST(a_killed_follower_keeps_holds_and_grants_waiters),
        TEST(a_killed_leader_keeps_holds_and_grants_waiters),
    };
    int status;

    if (etcd_up(&srv, 1, NULL) == ETCD_SKIP) {
        printf("etcd is not installed: skipped\n");
        return ETCD_SKIP;
    }
    etcd_down(&srv);
    status = etcd_run_tests(tests, sizeof tests / sizeof tests[0], argc, argv);
    return status;
}
