/*
 * mutex.c: tasks of an event loop take turns with one resource.
 *
 * Each task asks for the lock, holds it for a few ticks and releases it.
 * fifolock_acquire() never blocks: it returns 0 when the lock is free (the
 * task goes on at once) or FIFOLOCK_WAITING when the request was queued. A
 * queued task is told later, through its `granted` callback, which runs
 * inside the fifolock_release() that made room. Like any callback in an
 * event loop it does little: it schedules the task's next step and returns.
 *
 * Run it and watch the lock pass from task to task in the order they asked.
 */
#include "fifolock.h"
#include "runqueue.h"

struct task {
    const char *name;
    unsigned asks_at;   /* tick at which the task asks for the lock */
    unsigned hold_for;  /* ticks it keeps the lock */
    unsigned expect_at; /* tick at which the story says it gets the lock */

    unsigned ticket;        /* order of asking */
    unsigned asked_at;      /* tick it asked */
    unsigned granted_at;    /* tick it got the lock, or NEVER */
    fifolock_waiter waiter; /* the request; must stay put while queued */
};

static fifolock lock;
static struct task *holder; /* our own record of who holds the mutex */

static void release_step(void *arg);

/* The task holds the lock: check the story, then work for hold_for ticks. */
static void start_work(struct task *t)
{
    t->granted_at = loop.now;
    check_fifo(t->name, t->ticket);
    check(holder == NULL, "%s got the mutex while %s holds it", t->name,
          holder ? holder->name : "");
    holder = t;
    loop_call_at(loop.now + t->hold_for, release_step, t);
}

/* Grant callback: runs inside the fifolock_release() that made room. */
static void on_granted(fifolock_waiter *waiter, void *arg)
{
    struct task *t = arg;
    unsigned waited = loop.now - t->asked_at;

    (void)waiter;
    say("%s is granted the mutex (waited %u tick%s)", t->name, waited, PLURAL(waited));
    start_work(t);
}

static void ask_step(void *arg)
{
    struct task *t = arg;
    int rc;

    t->ticket = take_ticket();
    t->asked_at = loop.now;
    rc = fifolock_acquire(&lock, &t->waiter, &fifolock_mutex, on_granted, t);
    if (rc == 0) {
        /* Held now; on_granted will not run, so go on here. */
        say("%s asks for the mutex: granted at once", t->name);
        start_work(t);
    } else if (rc == FIFOLOCK_WAITING) {
        say("%s asks for the mutex: waits (%zu in the queue)", t->name,
            fifolock_waiting(&lock));
    } else {
        check(false, "%s: fifolock_acquire: %s", t->name, fifolock_strerror(rc));
    }
}

static void release_step(void *arg)
{
    struct task *t = arg;
    int rc;

    say("%s releases the mutex", t->name);
    /* Update your own state first: the next holder's callback runs inside
     * fifolock_release(). */
    holder = NULL;
    rc = fifolock_release(&lock, &fifolock_mutex);
    check(rc == 0, "%s: fifolock_release: %s", t->name, fifolock_strerror(rc));
}

int main(void)
{
    static struct task tasks[] = {
        { .name = "A", .asks_at = 0, .hold_for = 3, .expect_at = 0 },
        { .name = "B", .asks_at = 1, .hold_for = 2, .expect_at = 3 }, /* waits for A */
        { .name = "C", .asks_at = 2, .hold_for = 1, .expect_at = 5 }, /* ... then for B */
        { .name = "D", .asks_at = 7, .hold_for = 1, .expect_at = 7 }, /* free again */
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
