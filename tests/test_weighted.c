/*
 * Weighted requests and conversions on the event-loop lock: every rule of
 * fifolock_acquire_n(), fifolock_release_n() and fifolock_convert(), with the
 * engine's invariants checked after each step.
 */
#include "check.h"
#include "internal.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

/* Grants are logged in order, by the id passed as the callback's argument. */
static int granted_ids[64];
static size_t ngranted;

static void on_grant(fifolock_waiter *w, void *arg)
{
    (void)w;
    if (ngranted < 64)
        granted_ids[ngranted] = (int)(intptr_t)arg;
    ngranted++;
}

static void log_reset(void)
{
    ngranted = 0;
}

#define ID(i) ((void *)(intptr_t)(i))
#define CHECK_OK(lock) CHECK_NULL_STR(fifolock__check_invariants(lock))

static void weighted_request_is_all_or_nothing(void)
{
    fifolock lock;
    fifolock_mode sem = FIFOLOCK_SEMAPHORE(5);

    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire_n(&lock, &sem, 3), 0);
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), &sem), 3);
    CHECK_EQ(fifolock_try_acquire_n(&lock, &sem, 3), EBUSY); /* 2 left: none taken */
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), &sem), 3);
    CHECK_EQ(fifolock_try_acquire_n(&lock, &sem, 2), 0);
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), &sem), 5);
    CHECK_EQ(fifolock_release_n(&lock, &sem, 5), 0);
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), &sem), 0);
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void waiting_big_request_keeps_its_place_and_holds_back_small_ones(void)
{
    fifolock lock;
    fifolock_mode sem = FIFOLOCK_SEMAPHORE(4);
    fifolock_waiter big = FIFOLOCK_WAITER_INIT, small = FIFOLOCK_WAITER_INIT;

    log_reset();
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire_n(&lock, &sem, 2), 0);
    CHECK_EQ(fifolock_acquire_n(&lock, &big, &sem, 4, on_grant, ID(1)), FIFOLOCK_WAITING);
    /* one would fit, but it queues behind the big one */
    CHECK_EQ(fifolock_acquire_n(&lock, &small, &sem, 1, on_grant, ID(2)), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_try_acquire(&lock, &sem), EBUSY);
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_release(&lock, &sem), 0); /* 1 held: 4 don't fit yet */
    CHECK_EQ(ngranted, 0);
    CHECK_EQ(fifolock_release(&lock, &sem), 0);
    CHECK_EQ(ngranted, 1); /* the big one, and the small one still waits behind */
    CHECK_EQ(granted_ids[0], 1);
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), &sem), 4);
    CHECK_EQ(fifolock_release_n(&lock, &sem, 3), 0);
    CHECK_EQ(ngranted, 2);
    CHECK_EQ(granted_ids[1], 2);
    CHECK_EQ(fifolock_release_n(&lock, &sem, 2), 0);
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void cancelled_big_request_lets_those_behind_through(void)
{
    fifolock lock;
    fifolock_mode sem = FIFOLOCK_SEMAPHORE(3);
    fifolock_waiter big = FIFOLOCK_WAITER_INIT, small = FIFOLOCK_WAITER_INIT;

    log_reset();
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &sem), 0);
    CHECK_EQ(fifolock_acquire_n(&lock, &big, &sem, 3, on_grant, ID(1)), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_acquire_n(&lock, &small, &sem, 2, on_grant, ID(2)), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_cancel(&lock, &big), 0);
    CHECK_EQ(ngranted, 1);
    CHECK_EQ(granted_ids[0], 2);
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), &sem), 3);
    CHECK_EQ(fifolock_release_n(&lock, &sem, 3), 0);
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void bad_counts_are_errors_that_change_nothing(void)
{
    fifolock lock;
    fifolock_mode sem = FIFOLOCK_SEMAPHORE(SIZE_MAX);
    fifolock_waiter w = FIFOLOCK_WAITER_INIT;

    fifolock_init(&lock);
    CHECK_EQ(fifolock_acquire_n(&lock, &w, &sem, 0, on_grant, NULL), EINVAL);
    CHECK_EQ(fifolock_try_acquire_n(&lock, &sem, 0), EINVAL);
    CHECK_EQ(fifolock_release_n(&lock, &sem, 0), EINVAL);
    CHECK_EQ(fifolock_try_acquire_n(NULL, &sem, 1), EINVAL);
    CHECK_EQ(fifolock_release_n(NULL, &sem, 1), EINVAL);
    CHECK_EQ(fifolock_try_acquire_n(&lock, &sem, 2), 0);
    CHECK_EQ(fifolock_release_n(&lock, &sem, 3), EPERM); /* more than held */
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), &sem), 2);
    CHECK_EQ(fifolock_release_n(&lock, &fifolock_read, 1), EPERM);
    /* counts are 32 bits: more would overflow */
    CHECK_EQ(fifolock_try_acquire_n(&lock, &sem, (size_t)UINT32_MAX - 1), EAGAIN);
    CHECK_EQ(fifolock_acquire_n(&lock, &w, &sem, (size_t)UINT32_MAX, on_grant, NULL), EAGAIN);
    CHECK_EQ(fifolock_try_acquire_n(&lock, &sem, SIZE_MAX), EAGAIN);
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), &sem), 2);
    CHECK_EQ(fifolock_try_acquire_n(&lock, &sem, (size_t)UINT32_MAX - 2), 0); /* exactly full */
    CHECK_EQ(fifolock_try_acquire(&lock, &sem), EAGAIN);
    CHECK_EQ(fifolock_release_n(&lock, &sem, (size_t)UINT32_MAX), 0);
    CHECK_EQ(fifolock_waiting(&lock), 0);
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

