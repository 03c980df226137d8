/*
 * The grant rule for a queue kept outside a fifolock: in shared memory
 * (shm.c) or on an etcd cluster. Such a queue is a list of entries, oldest
 * first, each one request of some holds of one mode; who holds is not
 * stored anywhere, it follows from the list.
 *
 * Holders are always a prefix of the list: the engine grants only its head
 * and the list loses entries only by release, cancel or death. So "which
 * entries hold" is "how long is the granted prefix", and the answer is the
 * engine's own: an empty engine is offered the entries in order with
 * fifolock_try_acquire(), which grants exactly when the queue is empty and
 * the mode fits (I4), and the first refusal ends the prefix (I3: nothing
 * behind a waiting head is granted). No second grant algorithm exists.
 *
 * Recomputing the prefix from the list after every change gives the grants
 * the engine would have made step by step, provided predicates are monotone:
 * fewer holders never make a mode incompatible. Then an entry that held
 * before a removal still holds after it (it now joins fewer holders), so a
 * grant is never taken back; the front ends say so in their headers.
 *
 * This file uses only the engine's public calls, so the etcd library, which
 * links libfifolock.so, builds it into itself (hidden) rather than reach
 * into the core's private symbols.
 */
#include "internal.h"

#include <errno.h>

static bool never_compatible(const fifolock_mode *self, const fifolock_holds *holds)
{
    (void)self;
    (void)holds;
    return false;
}

/* What an entry of a mode this process does not know stands for. */
static const fifolock_mode unknown_mode = { never_compatible, "unknown", 0 };

int fifolock__granted_prefix(const struct fifolock__entry *entries, size_t count,
                             size_t *granted)
{
    fifolock engine;
    size_t i, k, n = 0;
    int rc = 0;

    if (granted == NULL || (entries == NULL && count > 0))
        return EINVAL;
    fifolock_init(&engine);
    for (i = 0; i < count && rc == 0; i++) {
        const fifolock_mode *mode = entries[i].mode ? entries[i].mode : &unknown_mode;

        if (mode->is_compatible == NULL || entries[i].n == 0) {
            rc = EINVAL;
            break;
        }
        for (k = 0; k < entries[i].n && rc == 0; k++)
            rc = fifolock_try_acquire(&engine, mode);
        if (rc == 0)
            n++;
    }
    /* Hand every hold back, so that the engine frees what it allocated. */
    while (engine.holds.used > 0)
        (void)fifolock_release(&engine, engine.holds.inline_[0].mode);
    (void)fifolock_destroy(&engine);
    *granted = n;
    /* Both refusals end the prefix: EDEADLK is a mode that no lock admits
       (the engine refuses it at once rather than queue it), as unknown_mode. */
    return rc == EBUSY || rc == EDEADLK ? 0 : rc;
}

/*
 * The same question for a queue kept outside a fifolock, asked through the
 * engine's public calls on an empty scratch lock, which refuses a request
 * that can never fit with EDEADLK (and allocates nothing for one mode).
 */
bool fifolock__never_fits(const fifolock_mode *mode, size_t n)
{
    fifolock scratch;
    int rc;

    if (!(mode != NULL && mode->is_compatible != NULL) || n == 0 || n > UINT32_MAX)
        return false;
    fifolock_init(&scratch);
    rc = fifolock_try_acquire_n(&scratch, mode, n);
    if (rc == 0)
        (void)fifolock_release_n(&scratch, mode, n);
    (void)fifolock_destroy(&scratch);
    return rc == EDEADLK;
}

/*
 * The rule for a queue that holds one conversion: as
 * fifolock__granted_prefix(), but entry `conv` (if below `count`) is no
 * request of its own: it turns one hold of entry `from`'s mode (from <
 * conv, granted before it) into one of its own mode, asked of the engine as
 * fifolock_try_convert() at its place; a refusal (EBUSY, EDEADLK, or EPERM
 * when `from` was not granted) ends the prefix there, as any refusal does.
 * The caller puts the conversion right after the holders, where the engine
 * keeps a waiting one: ahead of every request that waits.
 */
int fifolock__granted_prefix_convert(const struct fifolock__entry *entries, size_t count,
                                     size_t conv, size_t from, size_t *granted)
{
    fifolock engine;
    size_t i, k, n = 0;
    int rc = 0;

    if (granted == NULL || (entries == NULL && count > 0) || (conv < count && from >= conv))
        return EINVAL;
    fifolock_init(&engine);
    for (i = 0; i < count && rc == 0; i++) {
        const fifolock_mode *mode = entries[i].mode ? entries[i].mode : &unknown_mode;

        if (mode->is_compatible == NULL || entries[i].n == 0 || (i == conv && entries[i].n != 1)) {
            rc = EINVAL;
            break;
        }
        if (i == conv) {
            const fifolock_mode *f = entries[from].mode ? entries[from].mode : &unknown_mode;

            rc = fifolock_try_convert(&engine, f, mode);
        } else {
            for (k = 0; k < entries[i].n && rc == 0; k++)
                rc = fifolock_try_acquire(&engine, mode);
        }
        if (rc == 0)
            n++;
    }
    while (engine.holds.used > 0)
        (void)fifolock_release(&engine, engine.holds.inline_[0].mode);
    (void)fifolock_destroy(&engine);
    *granted = n;
    return rc == EBUSY || rc == EDEADLK || rc == EPERM ? 0 : rc;
}
