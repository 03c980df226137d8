/*
 * The grant rule over a queue kept outside a fifolock (src/rule.c), checked
 * against the engine: the prefix it reports is what a fifolock grants when
 * the same requests are made in the same order.
 */
#include "check.h"
#include "internal.h"

#include <errno.h>

static size_t prefix(const struct fifolock__entry *e, size_t count)
{
    size_t n = 99;

    CHECK_EQ(fifolock__granted_prefix(e, count, &n), 0);
    return n;
}

static void readers_share_until_a_writer_waits(void)
{
    struct fifolock__entry q[] = {
        { &fifolock_read, 1 }, { &fifolock_read, 1 }, { &fifolock_write, 1 },
        { &fifolock_read, 1 },
    };

    CHECK_EQ(prefix(q, 0), 0);
    CHECK_EQ(prefix(q, 2), 2);
    CHECK_EQ(prefix(q, 4), 2); /* the reader behind the writer queues */
    CHECK_EQ(prefix(q + 2, 2), 1);
}

static void weighted_entry_is_all_or_nothing(void)
{
    fifolock_mode sem = FIFOLOCK_SEMAPHORE(5);
    struct fifolock__entry q[] = { { &sem, 3 }, { &sem, 3 }, { &sem, 1 } };

    CHECK_EQ(prefix(q, 3), 1); /* 3 + 3 > 5: the second waits, the third behind it */
    q[1].n = 2;
    CHECK_EQ(prefix(q, 3), 2);
}

static void unknown_mode_is_never_granted_past(void)
{
    struct fifolock__entry q[] = { { NULL, 1 }, { &fifolock_read, 1 } };

    CHECK_EQ(prefix(q, 2), 0);
}

static void many_modes_allocate_and_free(void)
{
    fifolock_mode sems[40];
    struct fifolock__entry q[40];
    size_t i;

    for (i = 0; i < 40; i++) {
        sems[i] = (fifolock_mode)FIFOLOCK_SEMAPHORE(1);
        q[i] = (struct fifolock__entry){ &sems[i], 1 };
    }
    CHECK_EQ(prefix(q, 40), 40); /* valgrind checks that nothing leaks */
}

static void bad_input_is_einval(void)
{
    fifolock_mode bad = { NULL, "bad", 0 };
    struct fifolock__entry q[] = { { &fifolock_read, 1 }, { &bad, 1 } };
    struct fifolock__entry z[] = { { &fifolock_read, 0 } };
    size_t n = 99;

    CHECK_EQ(fifolock__granted_prefix(q, 2, NULL), EINVAL);
    CHECK_EQ(fifolock__granted_prefix(NULL, 1, &n), EINVAL);
    CHECK_EQ(fifolock__granted_prefix(q, 2, &n), EINVAL);
    CHECK_EQ(n, 1);
    CHECK_EQ(fifolock__granted_prefix(z, 1, &n), EINVAL);
}

RUN_TESTS(TEST(readers_share_until_a_writer_waits), TEST(weighted_entry_is_all_or_nothing),
          TEST(unknown_mode_is_never_granted_past), TEST(many_modes_allocate_and_free),
          TEST(bad_input_is_einval))
