/*
 * semaphore.c: jobs share a pool of two connections.
 *
 * A semaphore is one more mode: FIFOLOCK_SEMAPHORE(2) lets up to two holders
 * in at once. Jobs that find both places taken queue up and get a place in
 * the order they came, each from the release that frees one.
 *
 * Some callers would rather not wait at all: fifolock_try_acquire() takes a
 * place if one can be had right now and returns EBUSY otherwise. It never
 * queues, and while anybody waits it answers EBUSY: it does not slip in
 * ahead of them.
 */
#include "fifolock.h"
#include "runqueue.h"

#include <errno.h>

#define POOL_SIZE 2
static const fifolock_mode pool = FIFOLOCK_SEMAPHORE(POOL_SIZE);

struct task {
    const char *name;
    unsigned asks_at;   /* tick at which the task asks for a place */
    unsigned hold_for;  /* ticks it keeps the place */
    bool no_wait;       /* try once with fifolock_try_acquire(), never queue */
    unsigned expect_at; /* tick at which the story says it gets a place */

    unsigned ticket;        /* order of asking */
    unsigned asked_at;      /* tick it asked */
    unsigned granted_at;    /* tick it got a place, or NEVER */
    fifolock_waiter waiter; /* the request; must stay put while queued */
};

static fifolock lock;
static unsigned in_use; /* our own count of places taken */

static void release_step(void *arg);

/* The task has a place: check the story, then work for hold_for ticks. */
static void start_work(struct task *t)
{
    t->granted_at = loop.now;
    check_fifo(t->name, t->ticket);
    in_use++;
    check(in_use <= POOL_SIZE, "%s makes %u users of a pool of %d", t->name, in_use, POOL_SIZE);
    check(fifolock_held(fifolock_holds_of(&lock), &pool) == in_use,
          "the lock counts %zu holders, we count %u",
          fifolock_held(fifolock_holds_of(&lock), &pool), in_use);
    loop_call_at(loop.now + t->hold_for, release_step, t);
}

/* Grant callback: runs inside the fifolock_release() that freed a place. */
static void on_granted(fifolock_waiter *waiter, void *arg)
{
    struct task *t = arg;
    unsigned waited = loop.now - t->asked_at;

    (void)waiter;
    say("%s gets a connection (waited %u tick%s)", t->name, waited, PLURAL(waited));
    start_work(t);
}

static void ask_step(void *arg)
{
    struct task *t = arg;
    int rc;

    t->ticket = take_ticket();
    t->asked_at = loop.now;
    if (t->no_wait) {
        rc = fifolock_try_acquire(&lock, &pool);
        if (rc == 0) {
            say("%s tries for a connection: got one", t->name);
            start_work(t);
        } else {
            say("%s tries for a connection: %s, does without", t->name,
                rc == EBUSY ? "none free" : fifolock_strerror(rc));
            check(rc == EBUSY, "%s: fifolock_try_acquire: %s", t->name, fifolock_strerror(rc));
        }
        return;
    }
    rc = fifolock_acquire(&lock, &t->waiter, &pool, on_granted, t);
    if (rc == 0) {
        /* Held now; on_granted will not run, so go on here. */
        say("%s asks for a connection: got one at once", t->name);
        start_work(t);
    } else if (rc == FIFOLOCK_WAITING) {
        say("%s asks for a connection: waits (%zu in the queue)", t->name,
            fifolock_waiting(&lock));
    } else {
        check(false, "%s: fifolock_acquire: %s", t->name, fifolock_strerror(rc));
    }
}

static void release_step(void *arg)
{
    struct task *t = arg;
    int rc;

    say("%s hands its connection back", t->name);
    in_use--; /* first: the next job's callback runs inside the release */
    rc = fifolock_release(&lock, &pool);
    check(rc == 0, "%s: fifolock_release: %s", t->name, fifolock_strerror(rc));
}

int main(void)
{
    static struct task tasks[] = {
        { .name = "J1", .asks_at = 0, .hold_for = 3, .expect_at = 0 },
        { .name = "J2", .asks_at = 0, .hold_for = 5, .expect_at = 0 },
        { .name = "J3", .asks_at = 1, .hold_for = 2, .expect_at = 3 }, /* J1's place */
        { .name = "J4", .asks_at = 1, .hold_for = 1, .expect_at = 5 }, /* J2's place */
        { .name = "J5", .asks_at = 2, .hold_for = 1, .expect_at = 5 }, /* J3's place */
        { .name = "P1", .asks_at = 2, .no_wait = true, .expect_at = NEVER }, /* pool full */
        { .name = "P2", .asks_at = 4, .no_wait = true, .expect_at = NEVER }, /* still full */
        { .name = "P3", .asks_at = 7, .hold_for = 1, .no_wait = true, .expect_at = 7 },
    };
    size_t i, n = sizeof tasks / sizeof tasks[0];

    fifolock_init(&lock);
    for (i = 0; i < n; i++) {
        tasks[i].granted_at = NEVER;
        loop_call_at(tasks[i].asks_at, ask_step, &tasks[i]);
    }
    loop_run();

    for (i = 0; i < n; i++)
        check_granted_at(tasks[i].name, tasks[i].granted_at, tasks[i].expect_at);
    check(fifolock_destroy(&lock) == 0, "the lock is still held or waited on");
    return story_end();
}
