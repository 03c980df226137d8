"""ThreadFifoLock: FIFO across threads, timeouts, Python and ready-made modes,
the GIL released while waiting, no deadlock between a Python predicate
(which needs the GIL under the lock's internal lock) and threads that hold
the GIL, interrupts, and fork().

A hang fails the test: faulthandler ends the process with every thread's
traceback after WATCHDOG seconds.
"""
import _thread
import faulthandler
import os
import random
import signal
import sys
import threading
import time
import unittest
import warnings

import fifolock
from fifolock import (IS, IX, DeadlockError, Mutex, Read, Semaphore, SemaphoreBase,
                      Upgradable, Write, X)

ThreadFifoLock = getattr(fifolock, "ThreadFifoLock", None)
WATCHDOG = float(os.environ.get("FIFOLOCK_WATCHDOG", "120"))


def setUpModule():
    if ThreadFifoLock is None:
        raise unittest.SkipTest("ThreadFifoLock is built on Linux only")
    faulthandler.dump_traceback_later(WATCHDOG, exit=True)


def tearDownModule():
    faulthandler.cancel_dump_traceback_later()


def wait_until(cond, timeout=10):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.001)


class Boom(Exception):
    pass


class PyMutex:
    """A user's mode, not a Future: any class with is_compatible."""

    @staticmethod
    def is_compatible(holds):
        return not holds[PyMutex]


class PyRead:
    @staticmethod
    def is_compatible(holds):
        return not holds[PyWrite]


class PyWrite:
    @staticmethod
    def is_compatible(holds):
        return not holds[PyRead] and not holds[PyWrite]


class PySem2(SemaphoreBase):
    size = 2


class Counting:
    seen = []

    @classmethod
    def is_compatible(cls, holds):
        cls.seen.append(holds[cls])
        return holds[cls] < 3


class Raising:
    """Raises while `armed`; otherwise exclusive with Mutex."""
    armed = False

    @staticmethod
    def is_compatible(holds):
        if Raising.armed:
            raise Boom("raised by is_compatible")
        return not holds[Mutex]


class Holder:
    """A thread that enters lock(mode, ...) and stays until released."""

    def __init__(self, lock, mode, log=None, name=None, **kw):
        self.lock, self.mode, self.kw = lock, mode, kw
        self.log, self.name = log, name
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            with self.lock(self.mode, **self.kw):
                if self.log is not None:
                    self.log.append(self.name)
                self.entered.set()
                self.gate.wait()
        except BaseException as e:  # noqa: B902 - reported to the test
            self.error = e

    def release(self):
        self.gate.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def queue(lock, holders_made, count):
    """Waits until `count` requests are queued."""
    wait_until(lambda: lock.waiting == count)


class Basics(unittest.TestCase):
    def test_with_holds_the_lock_and_gives_the_context(self):
        lock = ThreadFifoLock()
        ctx = lock(Mutex)
        with ctx as held:
            self.assertIs(ctx, held)
            self.assertEqual({Mutex: 1}, lock.holds)
            self.assertEqual(0, lock.waiting)
        self.assertEqual({}, lock.holds)
        self.assertEqual((Mutex, 1, None), (ctx.mode, ctx.n, ctx.timeout))
        self.assertIs(lock, ctx.lock)

    def test_threads_are_granted_in_the_order_they_queued(self):
        # No two neighbours may share: each is granted alone, so the log is
        # the grant order (modes granted together append in any order).
        for first, modes in ((Mutex, [Mutex] * 6), (Write, [Read, Write, Read, Write]),
                             (PyMutex, [PyMutex] * 5), (X, [IS, X, IX, X, IS])):
            lock = ThreadFifoLock()
            log = []
            h0 = Holder(lock, first, log, "h0")
            h0.entered.wait(10)
            holders = []
            for i, mode in enumerate(modes):
                holders.append(Holder(lock, mode, log, i))
                wait_until(lambda: lock.waiting == i + 1)
            h0.release()
            for h in holders:
                h.entered.wait(10)
                h.release()
            self.assertEqual(["h0"] + list(range(len(modes))), log, modes)
            self.assertEqual({}, lock.holds)

    def test_a_compatible_request_queues_behind_a_waiting_one(self):
        lock = ThreadFifoLock()
        r = Holder(lock, Read)
        r.entered.wait(10)
        w = Holder(lock, Write)
        wait_until(lambda: lock.waiting == 1)
        r2 = Holder(lock, Read)
        wait_until(lambda: lock.waiting == 2)
        self.assertFalse(r2.entered.is_set())
        r.release()
        w.entered.wait(10)
        self.assertFalse(r2.entered.is_set())
        w.release()
        r2.entered.wait(10)
        r2.release()
        self.assertEqual({}, lock.holds)

    def test_any_thread_may_exit_a_context_another_entered(self):
        lock = ThreadFifoLock()
        ctx = lock(PyMutex)
        t = threading.Thread(target=ctx.__enter__)
        t.start()
        t.join()
        self.assertEqual({PyMutex: 1}, lock.holds)
        ctx.__exit__(None, None, None)
        self.assertEqual({}, lock.holds)
        with self.assertRaises(RuntimeError):
            ctx.__exit__(None, None, None)  # holds nothing now


