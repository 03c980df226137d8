"""No references or memory left behind, on every path.

A workload that takes every path of the module (uncontended and queued
acquires of C and Python modes, cancels while waiting and after a grant,
timeouts, raising and async predicates, weighted requests, conversions
(at once, waiting, cancelled before and after the switch, a second one,
raising), a release from another thread by a
closed coroutine, use from a thread or loop the lock is not bound to, errors
in the body, introspection) runs many times, on one event
loop (a lock belongs to the loop of its first acquire). After a warm-up, nothing may grow: the reference counts of the mode
classes and of a long-lived lock, the number of live objects, the memory
traced by tracemalloc and, on a debug build of Python, sys.gettotalrefcount().
FIFOLOCK_LEAK_RUNS sets the number of measured runs (default 8).
"""
import asyncio
import gc
import os
import sys
import threading
import tracemalloc
import unittest

from fifolock import (DeadlockError, FifoLock, IS, Mutex, Read, Semaphore, Upgradable,
                      Write, X)

RUNS = int(os.environ.get("FIFOLOCK_LEAK_RUNS", "8"))


class UserMode(asyncio.Future):
    @staticmethod
    def is_compatible(holds):
        return not holds[UserMode] and not holds[Write]


class PlainMode(asyncio.Future):
    def is_compatible(self, holds):
        return holds[PlainMode] < 2


class Raising(asyncio.Future):
    @staticmethod
    def is_compatible(holds):
        if holds[X]:
            return False
        raise ValueError("raising")


class Async(asyncio.Future):
    @staticmethod
    async def is_compatible(holds):
        return not holds[X]


class ConvertRaising(asyncio.Future):
    @staticmethod
    def is_compatible(holds):
        raise ValueError("converting")


CLASSES = (Mutex, Read, Write, IS, X, Semaphore(2), UserMode, PlainMode, Raising, Async,
           Upgradable, ConvertRaising)
LONG_LIVED = FifoLock()
OTHER_THREAD = FifoLock()  # bound to another thread, held there in Mutex
OTHER_LOOP = FifoLock()  # bound to a closed loop of this thread, held in Mutex
LOOP = None


async def settle(steps=4):
    for _ in range(steps):
        await asyncio.sleep(0)


async def hold(lock, mode, gate):
    async with lock(mode):
        await gate.wait()


async def take(lock, mode):
    async with lock(mode):
        await asyncio.sleep(0)


async def take_n(lock, mode, n):
    async with lock(mode, n=n):
        await asyncio.sleep(0)


async def body_raises(lock, mode):
    async with lock(mode):
        raise KeyError(mode)


async def workload(lock):
    # Uncontended, every kind of mode.
    for mode in (Mutex, Read, Write, IS, Semaphore(2), UserMode, PlainMode):
        for _ in range(20):
            async with lock(mode):
                pass
    # Queued, with a shared context manager.
    for mode in (Mutex, UserMode, PlainMode, Semaphore(2)):
        cm = lock(mode)

        async def use():
            async with cm:
                await asyncio.sleep(0)

        await asyncio.gather(*(use() for _ in range(30)))
    # Cancel while waiting, and right after a grant.
    gate = asyncio.Event()
    holder = asyncio.create_task(hold(lock, Write, gate))
    await settle()
    waiters = [asyncio.create_task(take(lock, m)) for m in (Read, UserMode, Read, Mutex) * 5]
    await settle()
    for w in waiters[::3]:
        w.cancel()
    await settle()
    gate.set()
    await holder
    for w in waiters[1::3]:
        w.cancel()  # some granted a moment ago, not resumed yet
    await asyncio.gather(*waiters, return_exceptions=True)
    # Timeouts.
    gate = asyncio.Event()
    holder = asyncio.create_task(hold(lock, X, gate))
    await settle()
    await asyncio.gather(*(asyncio.wait_for(take(lock, m), 0.001)
                           for m in (IS, UserMode, PlainMode) * 30),
                         return_exceptions=True)
    # Raising predicates: at the head, and on a free lock.
    raisers = [asyncio.create_task(take(lock, Raising)) for _ in range(5)]
    await settle()
    gate.set()
    await holder
    await asyncio.gather(*raisers, return_exceptions=True)
    for _ in range(5):
        try:
            await take(lock, Raising)
        except ValueError:
            pass
    # Async predicates: at the head, and on a free lock.
    gate = asyncio.Event()
    holder = asyncio.create_task(hold(lock, X, gate))
    await settle()
    first = asyncio.create_task(take(lock, IS))
    refused = [asyncio.create_task(take(lock, Async)) for _ in range(5)]
    await settle()
    gate.set()
    await holder
    await first
    await asyncio.gather(*refused, return_exceptions=True)
    for _ in range(5):
        try:
            await take(lock, Async)
        except TypeError:
            pass
    # A holder's coroutine closed in another thread: its release there wakes
    # the waiter through the loop.
    for _ in range(5):
        coro = hold(lock, Mutex, asyncio.Event())
        coro.send(None)
        waiter = asyncio.create_task(take(lock, Mutex))
        await settle()
        closer = threading.Thread(target=coro.close)
        closer.start()
        closer.join()
        await waiter
    # Locks bound to another thread, and to another loop.
    for _ in range(5):
        for other in (OTHER_THREAD, OTHER_LOOP):
            try:
                await take(other, Read)
            except RuntimeError:
                pass
        try:
            await OTHER_THREAD(Mutex).__aexit__(None, None, None)
        except RuntimeError:
            pass
    # Weighted requests, at once and queued, cancelled and granted.
    for mode in (Semaphore(3), UserMode, PlainMode):
        async with lock(mode, n=1):
            pass
        gate = asyncio.Event()
        holder = asyncio.create_task(hold(lock, X, gate))
        await settle()
        big = [asyncio.create_task(take(lock, Semaphore(3))) for _ in range(3)]
        waiters = [asyncio.create_task(take_n(lock, Semaphore(3), 2)) for _ in range(4)]
        await settle()
        waiters[0].cancel()
        gate.set()
        await holder
        await asyncio.gather(*big, *waiters, return_exceptions=True)
    # Conversions: at once, waiting, cancelled, a second one, raising.
    for i in range(6):
        async with lock(Upgradable) as held:
            await held.convert(Write)
            await held.convert(Read)
        reader = lock(Read)
        await reader.__aenter__()
        async with lock(Upgradable) as held:
            try:
                await asyncio.wait_for(held.convert(Write), 0.001)
            except asyncio.TimeoutError:
                pass
            conv = asyncio.create_task(held.convert(Write))
            await settle()
            try:
                await reader.convert(Write)
            except DeadlockError:
                pass
            await reader.__aexit__(None, None, None)  # switches it
            if i % 2:
                conv.cancel()  # before it resumed: switched back
            await asyncio.gather(conv, return_exceptions=True)
        async with lock(Read) as held:
            try:
                await held.convert(ConvertRaising)
            except ValueError:
                pass
            for bad in (None, 3):
                try:
                    held.convert(bad)
                except TypeError:
                    pass
    # Errors in the body, wrong releases, introspection.
    for mode in (Mutex, UserMode):
        try:
            await body_raises(lock, mode)
        except KeyError:
            pass
        try:
            await lock(mode).__aexit__(None, None, None)
        except RuntimeError:
            pass
    repr(lock)
    lock.holds[Mutex]
    assert lock.waiting == 0 and lock.holds == {}, lock
    for other in (OTHER_THREAD, OTHER_LOOP):
        assert other.holds == {Mutex: 1} and other.waiting == 0, other


