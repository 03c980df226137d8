#!/usr/bin/env python3
"""Writes the hand-made seeds of tests/fuzz/corpus/ (fuzz_engine.c says the format).

Run from anywhere: python3 tests/fuzz/make_corpus.py. Inputs the fuzzer found
(fuzz-*, min-*) sit beside these and are left alone; since operation bytes with
bit 6 set became the weighted and converting operations, those run other
programs than the ones they were found as, and the one whose case mattered
(an ENOMEM that leaves its waiter alone) is written here again.
"""
import os

MUTEX, READ, WRITE, SEM2, SEM3, IS, IX, S, SIX, X, C0, C1, C2, C3, UPG, NULLMODE, NOPRED = range(17)
NULLWAITER = 12
ALL = 0x7FFF  # may join every pool mode


def custom(may_join=0, limit=0, need=None, asks=False):
    """3 header bytes of one custom mode; `asks`: it answers for n at once."""
    hi = (may_join >> 8) & 0x7F
    b = limit & 3
    if need is not None:
        hi |= 0x80
        b |= need << 2
    if asks:
        b |= 0x80
    return bytes([may_join & 0xFF, hi, b])


def header(*modes):
    modes = list(modes) + [custom()] * (4 - len(modes))
    return b"".join(modes)


def op(code, lock=0, quiet=0, *args, nomem=0):
    return bytes([lock << 7 | nomem << 5 | quiet << 4 | code, *args])


def acquire(w, mode, lock=0, quiet=0, nomem=0):
    return op(0, lock, quiet, w, mode, nomem=nomem)


def acquire_free(r, mode, lock=0, quiet=0):
    return op(4, lock, quiet, r, mode)


def release(mode, lock=0):
    return op(5, lock, 0, mode)


def release_held(r=0, lock=0):
    return op(7, lock, 0, r)


def try_acquire(mode, lock=0, nomem=0):
    return op(8, lock, 0, mode, nomem=nomem)


def cancel(w, lock=0):
    return op(9, lock, 0, w)


def cancel_queued(r, lock=0):
    return op(10, lock, 0, r)


def cancel_other(r, lock=0):
    return op(11, lock, 0, r)


def reuse_queued(r, mode, lock=0):
    return op(12, lock, 0, r, mode)


def destroy(lock=0):
    return op(13, lock)


def bad_inputs(mode, w, err, lock=0):
    return op(14, lock, 0, mode, w, err)


def short_list(max_, lock=0):
    return op(15, lock, 0, max_)


# The weighted and converting operations (bit 6; step_weighted() in fuzz_engine.c).
def wop(code, lock=0, quiet=0, *args, nomem=0):
    return bytes([lock << 7 | 0x40 | nomem << 5 | quiet << 4 | code, *args])


def acquire_n(w, mode, n, lock=0, quiet=0, nomem=0):
    return wop(0, lock, quiet, w, mode, n, nomem=nomem)


def try_acquire_n(mode, n, lock=0, nomem=0):
    return wop(3, lock, 0, mode, n, nomem=nomem)


def release_n(mode, n, lock=0):
    return wop(4, lock, 0, mode, n)


def release_kept(n=1, lock=0):
    """Releases n holds of the mode the waiting conversion keeps a hold of."""
    return wop(6, lock, 0, (n - 1) | 2)


def convert(w, from_, to, lock=0, quiet=0, nomem=0):
    return wop(9, lock, quiet, w, from_, to, nomem=nomem)


def try_convert(from_, to, lock=0, nomem=0):
    return wop(10, lock, 0, from_, to, nomem=nomem)


def cancel_head(lock=0):
    return wop(13, lock)


def convert_own(to, lock=0, quiet=0):
    """In a callback: converts what its waiter got, with that waiter."""
    return wop(14, lock, quiet, 0, to)


def bad_weighted(mode, rw, rf, lock=0):
    return wop(15, lock, 0, mode, rw, rf)


def cb(*ops):
    """What a busy grant callback does: the count byte, then its operations."""
    return bytes([len(ops)]) + b"".join(ops)


QUIET = cb()  # a busy callback that does nothing

POOL = range(MUTEX, UPG + 1)