class Timeouts(unittest.TestCase):
    def test_a_timeout_raises_timeout_error_and_leaves_no_trace(self):
        for mode in (Mutex, PyMutex):
            lock = ThreadFifoLock()
            h = Holder(lock, mode)
            h.entered.wait(10)
            start = time.monotonic()
            with self.assertRaises(TimeoutError):
                with lock(mode, timeout=0.1):
                    self.fail("entered")
            self.assertGreaterEqual(time.monotonic() - start, 0.09)
            self.assertEqual(0, lock.waiting)
            self.assertEqual({mode: 1}, lock.holds)
            h.release()
            with lock(mode, timeout=0.1):
                pass
            self.assertEqual({}, lock.holds)

    def test_a_zero_timeout_tries_once(self):
        lock = ThreadFifoLock()
        with lock(Read, timeout=0):
            with lock(Read, timeout=0):
                self.assertEqual({Read: 2}, lock.holds)
            with self.assertRaises(TimeoutError):
                with lock(Write, timeout=0):
                    pass
        self.assertEqual(0, lock.waiting)

    def test_a_timed_out_head_lets_the_waiters_behind_it_in(self):
        lock = ThreadFifoLock()
        r = Holder(lock, Read)
        r.entered.wait(10)
        w = Holder(lock, Write, timeout=0.2)
        wait_until(lambda: lock.waiting == 1)
        r2 = Holder(lock, PyRead)
        wait_until(lambda: lock.waiting == 2)
        self.assertTrue(r2.entered.wait(10))  # let in by the timeout, not a release
        w.thread.join(10)
        self.assertIsInstance(w.error, TimeoutError)
        self.assertEqual({Read: 1, PyRead: 1}, lock.holds)
        r.release()
        r2.release()
        self.assertEqual({}, lock.holds)


class Arguments(unittest.TestCase):
    def test_bad_arguments_are_refused_and_change_nothing(self):
        lock = ThreadFifoLock()
        for kw, exc in (({"n": 0}, ValueError), ({"n": -2}, ValueError),
                        ({"n": True}, TypeError), ({"n": 1.0}, TypeError),
                        ({"n": 2**40}, OverflowError), ({"timeout": -1}, ValueError),
                        ({"timeout": float("nan")}, ValueError),
                        ({"timeout": "1"}, TypeError), ({"timeout": True}, TypeError),
                        ({"size": 1}, TypeError)):
            with self.assertRaises(exc, msg=kw):
                lock(Mutex, **kw)
        for bad in (42, object, "Mutex"):
            with self.assertRaises(TypeError, msg=bad):
                lock(bad)
        with self.assertRaises(TypeError):
            lock()
        with self.assertRaises(TypeError):
            lock(Mutex, 1, None, 3)
        with self.assertRaises(TypeError):
            lock(Mutex, 2, n=2)
        with self.assertRaises(TypeError):
            ThreadFifoLock(1)
        self.assertEqual({}, lock.holds)
        self.assertEqual(0, lock.waiting)
        with lock(Mutex, 1, 5.0):
            pass


class Weighted(unittest.TestCase):
    def test_n_holds_at_once_and_a_waiting_big_request_holds_back_small_ones(self):
        for sem in (Semaphore(3), PySem2):
            size = 3 if sem is not PySem2 else 2
            lock = ThreadFifoLock()
            log = []
            a = Holder(lock, sem, log, "a", n=size - 1)
            a.entered.wait(10)
            self.assertEqual({sem: size - 1}, lock.holds)
            b = Holder(lock, sem, log, "b", n=size)
            wait_until(lambda: lock.waiting == 1)
            c = Holder(lock, sem, log, "c", n=1)  # fits now, but b is first
            wait_until(lambda: lock.waiting == 2)
            a.release()
            b.entered.wait(10)
            self.assertEqual({sem: size}, lock.holds)
            b.release()
            c.entered.wait(10)
            c.release()
            self.assertEqual(["a", "b", "c"], log)
            self.assertEqual({}, lock.holds)

    def test_a_python_predicate_is_asked_once_per_hold_with_those_before_counted(self):
        lock = ThreadFifoLock()
        Counting.seen.clear()
        with lock(Counting, n=3):
            self.assertEqual([0, 1, 2], Counting.seen)
            self.assertEqual({Counting: 3}, lock.holds)
        with lock(Counting, n=2):
            Counting.seen.clear()
            with self.assertRaises(TimeoutError):
                with lock(Counting, n=2, timeout=0):
                    pass
            # refused at its 2nd, then asked as on an empty lock: could it ever fit?
            self.assertEqual([2, 3, 0, 1], Counting.seen)
            with lock(Counting):  # a second ticket of the same class
                self.assertEqual({Counting: 3}, lock.holds)
        self.assertEqual({}, lock.holds)


class Nobody:
    """Refuses even a lock nobody holds: never fits."""

    @staticmethod
    def is_compatible(holds):
        return False


