#!/usr/bin/env python3
"""Writes the hand-made seeds of tests/fuzz/corpus/ (fuzz_engine.c says the format).

Run from anywhere: python3 tests/fuzz/make_corpus.py. Inputs the fuzzer found
and minimised (min-*) sit beside these and are left alone.
"""
import os

MUTEX, READ, WRITE, SEM2, SEM3, IS, IX, S, SIX, X, C0, C1, C2, C3, NULLMODE, NOPRED = range(16)
NULLWAITER = 12


def custom(may_join=0, limit=0, need=None):
    """3 header bytes of one custom mode."""
    hi = (may_join >> 8) & 0x3F
    b = limit & 3
    if need is not None:
        hi |= 0x80
        b |= need << 2
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


def cb(*ops):
    """What a busy grant callback does: the count byte, then its operations."""
    return bytes([len(ops)]) + b"".join(ops)


QUIET = cb()  # a busy callback that does nothing

POOL = range(MUTEX, C3 + 1)

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
    "many_modes": header(custom(0x3FFF), custom(0x3FFF, 2), custom(0x3FFF), custom(0x3FFF))
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
    "custom_needs": header(custom(0x3FFF, 0, READ), custom(0x3FFF & ~(1 << WRITE)))
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
    "pairwise": header(custom(0x3FFF & ~(1 << READ)), custom(1 << IS | 1 << C1, 1),
                       custom(0x3FFF, 3), custom(0))
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
    "cancel_middle_then_free": header(custom(0x3FFF, 0, MUTEX))
    + b"".join(try_acquire(m) for m in (READ, SEM2, SEM3, IS))
    + acquire(0, C0) + acquire(1, C0) + acquire(2, C0) + cancel(1)
    + b"".join(release(m) for m in (READ, SEM2, SEM3, IS)) + cancel(2) + cancel(0),
    # holds_list with less room than modes held: fills max, counts them all.
    "holds_list_short": header() + try_acquire(READ) + try_acquire(SEM2)
    + try_acquire(IS) + try_acquire(SEM2) + short_list(0) + short_list(1) + short_list(2)
    + release(READ) + short_list(1) + release_held(1) + release_held(7) + short_list(2),
    "no_memory": header(custom(0x3FFF), custom(0x3FFF)) + try_acquire(READ)
    + try_acquire(SEM3) + try_acquire(IS) + try_acquire(C0, nomem=1)
    + acquire(0, C0, nomem=1) + acquire(0, C0, nomem=0) + try_acquire(C1)
    + try_acquire(MUTEX) + try_acquire(SEM2) + acquire(1, WRITE, nomem=1)
    + acquire(1, WRITE) + try_acquire(C1, nomem=1) + release(READ) + QUIET,
}


def main():
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    os.makedirs(here, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(here, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