/* A user's predicate that does not know about n: asked once per hold. */
static size_t asked_calls, asked_seen[8];

static bool counting_mutexish(const fifolock_mode *self, const fifolock_holds *holds)
{
    size_t held = fifolock_held(holds, self);

    if (asked_calls < 8)
        asked_seen[asked_calls] = held;
    asked_calls++;
    return held < self->limit;
}

/* One that answers for n at once. */
static bool counting_n_aware(const fifolock_mode *self, const fifolock_holds *holds)
{
    asked_calls++;
    return fifolock_held(holds, self) + fifolock_asked(holds) <= self->limit;
}

/* The ready-made semaphore, with its questions counted. */
static bool counting_semaphore(const fifolock_mode *self, const fifolock_holds *holds)
{
    asked_calls++;
    return fifolock_semaphore_is_compatible(self, holds);
}

static void a_plain_predicate_is_asked_once_per_hold_with_those_before_counted(void)
{
    fifolock lock;
    fifolock_mode m = { counting_mutexish, "three", 3 };

    fifolock_init(&lock);
    asked_calls = 0;
    CHECK_EQ(fifolock_try_acquire_n(&lock, &m, 3), 0);
    CHECK_EQ(asked_calls, 3);
    CHECK_EQ(asked_seen[0], 0);
    CHECK_EQ(asked_seen[1], 1);
    CHECK_EQ(asked_seen[2], 2);
    asked_calls = 0;
    CHECK_EQ(fifolock_release_n(&lock, &m, 2), 0);
    CHECK_EQ(fifolock_try_acquire_n(&lock, &m, 3), EBUSY); /* the third one does not fit */
    /* refused, it is asked again on an empty table (could it ever fit?): 0, 1, 2 */
    CHECK_EQ(asked_calls, 6);
    CHECK_EQ(asked_seen[2], 3);
    CHECK_EQ(asked_seen[3], 0);
    CHECK_EQ(asked_seen[5], 2);
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), &m), 1); /* counts put back */
    CHECK_EQ(fifolock_held_total(fifolock_holds_of(&lock)), 1);
    CHECK_EQ(fifolock_release(&lock, &m), 0);
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void a_predicate_that_reads_the_count_is_asked_once(void)
{
    fifolock lock;
    fifolock_mode n_aware = { counting_n_aware, "n", 1000000000 };
    fifolock_mode sem = { counting_semaphore, "sem", 1000000000 };

    fifolock_init(&lock);
    asked_calls = 0;
    CHECK_EQ(fifolock_try_acquire_n(&lock, &n_aware, 1000000), 0);
    CHECK_EQ(asked_calls, 1);
    asked_calls = 0;
    CHECK_EQ(fifolock_try_acquire_n(&lock, &sem, 1000000), 0); /* the ready-made one: O(1) */
    CHECK_EQ(asked_calls, 1);
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), &sem), 1000000);
    CHECK_EQ(fifolock_try_acquire_n(&lock, &sem, 999000001), EBUSY);
    CHECK_EQ(fifolock_try_acquire_n(&lock, &sem, 999000000), 0);
    CHECK_EQ(fifolock_asked(fifolock_holds_of(&lock)), 1); /* outside a question */
    CHECK_EQ(fifolock_asked(NULL), 1);
    CHECK_EQ(fifolock_release_n(&lock, &sem, 1000000000), 0);
    CHECK_EQ(fifolock_release_n(&lock, &n_aware, 1000000), 0);
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