def enter_in_a_thread(lock, mode, **kw):
    """What `with lock(mode, **kw)` raised in another thread (None: entered),
    or "still waiting" after 5 seconds: never hangs the test."""
    out = []

    def run():
        try:
            with lock(mode, **kw):
                out.append(None)
        except BaseException as e:  # noqa: B902 - reported to the test
            out.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(5)
    return out[0] if out else "still waiting"


class NeverFits(unittest.TestCase):
    """A request no lock could grant is refused at once with DeadlockError."""

    def test_it_is_refused_at_once_on_an_idle_a_held_and_a_queued_lock(self):
        lock = ThreadFifoLock()
        never = [(Semaphore(2), 3), (Write, 2), (Mutex, 2), (PySem2, 3), (Nobody, 1)]
        holders = []
        for step in range(3):
            if step == 1:
                holders.append(Holder(lock, Read))
                holders[-1].entered.wait(10)
            if step == 2:
                holders.append(Holder(lock, Write))
                wait_until(lambda: lock.waiting == 1)
            holds, waiting = dict(lock.holds), lock.waiting
            for mode, n in never:
                t0 = time.monotonic()
                with self.assertRaises(DeadlockError) as cm:
                    with lock(mode, n=n, timeout=5):  # a wait would time out instead
                        self.fail("entered")
                self.assertIn("never", str(cm.exception))
                self.assertLess(time.monotonic() - t0, 2)
                e = enter_in_a_thread(lock, mode, n=n)  # no timeout: blocks if queued
                self.assertIsInstance(e, DeadlockError)
                self.assertEqual(holds, dict(lock.holds))
                self.assertEqual(waiting, lock.waiting)
        holders[0].release()
        holders[1].entered.wait(10)
        self.assertTrue(holders[1].entered.is_set())
        holders[1].release()
        self.assertEqual({}, dict(lock.holds))
        with lock(Semaphore(2), n=2):  # what fits an empty lock still waits its turn
            self.assertEqual({Semaphore(2): 2}, dict(lock.holds))

    def test_a_conversion_to_a_mode_that_never_fits_keeps_the_old_mode(self):
        lock = ThreadFifoLock()
        other = Holder(lock, Read)
        other.entered.wait(10)
        with lock(Read, timeout=5) as held:
            with self.assertRaises(DeadlockError) as cm:
                held.convert(Nobody, timeout=5)
            self.assertIn("never", str(cm.exception))
            self.assertIs(Read, held.mode)
            self.assertEqual({Read: 2}, dict(lock.holds))
            self.assertEqual(0, lock.waiting)
            other.release()
            with self.assertRaises(DeadlockError):  # alone, too, and without a timeout
                held.convert(Nobody)
            self.assertEqual({Read: 1}, dict(lock.holds))
            held.convert(Write)
            self.assertEqual({Write: 1}, dict(lock.holds))
        self.assertEqual({}, dict(lock.holds))

    def test_a_raise_of_the_could_it_ever_fit_question_reaches_its_own_thread(self):
        class Odd:
            @staticmethod
            def is_compatible(holds):
                if not holds:
                    raise Boom("asked on an empty lock")
                return False

        lock = ThreadFifoLock()
        m = Holder(lock, Mutex)
        m.entered.wait(10)
        e = enter_in_a_thread(lock, Odd)
        self.assertIsInstance(e, Boom)
        self.assertEqual({Mutex: 1}, dict(lock.holds))
        self.assertEqual(0, lock.waiting)
        with lock(Read) as held:
            with self.assertRaisesRegex(Boom, "empty lock"):
                held.convert(Odd)
            self.assertIs(Read, held.mode)
        m.release()
        self.assertEqual({}, dict(lock.holds))