def setUpModule():
    global LOOP
    LOOP = asyncio.new_event_loop()
    thread = threading.Thread(target=asyncio.run, args=(OTHER_THREAD(Mutex).__aenter__(),))
    thread.start()
    thread.join()

    async def hold_and_wait():
        await OTHER_LOOP(Mutex).__aenter__()
        try:
            await asyncio.wait_for(OTHER_LOOP(Mutex).__aenter__(), 0.001)  # binds the loop
        except asyncio.TimeoutError:
            pass

    asyncio.run(hold_and_wait())


def tearDownModule():
    LOOP.close()


def run_once():
    # A deadlock fails the test (TimeoutError) instead of hanging it.
    LOOP.run_until_complete(asyncio.wait_for(workload(FifoLock()), 30))
    LOOP.run_until_complete(asyncio.wait_for(workload(LONG_LIVED), 30))
    gc.collect()


def fifolock_objects():
    """The module's internal objects alive now, with their reference counts."""
    return sorted((type(o).__name__, repr(o), sys.getrefcount(o)) for o in gc.get_objects()
                  if type(o).__module__.startswith("fifolock._fifolock")
                  and type(o).__name__ in ("Acquire", "LockContext", "ModeEntry"))


class LeakTest(unittest.TestCase):
    def setUp(self):
        self.unraisable = []
        self.old_hook = sys.unraisablehook
        sys.unraisablehook = self.unraisable.append
        for _ in range(3):
            run_once()  # warm up caches (semaphore classes, entries, loops)

    def tearDown(self):
        sys.unraisablehook = self.old_hook
        self.assertEqual([], [repr(u.exc_value) for u in self.unraisable])

    def test_reference_counts_of_modes_and_locks_do_not_grow(self):
        before = [sys.getrefcount(c)
                  for c in CLASSES + (LONG_LIVED, OTHER_THREAD, OTHER_LOOP, LOOP)]
        objects = fifolock_objects()
        for _ in range(RUNS):
            run_once()
        after = [sys.getrefcount(c)
                 for c in CLASSES + (LONG_LIVED, OTHER_THREAD, OTHER_LOOP, LOOP)]
        self.assertEqual(before, after)
        self.assertEqual(objects, fifolock_objects())

    def test_live_objects_and_traced_memory_do_not_grow(self):
        gc.collect()
        count = len(gc.get_objects())
        tracemalloc.start()
        try:
            run_once()
            start, _ = tracemalloc.get_traced_memory()
            for _ in range(RUNS):
                run_once()
            end, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        gc.collect()
        # A leak of one small object per acquisition (about 1500 per run)
        # would be far above these bounds.
        self.assertLess(len(gc.get_objects()) - count, 50)
        self.assertLess(end - start, 64 * 1024)

    @unittest.skipUnless(hasattr(sys, "gettotalrefcount"), "needs a debug build of Python")
    def test_total_reference_count_does_not_grow(self):
        deltas = []
        for _ in range(RUNS):
            before = sys.gettotalrefcount()
            run_once()
            deltas.append(sys.gettotalrefcount() - before)
        # As regrtest -R does: a leak shows in every run, noise does not.
        self.assertFalse(all(d > 0 for d in deltas[-3:]), deltas)


if __name__ == "__main__":
    unittest.main()
