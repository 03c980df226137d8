"""ProcessFifoLock: the shared-memory lock across real processes (spawned),
with `with` and `async with`: FIFO and sharing, a SIGKILLed holder
(owner_dead), timeouts, cancellation before and racing the grant, the event
loop kept responsive, Ctrl-C, weighted requests, and modes of one's own
crossing by name.

A hang fails the test: faulthandler ends the process with every thread's
traceback after WATCHDOG seconds.
"""
import asyncio
import faulthandler
import multiprocessing
import os
import signal
import tempfile
import threading
import time
import unittest

import fifolock
from fifolock import DeadlockError, Mutex, Read, Semaphore, Upgradable, Write

from support import Test, run

ProcessFifoLock = getattr(fifolock, "ProcessFifoLock", None)
WATCHDOG = float(os.environ.get("FIFOLOCK_WATCHDOG", "180"))
ctx = multiprocessing.get_context("spawn")


def setUpModule():
    if ProcessFifoLock is None:
        raise unittest.SkipTest("ProcessFifoLock is built on Linux only")
    faulthandler.dump_traceback_later(WATCHDOG, exit=True)


def tearDownModule():
    faulthandler.cancel_dump_traceback_later()


def wait_until(cond, timeout=20):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


class Pair:
    """Two of a user's own modes, crossing by name: at most two holders."""
    name = "pair"

    @staticmethod
    def is_compatible(holds):
        return holds[Pair] < 2


class Raising:
    """A mode of one's own whose predicate raises beside a Mutex holder."""
    name = "raising"

    @staticmethod
    def is_compatible(holds):
        if holds[Mutex]:
            raise ValueError("raising beside a Mutex")
        return True


class Nameless:
    @staticmethod
    def is_compatible(holds):
        return True


MODES = {"Mutex": Mutex, "Read": Read, "Write": Write, "Pair": Pair,
         "Sem3": Semaphore(3)}


# ---- what the spawned processes run (top level: spawn imports them) ------

def hold(path, mode, n, ready, release, use_async=False):
    """Holds `mode` (n) until `release` is set; `ready` once it holds."""
    lock = ProcessFifoLock(path, [MODES[mode]])
    if use_async:
        async def main():
            async with lock(MODES[mode], n):
                ready.set()
                while not release.is_set():
                    await asyncio.sleep(0.01)
        asyncio.run(main())
    else:
        with lock(MODES[mode], n):
            ready.set()
            release.wait()
    lock.close()


def hold_forever(path, mode, ready):
    lock = ProcessFifoLock(path, [MODES[mode]])
    lock(MODES[mode]).__enter__()
    ready.set()
    time.sleep(600)


def take_in_turn(path, mode, me, log, use_async):
    """Waits for `mode`, then appends `me` to the log file while holding it."""
    lock = ProcessFifoLock(path, [MODES[mode]])

    def note():
        with open(log, "a") as f:
            f.write(f"{me}\n")
    if use_async:
        async def main():
            async with lock(MODES[mode]):
                note()
        asyncio.run(main())
    else:
        with lock(MODES[mode]):
            note()
    lock.close()


def try_take(path, mode, timeout, result):
    lock = ProcessFifoLock(path, [MODES[mode]])
    try:
        with lock(MODES[mode], timeout=timeout):
            result.put("held")
    except TimeoutError:
        result.put("timeout")
    lock.close()


class Base(Test):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "test.lock")
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.is_alive():
                p.kill()
            p.join(10)
        self.dir.cleanup()
        super().tearDown()

    def start(self, target, *args):
        p = ctx.Process(target=target, args=(self.path,) + args, daemon=True)
        p.start()
        self.procs.append(p)
        return p

    def holder(self, mode, n=1, use_async=False):
        ready, release = ctx.Event(), ctx.Event()
        p = self.start(hold, mode, n, ready, release, use_async)
        self.assertTrue(ready.wait(30), "the holder process never held")
        return p, release

    def assert_no_trace(self, lock, *modes):
        self.assertEqual(0, lock.waiting(), "a request was left queued")
        for m in modes:
            self.assertEqual(0, lock.held(m), f"a hold of {m.__name__} was left")