class PythonPredicates(unittest.TestCase):
    def test_holds_maps_classes_to_counts_in_the_predicate(self):
        seen = []

        class Looks:
            @staticmethod
            def is_compatible(holds):
                seen.append((dict(holds), holds[Read], holds[PyRead], Read in holds,
                             len(holds), holds.get(Write, "none")))
                return True

        lock = ThreadFifoLock()
        with lock(Read, n=2), lock(PyRead), lock(PyRead), lock(Looks):
            self.assertEqual({Read: 2, PyRead: 2, Looks: 1}, lock.holds)
        self.assertEqual([({Read: 2, PyRead: 2}, 2, 2, True, 2, "none")], seen)

    def test_plain_method_and_classmethod_predicates_work(self):
        class Plain:
            made = 0

            def __init__(self):
                Plain.made += 1

            def is_compatible(self, holds):
                return not holds[Plain]

        lock = ThreadFifoLock()
        with lock(Plain):
            with self.assertRaises(TimeoutError):
                with lock(Plain, timeout=0.01):
                    pass
        with lock(PySem2), lock(PySem2):
            with self.assertRaises(TimeoutError):
                with lock(PySem2, timeout=0.01):
                    pass
        self.assertEqual(1, Plain.made)

    def test_a_raise_reaches_the_thread_whose_request_was_asked_about(self):
        lock = ThreadFifoLock()
        with self.assertRaises(Boom):
            Raising.armed = True
            try:
                with lock(Raising):
                    self.fail("entered")
            finally:
                Raising.armed = False
        self.assertEqual({}, lock.holds)
        # Queued: raised at the grant, in the waiting thread; the releasing
        # thread sees nothing and those behind go on.
        holder = lock(Mutex)
        holder.__enter__()
        r = Holder(lock, Raising, n=2)
        wait_until(lambda: lock.waiting == 1)
        after = Holder(lock, PyRead)
        wait_until(lambda: lock.waiting == 2)
        Raising.armed = True
        try:
            holder.__exit__(None, None, None)
            r.thread.join(10)
        finally:
            Raising.armed = False
        self.assertIsInstance(r.error, Boom)
        self.assertTrue(after.entered.wait(10))
        after.release()
        self.assertEqual({}, lock.holds)
        self.assertEqual(0, lock.waiting)

    def test_a_predicate_may_read_its_lock_but_not_take_it(self):
        lock = ThreadFifoLock()
        seen = []

        class Reads:
            @staticmethod
            def is_compatible(holds):
                seen.append((lock.waiting, dict(lock.holds), repr(lock)))
                return True

        class Takes:
            @staticmethod
            def is_compatible(holds):
                with lock(Mutex):
                    return True

        with lock(Mutex):
            with lock(Reads):
                pass
        self.assertEqual([(0, {Mutex: 1},
                           "<fifolock.ThreadFifoLock holds={<class 'fifolock.Mutex'>: 1} "
                           "waiting=0>")], seen)
        with self.assertRaises(RuntimeError):
            with lock(Takes):
                pass
        self.assertEqual({}, lock.holds)

    def test_a_holds_view_kept_after_the_predicate_reads_a_snapshot(self):
        kept = []

        class Keeps:
            @staticmethod
            def is_compatible(holds):
                kept.append(holds)
                return True

        lock = ThreadFifoLock()
        with lock(Keeps):
            pass
        with lock(Write):
            self.assertEqual(1, kept[0][Write])
            self.assertEqual({Write: 1}, kept[0].copy())
        self.assertEqual(0, kept[0][Write])

    def test_the_holds_of_both_locks_are_one_mapping_with_the_same_answers(self):
        import asyncio
        import collections

        def observe(holds):
            return (repr(holds).split("(", 1)[1], len(holds), list(holds), holds[Read],
                    holds[PyMutex], holds.get(Read), holds.get(Write, "none"),
                    Read in holds, Write in holds, list(holds.keys()), list(holds.values()),
                    list(holds.items()), holds.copy(), type(holds.copy()),
                    holds == {Read: 2}, holds != {Read: 2}, holds == {Read: 1})

        class Looks:
            seen = []

            @staticmethod
            def is_compatible(holds):
                Looks.seen.append((type(holds).__name__, observe(holds), holds))
                return True

        tlock = ThreadFifoLock()
        with tlock(Read), tlock(Read), tlock(Looks):
            pass

        async def main():
            lock = fifolock.FifoLock()
            async with lock(Read), lock(Read), lock(Looks):
                view = Looks.seen[1][2]
                self.assertEqual(lock.holds, view)  # live: Looks is held now
                self.assertEqual({Read: 2, Looks: 1}, view)
                self.assertNotEqual(Looks.seen[0][2], view)  # the other lock's: empty
                self.assertEqual(view, view)

        asyncio.run(main())
        (tname, tseen, tview), (aname, aseen, aview) = Looks.seen
        self.assertEqual(("ThreadHolds", "Holds"), (tname, aname))
        self.assertEqual(tseen, aseen)
        self.assertEqual(("{<class 'fifolock.Read'>: 2})", 1, [Read], 2, 0, 2, "none", True,
                          False, [Read], [2], [(Read, 2)], {Read: 2},
                          collections.defaultdict, True, False, False), tseen)
        self.assertEqual(tview, aview)  # both empty now
        self.assertEqual(("fifolock.ThreadHolds({})", "fifolock.Holds({})"),
                         (repr(tview), repr(aview)))
        with self.assertRaises(TypeError):
            hash(tview)
        with self.assertRaises(TypeError):
            tview[[]]  # unhashable, as a dict key would be
        with self.assertRaises(TypeError):
            aview[[]]


