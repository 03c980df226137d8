#include "check.h"
#include "internal.h"
#include <errno.h>

static void mutex_blocks_mutex(void)
{
    fifolock lock;
    fifolock_init(&lock);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_mutex), 0);
    CHECK_EQ(fifolock_try_acquire(&lock, &fifolock_mutex), EBUSY);
    CHECK_EQ(fifolock_release(&lock, &fifolock_mutex), 0);
    CHECK_NULL_STR(fifolock__check_invariants(&lock));
    CHECK_EQ(fifolock_destroy(&lock), 0);
}

RUN_TESTS(TEST(mutex_blocks_mutex))