/* ---- conversions --------------------------------------------------------- */

static void upgradable_shares_with_readers_and_excludes_writers_and_upgradables(void)
{
    fifolock lock;

    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_upgradable), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_upgradable), EBUSY);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_write), EBUSY);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_write), EBUSY); /* write excludes it */
    CHECK_EQ(fifolock_release(&lock, &fifolock_upgradable), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_upgradable), EBUSY);
    CHECK_EQ(fifolock_release(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void downgrade_is_at_once_and_lets_queued_readers_in(void)
{
    fifolock lock;
    fifolock_waiter r1 = FIFOLOCK_WAITER_INIT, r2 = FIFOLOCK_WAITER_INIT;
    fifolock_waiter w2 = FIFOLOCK_WAITER_INIT, c = FIFOLOCK_WAITER_INIT;

    log_reset();
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_acquire(&lock, &r1, &fifolock_read, on_grant, ID(1)), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_acquire(&lock, &r2, &fifolock_read, on_grant, ID(2)), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_acquire(&lock, &w2, &fifolock_write, on_grant, ID(3)), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_convert(&lock, &c, &fifolock_write, &fifolock_read, on_grant, ID(9)), 0);
    CHECK_EQ(ngranted, 2); /* both readers, inside the call; the writer waits */
    CHECK_EQ(granted_ids[0], 1);
    CHECK_EQ(granted_ids[1], 2);
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), &fifolock_read), 3);
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), &fifolock_write), 0);
    CHECK_EQ(fifolock_cancel(&lock, &c), EALREADY); /* switched at once */
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_release_n(&lock, &fifolock_read, 3), 0);
    CHECK_EQ(ngranted, 3);
    CHECK_EQ(fifolock_release(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void upgrade_waits_ahead_of_the_queue_and_nothing_else_is_granted(void)
{
    fifolock lock;
    fifolock_waiter c = FIFOLOCK_WAITER_INIT, r = FIFOLOCK_WAITER_INIT;
    fifolock_waiter w = FIFOLOCK_WAITER_INIT;

    log_reset();
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_upgradable), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_acquire(&lock, &w, &fifolock_write, on_grant, ID(1)), FIFOLOCK_WAITING);
    CHECK_FALSE(fifolock_converting(&lock)); /* a plain request waits at the head */
    CHECK_EQ(fifolock_convert(&lock, &c, &fifolock_upgradable, &fifolock_write, on_grant, ID(2)),
             FIFOLOCK_WAITING);
    CHECK_TRUE(fifolock_converting(&lock));
    CHECK_EQ(fifolock_waiting(&lock), 2);
    /* a reader would fit the holders, but it queues */
    CHECK_EQ(fifolock_acquire(&lock, &r, &fifolock_read, on_grant, ID(3)), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_read), EBUSY);
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), &fifolock_upgradable), 1); /* kept */
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_release(&lock, &fifolock_upgradable), EPERM); /* the conversion's */
    CHECK_EQ(fifolock_try_convert(&lock, &fifolock_upgradable, &fifolock_read), EPERM);
    {
        fifolock_waiter c2 = FIFOLOCK_WAITER_INIT;
        CHECK_EQ(fifolock_convert(&lock, &c2, &fifolock_upgradable, &fifolock_read, on_grant,
                                  ID(7)),
                 EPERM);
    }
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_EQ(ngranted, 1); /* the conversion, ahead of the writer queued before it */
    CHECK_EQ(granted_ids[0], 2);
    CHECK_FALSE(fifolock_converting(&lock)); /* switched; the writer waits */
    CHECK_EQ(fifolock_waiting(&lock), 2);
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), &fifolock_write), 1);
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), &fifolock_upgradable), 0);
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_release(&lock, &fifolock_write), 0);
    CHECK_EQ(ngranted, 2);
    CHECK_EQ(granted_ids[1], 1);
    CHECK_EQ(fifolock_release(&lock, &fifolock_write), 0);
    CHECK_EQ(ngranted, 3);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void a_second_waiting_conversion_is_edeadlk(void)
{
    fifolock lock;
    fifolock_waiter c1 = FIFOLOCK_WAITER_INIT, c2 = FIFOLOCK_WAITER_INIT;

    log_reset();
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire_n(&lock, &fifolock_read, 2), 0);
    CHECK_EQ(fifolock_convert(&lock, &c1, &fifolock_read, &fifolock_write, on_grant, ID(1)),
             FIFOLOCK_WAITING);
    CHECK_TRUE(fifolock_converting(&lock));
    CHECK_EQ(fifolock_convert(&lock, &c2, &fifolock_read, &fifolock_write, on_grant, ID(2)),
             EDEADLK);
    CHECK_TRUE(fifolock_converting(&lock)); /* the first one still */
    CHECK_FALSE(fifolock__waiter_is_queued(&c2));
    CHECK_EQ(fifolock_try_convert(&lock, &fifolock_read, &fifolock_write), EBUSY);
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), &fifolock_read), 2);
    CHECK_EQ(fifolock_waiting(&lock), 1);
    /* the second reader gives up its read instead: the first upgrades */
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_EQ(ngranted, 1);
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), &fifolock_write), 1);
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), &fifolock_read), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_write), 0);
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void cancelled_conversion_keeps_from_and_lets_the_queue_go(void)
{
    fifolock lock;
    fifolock_waiter c = FIFOLOCK_WAITER_INIT, r = FIFOLOCK_WAITER_INIT;

    log_reset();
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_upgradable), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_convert(&lock, &c, &fifolock_upgradable, &fifolock_write, on_grant, ID(1)),
             FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_acquire(&lock, &r, &fifolock_read, on_grant, ID(2)), FIFOLOCK_WAITING);
    CHECK_TRUE(fifolock_converting(&lock));
    CHECK_EQ(fifolock_cancel(&lock, &c), 0);
    CHECK_FALSE(fifolock_converting(&lock));
    CHECK_EQ(ngranted, 1); /* the reader the conversion held back */
    CHECK_EQ(granted_ids[0], 2);
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), &fifolock_upgradable), 1);
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), &fifolock_write), 0);
    CHECK_EQ(fifolock_cancel(&lock, &c), EINVAL); /* already withdrawn */
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_release(&lock, &fifolock_upgradable), 0);
    CHECK_EQ(fifolock_release_n(&lock, &fifolock_read, 2), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

static void converting_an_unheld_mode_or_bad_input_changes_nothing(void)
{
    fifolock lock;
    fifolock_waiter c = FIFOLOCK_WAITER_INIT, q = FIFOLOCK_WAITER_INIT;
    fifolock_mode no_pred = { NULL, "none", 0 };

    CHECK_FALSE(fifolock_converting(NULL));
    fifolock_init(&lock);
    CHECK_EQ(fifolock_convert(&lock, &c, &fifolock_write, &fifolock_read, on_grant, NULL), EPERM);
    CHECK_EQ(fifolock_try_convert(&lock, &fifolock_write, &fifolock_read), EPERM);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_convert(NULL, &c, &fifolock_write, &fifolock_read, on_grant, NULL), EINVAL);
    CHECK_EQ(fifolock_convert(&lock, NULL, &fifolock_write, &fifolock_read, on_grant, NULL),
             EINVAL);
    CHECK_EQ(fifolock_convert(&lock, &c, NULL, &fifolock_read, on_grant, NULL), EINVAL);
    CHECK_EQ(fifolock_convert(&lock, &c, &fifolock_write, NULL, on_grant, NULL), EINVAL);
    CHECK_EQ(fifolock_convert(&lock, &c, &fifolock_write, &no_pred, on_grant, NULL), EINVAL);
    CHECK_EQ(fifolock_convert(&lock, &c, &fifolock_write, &fifolock_read, NULL, NULL), EINVAL);
    CHECK_EQ(fifolock_try_convert(&lock, &fifolock_write, &no_pred), EINVAL);
    /* a waiter that is queued can't be used for a conversion */
    CHECK_EQ(fifolock_acquire(&lock, &q, &fifolock_read, on_grant, NULL), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_convert(&lock, &q, &fifolock_write, &fifolock_read, on_grant, NULL),
             EINVAL);
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), &fifolock_write), 1);
    CHECK_EQ(fifolock_waiting(&lock), 1);
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_cancel(&lock, &q), 0);
    CHECK_EQ(fifolock_release(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

/* A conversion granted inside a release may release from its callback. */
static fifolock *reentrant_lock;

static void release_on_grant(fifolock_waiter *w, void *arg)
{
    (void)arg;
    CHECK_EQ(fifolock_release(reentrant_lock, w->mode), 0);
    ngranted++;
}

static void a_conversion_callback_may_call_the_lock(void)
{
    fifolock lock;
    fifolock_waiter c = FIFOLOCK_WAITER_INIT, w = FIFOLOCK_WAITER_INIT;

    log_reset();
    fifolock_init(&lock);
    reentrant_lock = &lock;
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_upgradable), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_convert(&lock, &c, &fifolock_upgradable, &fifolock_write, release_on_grant,
                              NULL),
             FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_acquire(&lock, &w, &fifolock_write, on_grant, ID(5)), FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    /* converted, released from its callback, then the writer behind */
    CHECK_EQ(ngranted, 2);
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), &fifolock_write), 1);
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_release(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

/* A predicate that counts its questions: fits while held + 1 <= limit (a plain semaphore). */
static size_t plain_calls;

static bool counting_plain(const fifolock_mode *self, const fifolock_holds *holds)
{
    plain_calls++;
    return fifolock_held(holds, self) < self->limit;
}

/*
 * n above a semaphore's size, write with n = 2, a semaphore of 0, a user's
 * mode that refuses an empty lock: on an idle lock, on a held one and
 * behind waiters, every variant says EDEADLK at once and changes nothing.
 */
static void a_request_that_never_fits_is_edeadlk_in_every_variant(void)
{
    fifolock lock;
    fifolock_waiter w = FIFOLOCK_WAITER_INIT, q = FIFOLOCK_WAITER_INIT, p = FIFOLOCK_WAITER_INIT;
    fifolock_mode sem5 = FIFOLOCK_SEMAPHORE(5), sem0 = FIFOLOCK_SEMAPHORE(0);
    fifolock_mode plain2 = { counting_plain, "plain2", 2 };
    struct {
        const fifolock_mode *mode;
        size_t n;
    } never[] = { { &sem5, 6 }, { &fifolock_write, 2 }, { &fifolock_mutex, 2 },
                  { &sem0, 1 }, { &plain2, 3 }, { &fifolock_upgradable, 2 } };
    size_t i;
    int round;

    log_reset();
    fifolock_init(&lock);
    for (round = 0; round < 3; round++) {
        /* round 0: idle; 1: a reader holds; 2: a writer waits behind it */
        if (round == 1)
            CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_read), 0);
        if (round == 2)
            CHECK_EQ(fifolock_acquire(&lock, &q, &fifolock_write, on_grant, ID(9)),
                     FIFOLOCK_WAITING);
        for (i = 0; i < sizeof never / sizeof never[0]; i++) {
            const fifolock_mode *m = never[i].mode;
            size_t n = never[i].n, total = fifolock_held_total(fifolock_holds_of(&lock));
            size_t waiting = fifolock_waiting(&lock);

            CHECK_TRUE(fifolock__never_fits(m, n));
            CHECK_EQ(fifolock_try_acquire_n(&lock, m, n), EDEADLK);
            CHECK_EQ(fifolock_acquire_n(&lock, &w, m, n, on_grant, ID(1)), EDEADLK);
            CHECK_FALSE(fifolock__waiter_is_queued(&w));
            CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), m), 0);
            CHECK_EQ(fifolock_held_total(fifolock_holds_of(&lock)), total);
            CHECK_EQ(fifolock_waiting(&lock), waiting);
            CHECK_OK(&lock);
        }
        CHECK_EQ(fifolock_try_acquire(&lock, &sem0), EDEADLK);
        CHECK_EQ(fifolock_acquire(&lock, &w, &sem0, on_grant, ID(1)), EDEADLK);
    }
    /* what fits an empty lock is not refused: it waits (or is busy) as before */
    CHECK_FALSE(fifolock__never_fits(&sem5, 5));
    CHECK_FALSE(fifolock__never_fits(&fifolock_write, 1));
    CHECK_FALSE(fifolock__never_fits(&plain2, 2));
    CHECK_EQ(fifolock_try_acquire_n(&lock, &sem5, 5), EBUSY); /* behind the writer */
    CHECK_EQ(fifolock_acquire_n(&lock, &w, &sem5, 5, on_grant, ID(2)), FIFOLOCK_WAITING);
    /* the plain predicate was asked as a request is: n questions, the ones before counted */
    plain_calls = 0;
    CHECK_EQ(fifolock_acquire_n(&lock, &p, &plain2, 3, on_grant, ID(3)), EDEADLK);
    CHECK_EQ(plain_calls, 3); /* 0 and 1 fit, the third (2 held) does not */
    /* bad input stays EINVAL; the helper says no to it */
    CHECK_FALSE(fifolock__never_fits(NULL, 1));
    CHECK_FALSE(fifolock__never_fits(&sem0, 0));
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0); /* the writer, then the 5 beside it */
    CHECK_EQ(ngranted, 2);
    CHECK_EQ(granted_ids[0], 9);
    CHECK_EQ(granted_ids[1], 2);
    CHECK_EQ(fifolock_release(&lock, &fifolock_write), 0);
    CHECK_EQ(fifolock_release_n(&lock, &sem5, 5), 0);
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