class TheGil(unittest.TestCase):
    def test_a_waiting_thread_lets_other_threads_run(self):
        lock = ThreadFifoLock()
        for mode in (Mutex, PyMutex):
            with lock(mode):
                w = Holder(lock, mode)
                wait_until(lambda: lock.waiting == 1)
                # Python code runs here and in another thread meanwhile.
                counts = [0]

                def count():
                    end = time.monotonic() + 0.2
                    while time.monotonic() < end:
                        counts[0] += 1

                t = threading.Thread(target=count)
                t.start()
                t.join()
                self.assertGreater(counts[0], 1000)
                self.assertFalse(w.entered.is_set())
            w.entered.wait(10)
            w.release()

    def test_many_threads_mixing_python_and_ready_made_modes_never_deadlock(self):
        lock = ThreadFifoLock()
        guard = threading.Lock()
        active = {}
        errors = []
        rounds = int(os.environ.get("FIFOLOCK_THREAD_ROUNDS", "150"))

        class SlowPyRead:
            """Reads holds of ready-made modes, and lets the GIL go under L."""
            @staticmethod
            def is_compatible(holds):
                time.sleep(0)
                holds[Write], holds[Semaphore(3)], holds[PyRead]  # read, not used
                return not holds[SlowPyWrite]

        class SlowPyWrite:
            @staticmethod
            def is_compatible(holds):
                return not (holds[SlowPyRead] or holds[SlowPyWrite])

        # Two families on one lock: the C modes look only at C modes, so each
        # family's rule is checked among its own members.
        family = {Read: "c", Write: "c", Semaphore(3): "sem",
                  PyRead: "py", PyWrite: "py", SlowPyRead: "slow", SlowPyWrite: "slow",
                  PySem2: "pysem"}
        plan = [(Read, 1), (Write, 1), (Semaphore(3), 2), (Semaphore(3), 1),
                (PyRead, 1), (PyWrite, 1), (SlowPyRead, 1), (SlowPyWrite, 1),
                (PySem2, 1), (PySem2, 2)]

        def check(mode, n):
            fam = {m: c for m, c in active.items() if family[m] == family[mode]}
            if mode in (Write, PyWrite, SlowPyWrite) and sum(fam.values()) != n:
                errors.append(f"{mode.__name__} with {fam}")
            if mode in (Read, PyRead, SlowPyRead) and (fam.get(Write) or fam.get(PyWrite)
                                                       or fam.get(SlowPyWrite)):
                errors.append(f"{mode.__name__} with {fam}")
            limit = {Semaphore(3): 3, PySem2: 2}.get(mode)
            if limit is not None and active.get(mode, 0) > limit:
                errors.append(f"{mode.__name__} over its limit: {fam}")

        def worker(k):
            try:
                for i in range(rounds):
                    mode, n = plan[(k * 7 + i * 3) % len(plan)]
                    timeout = 0.002 if (i + k) % 5 == 0 else None
                    try:
                        with lock(mode, n=n, timeout=timeout):
                            with guard:
                                active[mode] = active.get(mode, 0) + n
                                check(mode, n)
                            if i % 4 == 0:
                                time.sleep(0)
                            lock.holds  # a snapshot, taking L, from a holder
                            with guard:
                                active[mode] -= n
                    except TimeoutError:
                        pass
            except BaseException as e:  # noqa: B902
                errors.append(repr(e))

        threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WATCHDOG / 2)
            self.assertFalse(t.is_alive(), "deadlock: a worker never finished")
        self.assertEqual([], errors)
        self.assertEqual({}, lock.holds)
        self.assertEqual(0, lock.waiting)


class Converter:
    """A thread that runs held.convert(mode, **kw) and keeps the outcome."""

    def __init__(self, held, mode, **kw):
        self.error = None
        self.thread = threading.Thread(target=self._run, args=(held, mode, kw), daemon=True)
        self.thread.start()

    def _run(self, held, mode, kw):
        try:
            held.convert(mode, **kw)
        except BaseException as e:  # noqa: B902 - reported to the test
            self.error = e

    def join(self):
        self.thread.join(30)
        assert not self.thread.is_alive()


