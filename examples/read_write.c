/*
 * read_write.c: readers share the lock, a writer has it alone, and nobody
 * jumps the queue.
 *
 * Readers that come while only readers hold the lock join them at once. A
 * writer waits until they are all gone, and readers who come after the writer
 * wait behind it, even though they could share with the readers still
 * inside: that is what keeps a stream of readers from starving writers.
 *
 * One writer here is impatient: if the lock has not come within `patience`
 * ticks it withdraws its request with fifolock_cancel(). It was first in the
 * queue, so the reader behind it gets the lock inside that very call.
 */
#include "fifolock.h"
#include "runqueue.h"

struct task {
    const char *name;
    const fifolock_mode *mode; /* &fifolock_read or &fifolock_write */
    unsigned asks_at;          /* tick at which the task asks for the lock */
    unsigned hold_for;         /* ticks it keeps the lock */
    unsigned patience;         /* ticks it waits before giving up; 0: forever */
    unsigned expect_at;        /* tick at which the story says it gets the lock */

    unsigned ticket;        /* order of asking */
    unsigned asked_at;      /* tick it asked */
    unsigned granted_at;    /* tick it got the lock, or NEVER */
    bool gave_up;           /* cancelled its request */
    fifolock_waiter waiter; /* the request; must stay put while queued */
};

static fifolock lock;
static unsigned readers, writers; /* our own count of who is inside */

static void release_step(void *arg);

/* The task holds the lock: check the story, then work for hold_for ticks. */
static void start_work(struct task *t)
{
    t->granted_at = loop.now;
    check_fifo(t->name, t->ticket);
    if (t->mode == &fifolock_write) {
        check(readers == 0 && writers == 0, "%s writes beside %u reader(s) and %u writer(s)",
              t->name, readers, writers);
        writers++;
    } else {
        check(writers == 0, "%s reads while a writer is inside", t->name);
        readers++;
    }
    loop_call_at(loop.now + t->hold_for, release_step, t);
}

/* Grant callback: runs inside the release or cancel call that made room. */
static void on_granted(fifolock_waiter *waiter, void *arg)
{
    struct task *t = arg;
    unsigned waited = loop.now - t->asked_at;

    (void)waiter;
    check(!t->gave_up, "%s was granted after it gave up", t->name);
    say("%s is granted %s (waited %u tick%s)", t->name, t->mode->name, waited, PLURAL(waited));
    start_work(t);
}

static void give_up_step(void *arg)
{
    struct task *t = arg;
    int rc;

    /* A real program would stop this timer in on_granted instead. */
    if (t->granted_at != NEVER)
        return;
    say("%s gives up: cancels its request", t->name);
    t->gave_up = true;
    rc = fifolock_cancel(&lock, &t->waiter); /* may grant waiters behind it */
    check(rc == 0, "%s: fifolock_cancel: %s", t->name, fifolock_strerror(rc));
}

static void ask_step(void *arg)
{
    struct task *t = arg;
    int rc;

    t->ticket = take_ticket();
    t->asked_at = loop.now;
    rc = fifolock_acquire(&lock, &t->waiter, t->mode, on_granted, t);
    if (rc == 0) {
        /* Held now; on_granted will not run, so go on here. */
        say("%s asks to %s: granted at once", t->name, t->mode->name);
        start_work(t);
    } else if (rc == FIFOLOCK_WAITING) {
        say("%s asks to %s: waits (%zu in the queue)", t->name, t->mode->name,
            fifolock_waiting(&lock));
        if (t->patience)
            loop_call_at(loop.now + t->patience, give_up_step, t);
    } else {
        check(false, "%s: fifolock_acquire: %s", t->name, fifolock_strerror(rc));
    }
}

static void release_step(void *arg)
{
    struct task *t = arg;
    int rc;

    say("%s is done %s", t->name, t->mode == &fifolock_write ? "writing" : "reading");
    /* Update your own state first: waiters' callbacks run inside the release. */
    if (t->mode == &fifolock_write)
        writers--;
    else
        readers--;
    rc = fifolock_release(&lock, t->mode);
    check(rc == 0, "%s: fifolock_release: %s", t->name, fifolock_strerror(rc));
}

#define READ(...) { .mode = &fifolock_read, __VA_ARGS__ }
#define WRITE(...) { .mode = &fifolock_write, __VA_ARGS__ }

int main(void)
{
    static struct task tasks[] = {
        READ(.name = "R1", .asks_at = 0, .hold_for = 4, .expect_at = 0),
        READ(.name = "R2", .asks_at = 1, .hold_for = 4, .expect_at = 1),   /* shares with R1 */
        WRITE(.name = "W1", .asks_at = 2, .hold_for = 2, .expect_at = 5),  /* waits for both */
        READ(.name = "R3", .asks_at = 3, .hold_for = 1, .expect_at = 7),   /* behind W1 */
        READ(.name = "R4", .asks_at = 4, .hold_for = 4, .expect_at = 7),   /* ... with R3 */
        WRITE(.name = "W2", .asks_at = 6, .hold_for = 2, .patience = 3,
              .expect_at = NEVER),                                          /* gives up */
        READ(.name = "R5", .asks_at = 8, .hold_for = 1, .expect_at = 9),   /* behind W2 */
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
