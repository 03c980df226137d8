/*
 * intention.c: transactions lock a database table with intention modes.
 *
 * A transaction that will read a few rows takes the table in IS (intention
 * to share), one that will update rows takes IX (intention to write); both
 * then lock the rows themselves, elsewhere. A whole-table scan takes S, a
 * scan that updates some rows SIX, and a schema change X. Which modes may
 * hold the table together is the usual matrix (see fifolock.h); the lock
 * keeps one queue for all five modes and grants strictly in arrival order.
 *
 * Each grant prints the modes held right after it, read back from the lock
 * with fifolock_holds_list().
 */
#include "fifolock.h"
#include "runqueue.h"

enum { IS, IX, S, SIX, X, N_MODES };

static const fifolock_mode *const modes[N_MODES] = {
    &fifolock_is, &fifolock_ix, &fifolock_s, &fifolock_six, &fifolock_x,
};

/* The matrix again, written out here to check the lock against it: row
 * `want` may join holders of column `held` when the entry is '+'. */
static const char *const may_join[N_MODES] = {
    /*          IS IX S SIX X */
    [IS] = "++++-",
    [IX] = "++---",
    [S] = "+-+--",
    [SIX] = "+----",
    [X] = "-----",
};

struct task {
    const char *name;
    int mode;           /* IS, IX, S, SIX or X */
    unsigned asks_at;   /* tick at which the transaction asks for the table */
    unsigned hold_for;  /* ticks it keeps it */
    unsigned expect_at; /* tick at which the story says it gets it */

    unsigned ticket;        /* order of asking */
    unsigned asked_at;      /* tick it asked */
    unsigned granted_at;    /* tick it got the table, or NEVER */
    fifolock_waiter waiter; /* the request; must stay put while queued */
};

static fifolock lock;
static unsigned held[N_MODES]; /* our own count of holders per mode */

static void release_step(void *arg);

/* Lists the modes the lock says are held, e.g. "S IS", into buf. */
static const char *held_now(char *buf, size_t size)
{
    const fifolock_mode *m[N_MODES];
    size_t count[N_MODES];
    size_t i, n = fifolock_holds_list(fifolock_holds_of(&lock), m, count, N_MODES);
    size_t len = 0;

    buf[0] = '\0';
    for (i = 0; i < n && i < N_MODES && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%s", i ? " " : "", m[i]->name);
    return buf;
}

/* The transaction has the table: check the story, then work for hold_for ticks. */
static void start_work(struct task *t)
{
    unsigned waited = loop.now - t->asked_at;
    char buf[64];
    int j;

    t->granted_at = loop.now;
    check_fifo(t->name, t->ticket);
    for (j = 0; j < N_MODES; j++)
        check(held[j] == 0 || may_join[t->mode][j] == '+', "%s got %s while %s is held",
              t->name, modes[t->mode]->name, modes[j]->name);
    held[t->mode]++;
    if (waited == 0)
        say("%s asks for %s: granted at once; held now: %s", t->name, modes[t->mode]->name,
            held_now(buf, sizeof buf));
    else
        say("%s is granted %s (waited %u tick%s); held now: %s", t->name,
            modes[t->mode]->name, waited, PLURAL(waited), held_now(buf, sizeof buf));
    loop_call_at(loop.now + t->hold_for, release_step, t);
}

/* Grant callback: runs inside the fifolock_release() that made room. */
static void on_granted(fifolock_waiter *waiter, void *arg)
{
    (void)waiter;
    start_work(arg);
}

static void ask_step(void *arg)
{
    struct task *t = arg;
    int rc;

    t->ticket = take_ticket();
    t->asked_at = loop.now;
    rc = fifolock_acquire(&lock, &t->waiter, modes[t->mode], on_granted, t);
    if (rc == 0) {
        start_work(t); /* held now; on_granted will not run */
    } else if (rc == FIFOLOCK_WAITING) {
        say("%s asks for %s: waits (%zu in the queue)", t->name, modes[t->mode]->name,
            fifolock_waiting(&lock));
    } else {
        check(false, "%s: fifolock_acquire: %s", t->name, fifolock_strerror(rc));
    }
}

static void release_step(void *arg)
{
    struct task *t = arg;
    int rc;

    say("%s commits, releases %s", t->name, modes[t->mode]->name);
    held[t->mode]--; /* first: waiters' callbacks run inside the release */
    rc = fifolock_release(&lock, modes[t->mode]);
    check(rc == 0, "%s: fifolock_release: %s", t->name, fifolock_strerror(rc));
}

int main(void)
{
    static struct task tasks[] = {
        { .name = "T1", .mode = IS, .asks_at = 0, .hold_for = 4, .expect_at = 0 },
        { .name = "T2", .mode = IX, .asks_at = 1, .hold_for = 3, .expect_at = 1 },
        { .name = "T3", .mode = S, .asks_at = 2, .hold_for = 4, .expect_at = 4 },  /* T2's IX */
        { .name = "T4", .mode = IS, .asks_at = 3, .hold_for = 1, .expect_at = 4 }, /* behind T3 */
        { .name = "T5", .mode = X, .asks_at = 5, .hold_for = 1, .expect_at = 8 },  /* alone */
        { .name = "T6", .mode = SIX, .asks_at = 6, .hold_for = 3, .expect_at = 9 },
        { .name = "T7", .mode = IS, .asks_at = 10, .hold_for = 1, .expect_at = 10 }, /* + SIX */
        { .name = "T8", .mode = IX, .asks_at = 10, .hold_for = 1, .expect_at = 12 },
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