class Conversions(unittest.TestCase):
    def test_a_downgrade_is_made_at_once_and_lets_the_waiting_readers_in(self):
        for write, read in ((Write, Read), (PyWrite, PyRead)):
            lock = ThreadFifoLock()
            with lock(write) as held:
                r = Holder(lock, read)
                wait_until(lambda: lock.waiting == 1)
                held.convert(read)
                self.assertEqual(read, held.mode)
                self.assertTrue(r.entered.wait(10))
                self.assertEqual({read: 2}, lock.holds)
            self.assertEqual({read: 1}, lock.holds)
            self.assertEqual(write, held.mode)  # after its exit, the mode it asks for
            r.release()
            self.assertEqual({}, lock.holds)

    def test_an_upgrade_waits_ahead_of_the_queue_for_the_readers_to_leave(self):
        for upgradable, write, read in ((Upgradable, Write, Read), (PyRead, PyWrite, PyRead)):
            lock = ThreadFifoLock()
            log = []
            r = Holder(lock, read)
            r.entered.wait(10)
            held = lock(upgradable)
            held.__enter__()
            w = Holder(lock, write, log, "w")
            wait_until(lambda: lock.waiting == 1)
            r2 = Holder(lock, read, log, "r2")
            wait_until(lambda: lock.waiting == 2)
            c = Converter(held, write)
            wait_until(lambda: lock.waiting == 3)
            time.sleep(0.05)
            self.assertTrue(c.thread.is_alive())  # waits for r, holding upgradable
            with self.assertRaises(RuntimeError):
                held.__exit__(None, None, None)  # while its conversion waits
            with self.assertRaises(RuntimeError):
                held.__enter__()
            self.assertEqual({read: 1, upgradable: 1} if read is not upgradable
                             else {read: 2}, lock.holds)
            r.release()
            c.join()
            self.assertIsNone(c.error)
            self.assertEqual(({write: 1}, 2, []), (lock.holds, lock.waiting, log))
            self.assertEqual(write, held.mode)
            held.__exit__(None, None, None)
            w.entered.wait(10)
            w.release()
            r2.entered.wait(10)
            r2.release()
            self.assertEqual((["w", "r2"], {}, 0), (log, lock.holds, lock.waiting))

    def test_a_second_conversion_that_would_wait_is_a_deadlock_error(self):
        for read, write in ((Read, Write), (PyRead, PyWrite)):
            lock = ThreadFifoLock()
            a, b = lock(read), lock(read)
            a.__enter__()
            b.__enter__()
            c = Converter(a, write)
            wait_until(lambda: lock.waiting == 1)
            with self.assertRaises(DeadlockError):
                b.convert(write)
            self.assertEqual((read, {read: 2}, 1), (b.mode, lock.holds, lock.waiting))
            b.__exit__(None, None, None)  # lets a's conversion through
            c.join()
            self.assertIsNone(c.error)
            self.assertEqual(({write: 1}, write), (lock.holds, a.mode))
            a.__exit__(None, None, None)
            self.assertEqual(({}, 0), (lock.holds, lock.waiting))

    def test_a_timed_out_conversion_keeps_the_old_mode_and_lets_the_queue_go(self):
        for read, write in ((Read, Write), (PyRead, PyWrite)):
            lock = ThreadFifoLock()
            r = Holder(lock, read)
            r.entered.wait(10)
            with lock(read) as held:
                start = time.monotonic()
                with self.assertRaises(TimeoutError):
                    held.convert(write, timeout=0.1)
                self.assertGreaterEqual(time.monotonic() - start, 0.09)
                self.assertEqual((read, {read: 2}, 0), (held.mode, lock.holds, lock.waiting))
                with self.assertRaises(TimeoutError):
                    held.convert(write, timeout=0)  # tries once
                self.assertEqual((read, {read: 2}, 0), (held.mode, lock.holds, lock.waiting))
            r.release()
            self.assertEqual({}, lock.holds)

    def test_a_raise_of_the_new_modes_predicate_reaches_the_converter_which_keeps_its_mode(self):
        lock = ThreadFifoLock()
        r = Holder(lock, Read)
        r.entered.wait(10)
        with lock(Read) as held:
            Raising.armed = True
            start = time.monotonic()
            try:
                with self.assertRaises(Boom):
                    held.convert(Raising, timeout=30)
            finally:
                Raising.armed = False
            self.assertLess(time.monotonic() - start, 5)  # withdrawn, not timed out
            self.assertEqual((Read, {Read: 2}, 0), (held.mode, lock.holds, lock.waiting))
            held.convert(Raising)  # not armed: allowed beside Read
            self.assertEqual({Read: 1, Raising: 1}, lock.holds)
        r.release()
        self.assertEqual({}, lock.holds)

    def test_bad_arguments_and_contexts_are_refused_and_change_nothing(self):
        lock = ThreadFifoLock()
        with lock(Read) as held:
            for args, kw, exc in (((42,), {}, TypeError), (("Write",), {}, TypeError),
                                  ((), {}, TypeError), ((Write, -1), {}, ValueError),
                                  ((Write,), {"timeout": float("nan")}, ValueError),
                                  ((Write,), {"timeout": "1"}, TypeError),
                                  ((Write,), {"timeout": True}, TypeError),
                                  ((Write, 1, 2), {}, TypeError),
                                  ((Write,), {"n": 1}, TypeError)):
                with self.assertRaises(exc, msg=(args, kw)):
                    held.convert(*args, **kw)
                self.assertEqual((Read, {Read: 1}, 0), (held.mode, lock.holds, lock.waiting))
        with self.assertRaises(RuntimeError):
            held.convert(Write)  # outside its with: holds nothing
        with lock(Read, 2) as held:
            with self.assertRaises(ValueError):
                held.convert(Write)
            self.assertEqual({Read: 2}, lock.holds)
        shared = lock(Read)
        with shared:
            with shared:
                with self.assertRaises(RuntimeError):
                    shared.convert(Write)  # whose hold?
                self.assertEqual({Read: 2}, lock.holds)
        shared = lock(Write)
        with shared:
            t = threading.Thread(target=shared.__enter__, daemon=True)
            t.start()  # waits in the same context
            wait_until(lambda: lock.waiting == 1)
            with self.assertRaises(RuntimeError):
                shared.convert(Read)  # whose hold?
            self.assertEqual((Write, {Write: 1}), (shared.mode, lock.holds))
        t.join(10)
        shared.__exit__(None, None, None)
        with lock(Write) as held:
            held.convert(Read)
            with self.assertRaises(RuntimeError):
                held.__enter__()  # holds a converted mode
            self.assertEqual({Read: 1}, lock.holds)
        self.assertEqual(({}, 0), (lock.holds, lock.waiting))