class ProcessLockSync(Base):
    def test_exclusive_across_processes_and_timeout_leaves_no_trace(self):
        lock = ProcessFifoLock(self.path)
        p, release = self.holder("Write")
        t0 = time.monotonic()
        with self.assertRaises(TimeoutError):
            with lock(Write, timeout=0.2):
                self.fail("granted beside a writer of another process")
        self.assertGreaterEqual(time.monotonic() - t0, 0.19)
        self.assertEqual(1, lock.held(Write))
        self.assertEqual(0, lock.waiting(), "the timed-out request stayed queued")
        release.set()
        p.join(30)
        with lock(Write, timeout=5) as held:
            self.assertFalse(held.owner_dead)
        self.assert_no_trace(lock, Write)
        lock.close()

    def test_readers_of_two_processes_share(self):
        lock = ProcessFifoLock(self.path)
        p, release = self.holder("Read")
        with lock(Read, timeout=5):
            self.assertEqual(2, lock.held(Read))
        release.set()
        p.join(30)
        lock.close()

    def grants_in_queue_order(self, use_async):
        lock = ProcessFifoLock(self.path)
        log = os.path.join(self.dir.name, "log")
        p, release = self.holder("Mutex")
        for i in range(4):
            self.start(take_in_turn, "Mutex", i, log, use_async)
            # the next one starts only once this one waits
            wait_until(lambda: lock.waiting() == i + 1)
        release.set()
        for q in self.procs:
            q.join(60)
            self.assertEqual(0, q.exitcode)
        with open(log) as f:
            self.assertEqual(["0", "1", "2", "3"], f.read().split())
        self.assert_no_trace(lock, Mutex)
        lock.close()

    def test_grants_in_queue_order_across_processes(self):
        self.grants_in_queue_order(use_async=False)

    def test_grants_in_queue_order_across_processes_async(self):
        self.grants_in_queue_order(use_async=True)

    def test_sigkilled_holder_is_reported_to_the_next_grant(self):
        lock = ProcessFifoLock(self.path)
        ready = ctx.Event()
        p = self.start(hold_forever, "Write", ready)
        self.assertTrue(ready.wait(30))
        os.kill(p.pid, signal.SIGKILL)
        p.join(30)
        with lock(Write, timeout=10) as held:
            self.assertTrue(held.owner_dead)
            self.assertEqual(1, held.dead_count)
            self.assertEqual([(p.pid, Write, "write", 0, 1)],
                             [tuple(d) for d in held.dead_holders])
            lock.consistent()
        with lock(Write, timeout=5) as held:
            self.assertFalse(held.owner_dead, "consistent() did not repair")
            self.assertEqual([], held.dead_holders)
        lock.close()

    def test_consistent_needs_a_writing_hold(self):
        lock = ProcessFifoLock(self.path)
        with lock(Read):
            with self.assertRaises(RuntimeError):
                lock.consistent()
        lock.close()

    def test_weighted_requests_across_processes(self):
        sem = Semaphore(3)
        lock = ProcessFifoLock(self.path, [sem])
        p, release = self.holder("Sem3", 2)
        with self.assertRaises(TimeoutError):
            with lock(sem, 2, timeout=0.1):
                pass
        with lock(sem, 1, timeout=5):
            self.assertEqual(3, lock.held(sem))
        with self.assertRaises(DeadlockError):
            with lock(sem, 4):
                pass
        with self.assertRaises(DeadlockError):
            with lock(Write, 2):
                pass
        release.set()
        p.join(30)
        self.assert_no_trace(lock, sem, Write)
        lock.close()

    def test_own_mode_crosses_by_name(self):
        lock = ProcessFifoLock(self.path, [Pair])
        p1, r1 = self.holder("Pair")
        with lock(Pair, timeout=5):
            self.assertEqual(2, lock.held(Pair))
            result = ctx.Queue()
            q = self.start(try_take, "Pair", 0.2, result)
            self.assertEqual("timeout", result.get(timeout=30),
                             "a third holder of a mode that admits two")
            q.join(30)
        r1.set()
        p1.join(30)
        self.assert_no_trace(lock, Pair)
        lock.close()

    def test_mode_without_name_is_a_type_error(self):
        with self.assertRaisesRegex(TypeError, "has no name"):
            ProcessFifoLock(self.path, [Nameless])
        lock = ProcessFifoLock(self.path)
        with self.assertRaisesRegex(TypeError, "has no name"):
            with lock(Nameless):
                pass
        self.assert_no_trace(lock)
        lock.close()

    def test_a_raising_predicate_is_reported_and_answers_no(self):
        other = ProcessFifoLock(self.path)
        lock = ProcessFifoLock(self.path, [Raising])
        self.unraisable.clear()  # asked at open beside every mode
        with other(Mutex):
            with self.assertRaises(TimeoutError):
                with lock(Raising, timeout=0.2):
                    self.fail("granted beside a Mutex: a raise must answer no")
        self.assertTrue(self.unraisable, "the raise was not reported")
        self.assertIsInstance(self.unraisable[0].exc_value, ValueError)
        self.unraisable.clear()
        with lock(Raising, timeout=5):
            pass
        self.assert_no_trace(lock, Raising, Mutex)
        lock.close()
        other.close()

    def test_new_mode_while_holding_is_a_value_error(self):
        lock = ProcessFifoLock(self.path)
        with lock(Mutex):
            with self.assertRaisesRegex(ValueError, "up front"):
                with lock(Pair):
                    pass
        with lock(Pair, timeout=5):  # learnt once idle
            self.assertEqual(1, lock.held(Pair))
        self.assert_no_trace(lock, Mutex, Pair)
        lock.close()

    def test_upgrade_waits_for_a_reader_of_another_process(self):
        lock = ProcessFifoLock(self.path)
        p, release = self.holder("Read")
        context = lock(Upgradable)
        with context as held:
            with self.assertRaises(TimeoutError):
                held.convert(Write, timeout=0.2)
            self.assertIs(Upgradable, held.mode, "a failed conversion keeps the old mode")
            self.assertEqual(1, lock.held(Upgradable))
            self.assertEqual(0, lock.waiting())
            threading.Timer(0.3, release.set).start()
            t0 = time.monotonic()
            held.convert(Write, timeout=20)
            self.assertGreater(time.monotonic() - t0, 0.2, "switched beside a reader")
            self.assertIs(Write, held.mode)
            self.assertEqual((1, 0), (lock.held(Write), lock.held(Upgradable)))
            held.convert(Read)  # a downgrade: at once
            self.assertEqual((1, 0), (lock.held(Read), lock.held(Write)))
        p.join(30)
        self.assert_no_trace(lock, Read, Write, Upgradable)
        with context as held:  # exit gave the context its mode back
            self.assertIs(Upgradable, held.mode)
            self.assertEqual(1, lock.held(Upgradable))
        lock.close()

    def test_a_second_waiting_conversion_is_a_deadlock_error(self):
        a = ProcessFifoLock(self.path)
        b = ProcessFifoLock(self.path)
        ha, hb = a(Read).__enter__(), b(Read).__enter__()
        t = threading.Thread(target=ha.convert, args=(Write, 20))
        t.start()
        wait_until(lambda: a.waiting() == 1)
        with self.assertRaises(DeadlockError):
            hb.convert(Write)
        self.assertIs(Read, hb.mode)
        hb.__exit__(None, None, None)  # makes room: the first one switches
        t.join(30)
        self.assertIs(Write, ha.mode)
        ha.__exit__(None, None, None)
        self.assert_no_trace(a, Read, Write)
        a.close()
        b.close()

    def test_convert_needs_one_hold(self):
        with ProcessFifoLock(self.path) as lock:
            with lock(Read, 2) as held:
                with self.assertRaises(ValueError):
                    held.convert(Write)
        self.assertTrue(lock.closed)

    def test_close_while_holding_is_refused(self):
        lock = ProcessFifoLock(self.path)
        with lock(Mutex):
            with self.assertRaises(RuntimeError):
                lock.close()
            self.assertFalse(lock.closed)
        lock.close()
        with self.assertRaises(ValueError):
            with lock(Mutex):
                pass

    def test_keyboard_interrupt_in_with_leaves_no_trace(self):
        lock = ProcessFifoLock(self.path)
        other = ProcessFifoLock(self.path)
        other(Write).__enter__()
        old = signal.signal(signal.SIGALRM, signal.default_int_handler)
        # the holder lets go late: the interrupt must end the wait first
        timer = threading.Timer(3, lambda: other._shm.release(Write))
        try:
            timer.start()
            signal.setitimer(signal.ITIMER_REAL, 0.2)
            t0 = time.monotonic()
            with self.assertRaises(KeyboardInterrupt):
                with lock(Write):
                    self.fail("granted beside a writer")
            elapsed = time.monotonic() - t0
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
            timer.join()
        self.assertLess(elapsed, 1.5, "Ctrl-C did not end the wait")
        wait_until(lambda: lock.held(Write) == 0)
        self.assert_no_trace(lock, Write)
        with lock(Write, timeout=5):
            pass
        lock.close()
        other.close()