/* A conversion to a mode that refuses an empty lock would wait ahead of everybody for ever. */
static void a_conversion_that_never_fits_is_edeadlk_and_keeps_from(void)
{
    fifolock lock;
    fifolock_waiter c = FIFOLOCK_WAITER_INIT, q = FIFOLOCK_WAITER_INIT;
    fifolock_mode sem0 = FIFOLOCK_SEMAPHORE(0);

    log_reset();
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire_n(&lock, &fifolock_read, 2), 0);
    CHECK_EQ(fifolock_try_convert(&lock, &fifolock_read, &sem0), EDEADLK);
    CHECK_EQ(fifolock_convert(&lock, &c, &fifolock_read, &sem0, on_grant, ID(1)), EDEADLK);
    CHECK_FALSE(fifolock__waiter_is_queued(&c));
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), &fifolock_read), 2);
    CHECK_EQ(fifolock_waiting(&lock), 0);
    /* alone, too: nothing else holds, the mode still refuses */
    CHECK_EQ(fifolock_release(&lock, &fifolock_read), 0);
    CHECK_EQ(fifolock_convert(&lock, &c, &fifolock_read, &sem0, on_grant, ID(1)), EDEADLK);
    CHECK_EQ(fifolock_try_convert(&lock, &fifolock_read, &sem0), EDEADLK);
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), &fifolock_read), 1);
    /* a conversion that may fit later still waits; a later request behind it goes on */
    CHECK_EQ(fifolock_acquire(&lock, &q, &fifolock_upgradable, on_grant, ID(2)), 0);
    CHECK_EQ(fifolock_convert(&lock, &c, &fifolock_read, &fifolock_write, on_grant, ID(3)),
             FIFOLOCK_WAITING);
    CHECK_EQ(fifolock_release(&lock, &fifolock_upgradable), 0);
    CHECK_EQ(ngranted, 1);
    CHECK_EQ(fifolock_held(fifolock_holds_of(&lock), &fifolock_write), 1);
    CHECK_EQ(fifolock_release(&lock, &fifolock_write), 0);
    CHECK_OK(&lock);
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