class Leaks(unittest.TestCase):
    """Nothing left behind: tickets, entries, contexts, exceptions."""

    def workload(self, lock):
        for mode, n in ((Mutex, 1), (PyMutex, 1), (PySem2, 2), (Semaphore(3), 2)):
            with lock(mode, n=n):
                pass
        h = Holder(lock, PyMutex)
        h.entered.wait(10)
        for mode in (PyMutex, Mutex):
            try:
                with lock(PyMutex, timeout=0.001):
                    pass
            except TimeoutError:
                pass
        # The readers share with the mutex holder, if nobody waits: each
        # enters before the next request, or one could queue behind PyMutex.
        waiters = []
        for m in (PyRead, Read):
            waiters.append(Holder(lock, m))
            assert waiters[-1].entered.wait(10)
        waiters.append(Holder(lock, PyMutex))
        wait_until(lambda: lock.waiting == 1)
        h.release()
        for w in waiters:
            w.release()
        Raising.armed = True
        try:
            with lock(Raising, n=2):
                pass
        except Boom:
            pass
        finally:
            Raising.armed = False
        for first, then in ((PyWrite, PyRead), (Write, PyRead), (PyWrite, Read)):
            with lock(first) as held:  # conversions: one ticket swapped for another
                held.convert(then)
        with lock(PyRead) as held:
            Raising.armed = True
            try:
                held.convert(Raising)
            except Boom:
                pass
            finally:
                Raising.armed = False
            try:
                held.convert(PyWrite, timeout=0)
            except TimeoutError:
                pass
        ctx = lock(PyRead)
        ctx.__enter__()
        lock.holds, lock.waiting, repr(lock)
        del ctx  # dropped while holding: the lock keeps the hold and its ticket
        assert lock.holds == {PyRead: 1}, lock.holds

    def test_reference_counts_and_memory_do_not_grow(self):
        import gc
        import tracemalloc

        classes = (Mutex, PyMutex, PySem2, PyRead, PyWrite, Read, Raising)
        for _ in range(3):
            self.workload(ThreadFifoLock())
        gc.collect()
        before = [sys.getrefcount(c) for c in classes]
        tracemalloc.start()
        try:
            self.workload(ThreadFifoLock())
            gc.collect()
            start, _ = tracemalloc.get_traced_memory()
            for _ in range(30):
                self.workload(ThreadFifoLock())
            gc.collect()
            end, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        self.assertEqual(before, [sys.getrefcount(c) for c in classes])
        # A ticket leaked per request would be about 15 KB here.
        self.assertLess(end - start, 6 * 1024)


@unittest.skipUnless(threading.current_thread() is threading.main_thread(),
                     "signals reach the main thread only")
class Interrupts(unittest.TestCase):
    def interrupt_later(self, lock, count, signum=signal.SIGINT):
        def fire():
            wait_until(lambda: lock.waiting == count)
            time.sleep(0.05)  # asleep by now, or about to ask the hook
            os.kill(os.getpid(), signum)

        t = threading.Thread(target=fire, daemon=True)
        t.start()
        return t

    def test_keyboard_interrupt_ends_the_wait_and_leaves_the_queue_clean(self):
        for mode in (Write, SlowWrite):
            lock = ThreadFifoLock()
            r = Holder(lock, Read)
            r.entered.wait(10)
            behind = None
            t = self.interrupt_later(lock, 1)
            with self.assertRaises(KeyboardInterrupt):
                with lock(mode):
                    self.fail("entered")
            t.join()
            self.assertEqual(0, lock.waiting)
            self.assertEqual({Read: 1}, lock.holds)
            # The interrupted head held back a reader: not any more.
            w = Holder(lock, Write)
            wait_until(lambda: lock.waiting == 1)
            behind = Holder(lock, Read)
            wait_until(lambda: lock.waiting == 2)
            w.gate.set()
            r.release()
            w.thread.join(10)
            behind.entered.wait(10)
            behind.release()
            self.assertEqual({}, lock.holds)

    def test_keyboard_interrupt_ends_a_waiting_conversion_which_keeps_its_mode(self):
        for read, write in ((Read, Write), (PyRead, PyWrite)):
            lock = ThreadFifoLock()
            r = Holder(lock, read)
            r.entered.wait(10)
            with lock(read) as held:
                t = self.interrupt_later(lock, 1)
                with self.assertRaises(KeyboardInterrupt):
                    held.convert(write)
                t.join()
                self.assertEqual((read, {read: 2}, 0), (held.mode, lock.holds, lock.waiting))
                behind = Holder(lock, read)  # no conversion holds it back any more
                self.assertTrue(behind.entered.wait(10))
                behind.release()
            r.release()
            self.assertEqual({}, lock.holds)

    def test_convert_interrupted_as_it_is_granted_raises_with_the_old_mode_held(self):
        """Ctrl-C races the grant of a waiting upgrade, 300 times, in random
        order with small random delays. Whenever the interrupt came while the
        conversion still waited (the lock said so after the interrupt was
        sent), convert() must raise KeyboardInterrupt with the context and
        the lock's holds on the old mode; whenever convert() raises it, the
        context and the holds agree. Before convert() looked for signals after
        the switch, the grant often won and the interrupt was raised as the
        call returned, with Write held."""
        rng = random.Random(20261207)
        armed = [False]
        late = []

        def handler(signum, frame):
            if armed[0]:
                armed[0] = False
                raise KeyboardInterrupt
            late.append(signum)  # after convert() returned: not its business

        old = signal.signal(signal.SIGINT, handler)
        try:
            lock = ThreadFifoLock()
            raced = interrupted = 0
            for i in range(300):
                r = Holder(lock, Read)
                self.assertTrue(r.entered.wait(10))
                seen = {}
                first, gap = rng.random() < 0.7, rng.uniform(0, 0.002)
                before = rng.uniform(0, 0.001)

                def fire():
                    wait_until(lambda: lock.waiting == 1)  # the conversion waits
                    time.sleep(before)
                    if first:
                        _thread.interrupt_main()
                        seen["waiting"] = lock.waiting == 1
                        time.sleep(gap)
                        r.gate.set()
                    else:
                        r.gate.set()
                        time.sleep(gap)
                        _thread.interrupt_main()
                        seen["waiting"] = lock.waiting == 1

                with lock(Upgradable, timeout=10) as held:
                    f = threading.Thread(target=fire, daemon=True)
                    armed[0] = True
                    f.start()
                    try:
                        held.convert(Write, timeout=10)
                        outcome = "converted"
                    except KeyboardInterrupt:
                        outcome = "interrupted"
                        mode, holds = held.mode, dict(lock.holds)
                    armed[0] = False
                    f.join(10)
                    for _ in range(100):
                        pass  # a pending interrupt is handled here, not later
                    if outcome == "interrupted":
                        interrupted += 1
                        self.assertEqual(1, holds.get(mode), (i, mode, holds))
                        self.assertNotIn(Write if mode is Upgradable else Upgradable, holds)
                    if seen["waiting"]:
                        raced += 1
                        self.assertEqual("interrupted", outcome, i)
                        self.assertIs(Upgradable, mode, (i, holds))
                        self.assertEqual(0, holds.get(Write, 0), (i, holds))
                r.release()
                self.assertEqual({}, dict(lock.holds))
                self.assertEqual(0, lock.waiting)
            # the race was run both ways often enough to mean something
            self.assertGreater(raced, 50)
            self.assertGreater(300 - interrupted, 20)
        finally:
            signal.signal(signal.SIGINT, old)

    def test_an_exception_from_a_signal_handler_ends_the_wait(self):
        lock = ThreadFifoLock()

        def handler(signum, frame):
            raise Boom("from the handler")

        old = signal.signal(signal.SIGUSR1, handler)
        try:
            h = Holder(lock, PyMutex)
            h.entered.wait(10)
            behind = Holder(lock, PyMutex, timeout=30)
            wait_until(lambda: lock.waiting == 1)
            t = self.interrupt_later(lock, 2, signal.SIGUSR1)
            with self.assertRaises(Boom):
                with lock(PyMutex, n=1):
                    self.fail("entered")
            t.join()
            self.assertEqual(1, lock.waiting)  # only `behind`
            h.release()
            behind.entered.wait(10)
            behind.release()
            self.assertEqual({}, lock.holds)
        finally:
            signal.signal(signal.SIGUSR1, old)