class ProcessLockAsync(Base):
    def test_wait_keeps_the_loop_responsive(self):
        lock = ProcessFifoLock(self.path)
        p, release = self.holder("Write")
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        async def main():
            t = asyncio.ensure_future(ticker())
            threading.Timer(0.5, release.set).start()
            async with lock(Write) as held:
                self.assertFalse(held.owner_dead)
                self.assertEqual(1, lock.held(Write))
            t.cancel()
        run(main())
        self.assertGreater(ticks, 20, "the event loop stalled while the task waited")
        p.join(30)
        self.assert_no_trace(lock, Write)
        lock.close()

    def test_cancel_before_the_grant_leaves_no_trace(self):
        lock = ProcessFifoLock(self.path)
        p, release = self.holder("Write")

        async def main():
            task = asyncio.ensure_future(lock(Write).__aenter__())
            await asyncio.sleep(0.3)
            self.assertEqual(1, lock.waiting())
            task.cancel()
            t0 = time.monotonic()
            with self.assertRaises(asyncio.CancelledError):
                await task
            # gone once the cancellation went on: within a sleep of the wait
            self.assertEqual(0, lock.waiting(), "the cancelled request stayed queued")
            self.assertLess(time.monotonic() - t0, 1)
        run(main())
        release.set()
        p.join(30)
        wait_until(lambda: lock.held(Write) == 0)
        self.assert_no_trace(lock, Write)
        with lock(Write, timeout=5):
            pass
        lock.close()

    def test_cancel_racing_the_grant_gives_it_back(self):
        holder = ProcessFifoLock(self.path)
        lock = ProcessFifoLock(self.path)

        async def once(delay):
            holder(Mutex).__enter__()
            task = asyncio.ensure_future(lock(Mutex).__aenter__())
            await asyncio.sleep(0.06)  # queued, its thread asleep in the wait
            holder._shm.release(Mutex)
            time.sleep(delay)  # the grant lands while the loop is busy
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                return "cancelled"
            lock._shm.release(Mutex)  # the grant won before the cancel
            return "granted"

        async def main():
            outcomes = []
            for i in range(30):
                outcomes.append(await once(0.0005 * (i % 6)))
                # nothing of this lock is left: the holder takes it at once
                with holder(Mutex, timeout=0):
                    pass
            return outcomes
        outcomes = run(main(), timeout=120)
        self.assertIn("cancelled", outcomes)
        self.assert_no_trace(lock, Mutex)
        lock.close()
        holder.close()

    def test_timeout_async_leaves_no_trace(self):
        lock = ProcessFifoLock(self.path)
        p, release = self.holder("Write", use_async=True)

        async def main():
            with self.assertRaises(TimeoutError):
                async with lock(Write, timeout=0.2):
                    self.fail("granted beside a writer")
            with self.assertRaises(TimeoutError):
                async with lock(Write, timeout=0):
                    self.fail("granted beside a writer")
        run(main())
        self.assertEqual(0, lock.waiting())
        release.set()
        p.join(30)
        self.assert_no_trace(lock, Write)
        lock.close()

    def test_async_upgrade_waits_and_a_cancel_keeps_the_old_mode(self):
        lock = ProcessFifoLock(self.path)
        p, release = self.holder("Read")
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        async def main():
            t = asyncio.ensure_future(ticker())
            async with lock(Upgradable) as held:
                conv = asyncio.ensure_future(held.convert(Write))
                await asyncio.sleep(0.3)
                self.assertFalse(conv.done(), "switched beside a reader")
                conv.cancel()
                with self.assertRaises(asyncio.CancelledError):
                    await conv
                self.assertIs(Upgradable, held.mode)
                self.assertEqual((1, 0), (lock.held(Upgradable), lock.waiting()))
                threading.Timer(0.3, release.set).start()
                await held.convert(Write, timeout=20)
                self.assertIs(Write, held.mode)
                self.assertEqual(1, lock.held(Write))
            t.cancel()
        run(main())
        self.assertGreater(ticks, 20, "the event loop stalled while the conversion waited")
        p.join(30)
        self.assert_no_trace(lock, Upgradable, Write)
        lock.close()

    def test_sigkilled_holder_is_reported_async(self):
        lock = ProcessFifoLock(self.path)
        ready = ctx.Event()
        p = self.start(hold_forever, "Mutex", ready)
        self.assertTrue(ready.wait(30))

        async def main():
            threading.Timer(0.3, os.kill, (p.pid, signal.SIGKILL)).start()
            async with lock(Mutex, timeout=10) as held:
                self.assertTrue(held.owner_dead)
                self.assertEqual(p.pid, held.dead_holders[0].pid)
                self.assertIs(Mutex, held.dead_holders[0].mode)
                lock.consistent()
        run(main())
        p.join(30)
        lock.close()


if __name__ == "__main__":
    unittest.main()