/* FIFOLOCK_WAITING is a status apart from the error codes. */
static void waiting_status_is_no_errno_value(void)
{
    CHECK_TRUE(FIFOLOCK_WAITING < 0);
    CHECK_TRUE(strcmp(fifolock_strerror(FIFOLOCK_WAITING), fifolock_strerror(EPERM)) != 0);
    CHECK_TRUE(strcmp(fifolock_strerror(EDEADLK), "unknown error") != 0);
    /* and every code the shared-memory and etcd locks return */
    CHECK_TRUE(strcmp(fifolock_strerror(EOWNERDEAD), "unknown error") != 0);
    CHECK_TRUE(strcmp(fifolock_strerror(EBADMSG), "unknown error") != 0);
    CHECK_TRUE(strcmp(fifolock_strerror(EPROTO), "unknown error") != 0);
    CHECK_TRUE(strcmp(fifolock_strerror(ENOSPC), "unknown error") != 0);
    CHECK_TRUE(strcmp(fifolock_strerror(ENOLCK), "unknown error") != 0);
    /* other errno values: the C library's words */
    CHECK_EQ(strcmp(fifolock_strerror(ECONNREFUSED), strerror(ECONNREFUSED)), 0);
    CHECK_EQ(strcmp(fifolock_strerror(EIO), strerror(EIO)), 0);
    CHECK_EQ(strcmp(fifolock_strerror(-5), "unknown error"), 0);
}

RUN_TESTS(TEST(weighted_request_is_all_or_nothing),
          TEST(waiting_big_request_keeps_its_place_and_holds_back_small_ones),
          TEST(cancelled_big_request_lets_those_behind_through),
          TEST(bad_counts_are_errors_that_change_nothing),
          TEST(a_plain_predicate_is_asked_once_per_hold_with_those_before_counted),
          TEST(a_predicate_that_reads_the_count_is_asked_once),
          TEST(upgradable_shares_with_readers_and_excludes_writers_and_upgradables),
          TEST(downgrade_is_at_once_and_lets_queued_readers_in),
          TEST(upgrade_waits_ahead_of_the_queue_and_nothing_else_is_granted),
          TEST(a_second_waiting_conversion_is_edeadlk),
          TEST(cancelled_conversion_keeps_from_and_lets_the_queue_go),
          TEST(converting_an_unheld_mode_or_bad_input_changes_nothing),
          TEST(a_conversion_callback_may_call_the_lock),
          TEST(a_request_that_never_fits_is_edeadlk_in_every_variant),
          TEST(a_conversion_that_never_fits_is_edeadlk_and_keeps_from),
          TEST(waiting_status_is_no_errno_value))