class SlowWrite:
    """Exclusive against Read and itself, in Python."""
    @staticmethod
    def is_compatible(holds):
        return not holds[Read] and not holds[SlowWrite]


@unittest.skipUnless(hasattr(os, "fork"), "needs fork")
@unittest.skipIf("asan" in os.environ.get("LD_PRELOAD", ""),
                 "a sanitizer runtime preloaded into Python: its allocator is not "
                 "fork-safe while other threads allocate (the child may hang in malloc)")
class Fork(unittest.TestCase):
    def run_child(self, body):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
            pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = body()
            finally:
                os._exit(code)
        end = time.monotonic() + 20
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            if time.monotonic() > end:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return "hung"
            time.sleep(0.005)

    def test_the_child_keeps_what_the_forking_thread_held_and_can_use_the_lock(self):
        lock = ThreadFifoLock()
        held = lock(Write)
        held.__enter__()

        def child():
            if lock.holds != {Write: 1}:
                return 3
            held.__exit__(None, None, None)
            with lock(PyMutex, timeout=1), lock(Read, timeout=1):
                return 0 if lock.holds == {PyMutex: 1, Read: 1} else 4

        self.assertEqual(0, self.run_child(child))
        self.assertEqual({Write: 1}, lock.holds)  # the parent's own
        held.__exit__(None, None, None)

    def test_a_fork_while_threads_are_inside_the_lock_leaves_the_child_a_whole_lock(self):
        lock = ThreadFifoLock()
        stop = threading.Event()

        class Sleepy:
            """Holds the internal lock a while, the GIL released."""
            @staticmethod
            def is_compatible(holds):
                time.sleep(0.001)
                return not holds[Sleepy]

        def churn():
            while not stop.is_set():
                try:
                    with lock(Sleepy, timeout=0.05):
                        pass
                except TimeoutError:
                    pass

        threads = [threading.Thread(target=churn, daemon=True) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            for _ in range(15):
                def child():
                    lock.waiting
                    lock.holds
                    try:
                        with lock(Read, timeout=0.2):
                            pass
                    except TimeoutError:
                        pass  # held by a thread that is not in the child
                    return 0

                self.assertEqual(0, self.run_child(child))
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        self.assertEqual({}, lock.holds)


if __name__ == "__main__":
    unittest.main()