SEEDS = {
    # A compatible request queues behind a waiting one (no barging), and
    # waiters are granted in order as room is made.
    "rw_fifo": header() + acquire(0, READ) + acquire(1, WRITE) + acquire(2, READ)
    + release(READ) + QUIET + release(WRITE) + QUIET + release(READ),
    # Cancelling the head grants the compatible waiters behind it.
    "cancel_head_unblocks": header() + acquire(0, READ) + acquire(1, WRITE)
    + acquire(2, READ) + acquire(3, READ) + cancel(1) + QUIET + QUIET
    + release_held() + release_held() + release_held(),
    # Release drops exactly the mode named, with several modes in the table.
    "release_right_mode": header() + try_acquire(MUTEX) + try_acquire(READ)
    + try_acquire(SEM2) + release(READ) + release(SEM2) + try_acquire(READ)
    + release(MUTEX) + release(READ),
    # The intention matrix, row by row.
    "intention_modes": header() + acquire(0, IS) + acquire(1, IX) + acquire(2, S)
    + acquire(3, SIX) + acquire(4, IS) + acquire(5, X) + acquire(6, IS)
    + release(IX) + QUIET + QUIET + release(IS) + release(IS) + QUIET
    + release(S) + release(SIX) + QUIET + release(IS) + QUIET,
    # Semaphores of 2 and 3 places side by side.
    "semaphores": header() + acquire(0, SEM2) + acquire(1, SEM2) + acquire(2, SEM2)
    + acquire(3, SEM3, 0, 1) + try_acquire(SEM3) + try_acquire(SEM2)
    + release(SEM2) + QUIET + release(SEM2) + release(SEM2),
    # Every pool mode at once: the hold table outgrows its inline entries.
    "many_modes": header(custom(ALL), custom(ALL, 2), custom(ALL), custom(ALL))
    + b"".join(try_acquire(m) for m in (MUTEX, READ, SEM2, SEM3, IS, C0, C1, C2, C3, C1))
    + acquire(0, WRITE) + acquire(1, X) + acquire(2, C1) + short_list(2)
    + b"".join(release(m) for m in (SEM3, MUTEX, IS, C0, C2, READ, SEM2, C3))
    + QUIET + release(C1) + QUIET + short_list(1),
    # Custom modes from the header: a bitmask matrix and per-mode limits.
    "custom_matrix": header(custom(1 << C0 | 1 << C1, 2), custom(1 << C0), custom(0),
                            custom(1 << C3 | 1 << READ, 3))
    + acquire(0, C0) + acquire(1, C0) + acquire(2, C1) + acquire(3, C0)
    + acquire(4, C3) + acquire(5, C2) + release_held() + QUIET + QUIET
    + release_held() + QUIET + release_held() + QUIET,
    # A mode that needs another one held (the predicate is not monotonic).
    "custom_needs": header(custom(ALL, 0, READ), custom(ALL & ~(1 << WRITE)))
    + acquire(0, C0) + acquire(1, READ) + acquire(2, WRITE) + release(C0)
    + try_acquire(READ) + acquire(3, C0) + cancel_queued(0),
    # Callbacks that release their own mode, acquire again (same and other
    # lock), cancel a later waiter and try to destroy the lock.
    "reentrant_callbacks": header() + acquire(0, MUTEX) + acquire(1, MUTEX)
    + acquire(2, MUTEX) + acquire(3, MUTEX) + acquire(4, READ, 1)
    + acquire(5, WRITE, 1)
    + release(MUTEX)
    + cb(release(MUTEX), acquire(1, MUTEX), destroy())
    + cb(cancel(3), release_held(), acquire(6, WRITE, 1))
    + cb(release(READ, 1) + QUIET)
    + release_held() + QUIET,
    # Bad input of every kind: all refused, nothing changes.
    "bad_inputs": header() + bad_inputs(READ, 0, 0) + acquire(0, NULLMODE)
    + acquire(0, NOPRED) + release(WRITE) + release(NULLMODE) + release(NOPRED)
    + try_acquire(NOPRED) + cancel(NULLWAITER) + cancel(5) + acquire(0, WRITE)
    + acquire(1, READ) + reuse_queued(0, READ) + reuse_queued(0, READ, 1)
    + cancel(0) + cancel(1, 1) + cancel(1) + cancel(1) + release(WRITE)
    + bad_inputs(MUTEX, 1, 200) + destroy(),
    # Destroy: refused while held, waited on or granting; fine when idle, and
    # the lock works again afterwards.
    "destroy": header() + destroy() + try_acquire(MUTEX) + destroy() + acquire(0, MUTEX)
    + destroy() + release(MUTEX) + QUIET + destroy() + release(MUTEX) + destroy()
    + destroy() + acquire(1, WRITE) + cancel(1) + release(WRITE) + destroy(),
    # Two locks: a waiter of one can't be cancelled through the other.
    "two_locks": header() + acquire(0, WRITE, 1) + acquire(1, WRITE, 1)
    + acquire(2, WRITE) + acquire(3, WRITE) + cancel_other(0) + cancel_other(1)
    + cancel_other(0, 1) + cancel(1) + cancel(3, 1) + release(WRITE, 1) + QUIET
    + release(WRITE) + QUIET + acquire_free(0, READ, 1),
    # Every pair of pool modes: may b join a holder of a?
    "pairwise": header(custom(ALL & ~(1 << READ)), custom(1 << IS | 1 << C1, 1),
                       custom(ALL, 3), custom(0))
    + b"".join(try_acquire(a) + try_acquire(b) + release(b) + release(a)
               for a in POOL for b in POOL),
    # A callback that releases the last hold may not destroy the lock.
    "destroy_in_callback": header() + try_acquire(SIX) + acquire(8, SIX) + release(SIX)
    + cb(release(SIX), destroy()) + destroy(),
    # ENOMEM when the hold table must grow: refused, nothing changes; and
    # fine again once memory is back.
    # Cancel from the middle and the tail; the last entry of a grown hold
    # table leaves with a cancel (a mode that needs a mutex holder waits on
    # an empty lock), which frees the table.
    "cancel_middle_then_free": header(custom(ALL, 0, MUTEX))
    + b"".join(try_acquire(m) for m in (READ, SEM2, SEM3, IS))
    + acquire(0, C0) + acquire(1, C0) + acquire(2, C0) + cancel(1)
    + b"".join(release(m) for m in (READ, SEM2, SEM3, IS)) + cancel(2) + cancel(0),
    # holds_list with less room than modes held: fills max, counts them all.
    "holds_list_short": header() + try_acquire(READ) + try_acquire(SEM2)
    + try_acquire(IS) + try_acquire(SEM2) + short_list(0) + short_list(1) + short_list(2)
    + release(READ) + short_list(1) + release_held(1) + release_held(7) + short_list(2),
    "no_memory": header(custom(ALL), custom(ALL)) + try_acquire(READ)
    + try_acquire(SEM3) + try_acquire(IS) + try_acquire(C0, nomem=1)
    + acquire(0, C0, nomem=1) + acquire(0, C0, nomem=0) + try_acquire(C1)
    + try_acquire(MUTEX) + try_acquire(SEM2) + acquire(1, WRITE, nomem=1)
    + acquire(1, WRITE) + try_acquire(C1, nomem=1) + release(READ) + QUIET,
    # An acquire that fails for memory leaves its waiter as it was (granted on
    # the other lock): cancelling it on this lock is refused.
    "enomem_leaves_waiter_alone": header() + acquire(3, SEM2, 1, 1) + try_acquire(MUTEX)
    + try_acquire(IS) + try_acquire(SEM3) + acquire(3, C3, 0, 1, nomem=1) + cancel(3)
    + release(MUTEX) + release(SEM3) + release(IS) + release(SEM2, 1),
    # A request of n keeps its place and holds back smaller ones that would fit.
    "weighted_fifo": header() + try_acquire_n(SEM3, 2) + acquire_n(0, SEM3, 3, 0, 1)
    + acquire_n(1, SEM3, 1, 0, 1) + try_acquire_n(SEM3, 1) + release(SEM3)
    + release(SEM3) + release_n(SEM3, 4) + release_n(SEM3, 3) + release_n(SEM3, 1),
    # A plain predicate asked once per hold (C0, at most 3), one that answers for
    # n at once (C1, the same rule), and one that can't join itself (C2: n > 1
    # never fits, so it waits until cancelled).
    "weighted_custom": header(custom(ALL, 3), custom(ALL, 3, asks=True),
                              custom(ALL & ~(1 << C2), 0, asks=True))
    + acquire_n(0, C0, 3, 0, 1) + try_acquire_n(C0, 1) + release_n(C0, 2)
    + acquire_n(1, C0, 3, 0, 1) + release(C0) + acquire_n(2, C1, 2, 0, 1)
    + acquire_n(3, C1, 2, 0, 1) + release(C1) + acquire_n(4, C2, 2, 0, 1) + cancel(4)
    + acquire_n(4, C2, 1, 0, 1) + release_n(C0, 3) + release_n(C1, 3) + release(C2),
    # Upgrade: waits ahead of a writer queued before it, keeps its hold (whose
    # release is refused), and nothing else is granted meanwhile.
    "upgrade_waits_ahead": header() + try_acquire(UPG) + try_acquire(READ)
    + acquire(0, WRITE, 0, 1) + convert(1, UPG, WRITE, 0, 1) + acquire(2, READ, 0, 1)
    + try_acquire(READ) + release(UPG) + release_kept() + release(READ) + release(WRITE)
    + release(WRITE) + release(READ),
    # Downgrade: at once, and the readers queued behind are let in.
    "downgrade_grants": header() + try_acquire(WRITE) + acquire(0, READ, 0, 1)
    + acquire(1, READ, 0, 1) + acquire(2, WRITE, 0, 1) + convert(3, WRITE, READ)
    + cancel(3) + release_n(READ, 3) + release(WRITE),
    # Two readers upgrading: the second that would wait is EDEADLK.
    "edeadlk": header() + try_acquire_n(READ, 2) + convert(0, READ, WRITE, 0, 1)
    + convert(1, READ, WRITE, 0, 1) + try_convert(READ, WRITE) + release_kept(2)
    + release(READ) + release(WRITE),
    # A cancelled conversion keeps `from` and lets the queue go.
    "cancel_conversion": header() + try_acquire(UPG) + try_acquire(READ)
    + convert(0, UPG, WRITE, 0, 1) + acquire(1, READ, 0, 1) + cancel_head() + cancel(0)
    + release(UPG) + release_n(READ, 2),
    # A callback converts what it got with its own waiter (it waits, ahead of
    # everybody), then releases a read from the same callback, which lets the
    # conversion through in the outer grant loop.
    "convert_in_callback": header() + try_acquire(WRITE) + acquire(1, READ, 0, 1)
    + acquire(0, UPG) + acquire(2, READ, 0, 1) + release(WRITE)
    + cb(convert_own(WRITE), release(READ)) + QUIET + release(WRITE) + release(READ),
    # Conversions that need memory for `to` and get none: nothing changes.
    "convert_no_memory": header(custom(ALL), custom(ALL)) + try_acquire(READ)
    + try_acquire(SEM3) + try_acquire(IS) + convert(0, READ, C0, nomem=1)
    + try_convert(READ, C1, nomem=1) + try_acquire(WRITE) + convert(0, READ, C0)
    + try_convert(SEM3, C1) + release(C0) + release(C1) + release(IS),
    # Bad counts and pointers: refused, nothing changes.
    "weighted_bad_inputs": header() + try_acquire(READ) + bad_weighted(WRITE, 0, 0)
    + acquire_n(0, READ, 0) + release_n(READ, 2) + try_acquire_n(NULLMODE, 1)
    + try_acquire_n(NOPRED, 2) + convert(0, NULLMODE, READ) + convert(NULLWAITER, READ, WRITE)
    + convert(0, READ, NOPRED) + convert(0, WRITE, READ) + try_convert(WRITE, READ)
    + release_n(NULLMODE, 1) + release(READ),
    # Callbacks that take and give back weighted holds on both locks.
    "weighted_reentrant": header() + try_acquire_n(SEM3, 3) + acquire_n(0, SEM3, 2)
    + acquire_n(1, SEM3, 3, 1) + release_n(SEM3, 2)
    + cb(release_n(SEM3, 1), acquire_n(2, SEM3, 2, 0, 1), release_n(SEM3, 3, 1))
    + release_n(SEM3, 2) + release_n(SEM3, 2),
}


def main():
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    os.makedirs(here, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(here, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
