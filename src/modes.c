/*
 * The ready-made modes. Each is nothing but a predicate over the hold counts;
 * users write their own the same way.
 */
#include "internal.h"

static bool mutex_is_compatible(const fifolock_mode *self, const fifolock_holds *holds)
{
    return fifolock_held(holds, self) == 0;
}

static bool read_is_compatible(const fifolock_mode *self, const fifolock_holds *holds)
{
    (void)self;
    return fifolock_held(holds, &fifolock_write) == 0;
}

static bool write_is_compatible(const fifolock_mode *self, const fifolock_holds *holds)
{
    (void)self;
    return fifolock_held_total(holds) == 0 ||
           (fifolock_held(holds, &fifolock_read) == 0 &&
            fifolock_held(holds, &fifolock_write) == 0 &&
            fifolock_held(holds, &fifolock_upgradable) == 0);
}

static bool upgradable_is_compatible(const fifolock_mode *self, const fifolock_holds *holds)
{
    (void)self;
    return fifolock_held(holds, &fifolock_write) == 0 &&
           fifolock_held(holds, &fifolock_upgradable) == 0;
}

bool fifolock_semaphore_is_compatible(const fifolock_mode *self, const fifolock_holds *holds)
{
    size_t n = fifolock_asked(holds); /* answers for all of a weighted request at once */

    return n <= self->limit && fifolock_held(holds, self) <= self->limit - n;
}

const fifolock_mode fifolock_mutex = { mutex_is_compatible, "mutex", 0 };
const fifolock_mode fifolock_read = { read_is_compatible, "read", 0 };
const fifolock_mode fifolock_write = { write_is_compatible, "write", 0 };
const fifolock_mode fifolock_upgradable = { upgradable_is_compatible, "upgradable", 0 };

/*
 * Intention modes: `limit` is the mode's row in the matrix below; bit j of a
 * row is set when that mode may join holders of mode j.
 */
enum { IS, IX, S, SIX, X, N_INTENTION };

static const fifolock_mode *const intention[N_INTENTION] = {
    &fifolock_is, &fifolock_ix, &fifolock_s, &fifolock_six, &fifolock_x,
};

static const unsigned char may_join[N_INTENTION] = {
    [IS] = 1u << IS | 1u << IX | 1u << S | 1u << SIX,
    [IX] = 1u << IS | 1u << IX,
    [S] = 1u << IS | 1u << S,
    [SIX] = 1u << IS,
    [X] = 0,
};

static bool intention_is_compatible(const fifolock_mode *self, const fifolock_holds *holds)
{
    unsigned row, j;

    if (self->limit >= N_INTENTION)
        return false; /* a copy of an intention mode with a row that does not exist */
    row = may_join[self->limit];
    for (j = 0; j < N_INTENTION; j++)
        if (!(row & 1u << j) && fifolock_held(holds, intention[j]) != 0)
            return false;
    return true;
}

const fifolock_mode fifolock_is = { intention_is_compatible, "IS", IS };
const fifolock_mode fifolock_ix = { intention_is_compatible, "IX", IX };
const fifolock_mode fifolock_s = { intention_is_compatible, "S", S };
const fifolock_mode fifolock_six = { intention_is_compatible, "SIX", SIX };
const fifolock_mode fifolock_x = { intention_is_compatible, "X", X };

/*
 * Whether one holder of `mode` may take a lock that nobody holds, known
 * without asking: true only for the ready-made predicates, which are pure
 * and admit a first holder (a semaphore of size 0 does not). A user's
 * predicate is always asked, with its lock's own hold table.
 */
bool fifolock__fits_idle(const fifolock_mode *mode)
{
    bool (*f)(const fifolock_mode *, const fifolock_holds *) = mode->is_compatible;

    if (f == mutex_is_compatible || f == read_is_compatible || f == write_is_compatible ||
        f == upgradable_is_compatible)
        return true;
    if (f == intention_is_compatible)
        return mode->limit < N_INTENTION;
    if (f == fifolock_semaphore_is_compatible)
        return mode->limit > 0;
    return false;
}
