"""FifoLock's behaviour and API: modes, order, sharing, errors, introspection."""
import asyncio
import collections
import collections.abc
import struct
import sys
import unittest
import weakref

import fifolock
from fifolock import (FifoLock, IS, IX, S, SIX, X, Mutex, Read, Semaphore,
                      SemaphoreBase, Write)
from support import Test, run, settle


class StaticMode(asyncio.Future):
    @staticmethod
    def is_compatible(holds):
        return not holds[StaticMode]


class ClassMode(asyncio.Future):
    size = 2
    seen = []

    @classmethod
    def is_compatible(cls, holds):
        ClassMode.seen.append(cls)
        return holds[cls] < cls.size


class SmallClassMode(ClassMode):
    size = 1


class PlainMode(asyncio.Future):
    seen = []

    def is_compatible(self, holds):
        PlainMode.seen.append(self)
        return not holds[PlainMode]


class Holder:
    """A task that holds `lock` in `mode` until released."""

    def __init__(self, lock, mode, log=None, name=None):
        self.gate = asyncio.Event()
        self.entered = False
        self.log = log
        self.name = name
        self.task = asyncio.create_task(self._run(lock, mode))

    async def _run(self, lock, mode):
        async with lock(mode):
            self.entered = True
            if self.log is not None:
                self.log.append(self.name)
            await self.gate.wait()

    async def release(self):
        self.gate.set()
        await self.task


class ModeKinds(Test):
    def test_staticmethod_classmethod_and_plain_method_predicates_all_work(self):
        async def main():
            lock = FifoLock()
            ClassMode.seen.clear()
            PlainMode.seen.clear()
            a = Holder(lock, StaticMode)
            b = Holder(lock, StaticMode)
            c = Holder(lock, ClassMode)
            d = Holder(lock, ClassMode)
            e = Holder(lock, ClassMode)
            await settle()
            # StaticMode excludes itself; ClassMode admits 2, FIFO stops at b.
            self.assertEqual([True, False, False, False, False],
                             [h.entered for h in (a, b, c, d, e)])
            await a.release()
            await settle()
            self.assertEqual([True, True, True, False],
                             [h.entered for h in (b, c, d, e)])
            await b.release()
            await c.release()
            await settle()
            self.assertTrue(e.entered)
            await d.release()
            await e.release()
            self.assertTrue(ClassMode.seen)
            self.assertTrue(all(cls is ClassMode for cls in ClassMode.seen))

            p1 = Holder(lock, PlainMode)
            p2 = Holder(lock, PlainMode)
            await settle()
            self.assertEqual([True, False], [p1.entered, p2.entered])
            await p1.release()
            await p2.release()
            self.assertTrue(PlainMode.seen)
            self.assertTrue(all(isinstance(m, PlainMode) for m in PlainMode.seen))
            self.assertEqual({}, lock.holds)

        run(main())

    def test_a_subclass_is_its_own_mode_and_a_classmethod_sees_the_subclass(self):
        async def main():
            lock = FifoLock()
            ClassMode.seen.clear()
            a = Holder(lock, SmallClassMode)
            b = Holder(lock, SmallClassMode)
            c = Holder(lock, ClassMode)
            await settle()
            self.assertEqual([True, False, False], [a.entered, b.entered, c.entered])
            self.assertIn(SmallClassMode, ClassMode.seen)
            self.assertEqual({SmallClassMode: 1}, lock.holds)
            for h in (a, b, c):
                await h.release()

        run(main())

    def test_a_mode_without_is_compatible_is_a_type_error_at_lock_call(self):
        class NoPredicate(asyncio.Future):
            pass

        class NotCallable(asyncio.Future):
            is_compatible = 3

        class NoneStatic(asyncio.Future):
            is_compatible = staticmethod(None)

        lock = FifoLock()
        for bad in (NoPredicate, NotCallable, NoneStatic):
            with self.subTest(bad=bad):
                with self.assertRaises(TypeError):
                    lock(bad)
        loop = asyncio.new_event_loop()
        try:
            for not_a_class in (StaticMode(loop=loop), 3, None, "Mutex"):
                with self.subTest(not_a_class=not_a_class):
                    with self.assertRaises(TypeError):
                        lock(not_a_class)
        finally:
            loop.close()
        with self.assertRaises(TypeError):
            lock()
        with self.assertRaises(TypeError):
            lock(Mutex, Read)
        with self.assertRaises(TypeError):
            lock(mode=Mutex)
        with self.assertRaises(TypeError):
            FifoLock(1)
        self.assertEqual({}, lock.holds)
        self.assertEqual(0, lock.waiting)

    def test_holds_are_keyed_by_class_not_by_predicate(self):
        class A(asyncio.Future):
            @staticmethod
            def is_compatible(holds):
                return not holds[A]

        class B(asyncio.Future):
            @staticmethod
            def is_compatible(holds):
                return not holds[B]

        async def main():
            lock = FifoLock()
            a, b = Holder(lock, A), Holder(lock, B)
            await settle()
            self.assertTrue(a.entered and b.entered)
            self.assertEqual({A: 1, B: 1}, lock.holds)
            await a.release()
            await b.release()

        run(main())


class Order(Test):
    def test_requests_are_granted_strictly_first_in_first_out(self):
        async def main():
            lock = FifoLock()
            log = []
            first = Holder(lock, Write, log, "w0")
            await settle()
            modes = [Read, Read, Write, Read, Mutex, Read, Write, Write, Read]
            holders = []
            for i, mode in enumerate(modes):
                holders.append(Holder(lock, mode, log, f"{mode.__name__}{i}"))
                await settle(2)
            # Mutex is compatible with everything held, but queues anyway.
            self.assertEqual(["w0"], log)
            self.assertEqual(len(modes), lock.waiting)
            await first.release()
            await settle()
            self.assertEqual(["w0", "Read0", "Read1"], log)
            for h in holders:
                await h.release()
                await settle()
            self.assertEqual(["w0"] + [f"{m.__name__}{i}" for i, m in enumerate(modes)], log)
            self.assertEqual({}, lock.holds)
            self.assertEqual(0, lock.waiting)

        run(main())

    def test_a_later_compatible_request_never_overtakes_an_earlier_waiting_one(self):
        async def main():
            lock = FifoLock()
            r = Holder(lock, Read)
            await settle()
            w = Holder(lock, Write)
            await settle()
            r2 = Holder(lock, Read)
            await settle()
            self.assertFalse(w.entered)
            self.assertFalse(r2.entered)
            await r.release()
            await settle()
            self.assertTrue(w.entered)
            self.assertFalse(r2.entered)
            await w.release()
            await r2.release()

        run(main())


class Context(Test):
    def test_one_context_manager_can_be_used_by_several_tasks_at_once(self):
        async def main():
            lock = FifoLock()
            for mode, most_expected in ((Mutex, 1), (Read, 5), (Semaphore(2), 2), (StaticMode, 1)):
                cm = lock(mode)
                inside = most = 0

                async def use():
                    nonlocal inside, most
                    async with cm:
                        inside += 1
                        most = max(most, inside)
                        await asyncio.sleep(0)
                        inside -= 1

                await asyncio.gather(*(use() for _ in range(5)))
                self.assertEqual(most_expected, most, mode)
                self.assertEqual({}, lock.holds)

        run(main())

    def test_an_exception_inside_async_with_releases_and_propagates(self):
        async def main():
            lock = FifoLock()
            for mode in (Mutex, StaticMode):
                with self.assertRaisesRegex(ValueError, "inside"):
                    async with lock(mode):
                        raise ValueError("inside")

                self.assertEqual({}, lock.holds)
                async with lock(mode):
                    self.assertEqual({mode: 1}, lock.holds)

        run(main())

    def test_releasing_a_mode_that_is_not_held_raises_and_changes_nothing(self):
        async def main():
            lock = FifoLock()
            h = Holder(lock, Read)
            await settle()
            for mode in (Write, StaticMode, Mutex):
                with self.assertRaises(RuntimeError):
                    await lock(mode).__aexit__(None, None, None)
            self.assertEqual({Read: 1}, lock.holds)
            await h.release()
            with self.assertRaises(RuntimeError):
                await lock(Read).__aexit__(None, None, None)
            self.assertEqual({}, lock.holds)

        run(main())

    def test_an_acquisition_is_made_when_awaited_and_can_be_awaited_once(self):
        async def main():
            lock = FifoLock()
            cm = lock(Mutex)
            pending = cm.__aenter__()
            self.assertEqual({}, lock.holds)  # nothing until awaited
            del pending
            acq = cm.__aenter__()
            self.assertIs(cm, await acq)  # the `held` of `async with ... as held`
            self.assertEqual({Mutex: 1}, lock.holds)
            with self.assertRaises(RuntimeError):
                await acq
            await cm.__aexit__(None, None, None)
            self.assertEqual({}, lock.holds)
            self.assertIs(cm.lock, lock)
            self.assertIs(cm.mode, Mutex)
            self.assertIn("Mutex", repr(cm))

        run(main())

    def test_constructor_arguments_are_refused_unless_a_subclass_takes_them(self):
        class Plain(FifoLock):
            pass

        class PassesThemUp(FifoLock):
            def __new__(cls, *args, **kwargs):
                return super().__new__(cls, *args, **kwargs)

        class Named(FifoLock):
            def __init__(self, name):
                super().__init__()
                self.name = name

        for cls in (FifoLock, Plain, PassesThemUp):
            for args, kwargs in (((1,), {}), ((1, 2), {"x": 3}), ((), {"x": 3})):
                with self.subTest(cls=cls.__name__, args=args, kwargs=kwargs):
                    with self.assertRaisesRegex(TypeError, "takes no arguments|exactly one"):
                        cls(*args, **kwargs)
            with self.subTest(cls=cls.__name__):
                self.assertEqual({}, cls().holds)
        self.assertEqual("x", Named("x").name)
        with self.assertRaises(TypeError):
            Named()  # its own __init__ says what it takes

    def test_subclasses_of_fifolock_and_weak_references_work(self):
        class Named(FifoLock):
            def __init__(self, name):
                super().__init__()
                self.name = name

        async def main():
            lock = Named("x")
            async with lock(Mutex):
                self.assertEqual({Mutex: 1}, lock.holds)
            self.assertEqual("x", lock.name)
            ref = weakref.ref(lock)
            del lock
            self.assertIsNone(ref())
            plain = FifoLock()
            self.assertIs(weakref.ref(plain)(), plain)

        run(main())


class ReadyMade(Test):
    MATRIX = {  # row may join the columns held
        IS: {IS, IX, S, SIX},
        IX: {IS, IX},
        S: {IS, S},
        SIX: {IS},
        X: set(),
    }

    def test_ready_made_modes_are_future_subclasses_with_python_predicates(self):
        for mode in (Mutex, Read, Write, IS, IX, S, SIX, X, Semaphore(3)):
            self.assertTrue(issubclass(mode, asyncio.Future), mode)
            self.assertTrue(callable(mode.is_compatible), mode)
        self.assertTrue(issubclass(Semaphore(3), SemaphoreBase))
        holds = collections.defaultdict(int)
        self.assertTrue(Mutex.is_compatible(holds))
        holds[Mutex] = 1
        self.assertFalse(Mutex.is_compatible(holds))

    def test_intention_modes_follow_the_standard_matrix_in_c_and_in_python(self):
        async def main():
            lock = FifoLock()
            for held, joiners in self.MATRIX.items():
                for asked in self.MATRIX:
                    h = Holder(lock, held)
                    await settle()
                    a = Holder(lock, asked)
                    await settle()
                    expected = held in self.MATRIX[asked]
                    self.assertEqual(expected, a.entered, (asked, held))
                    holds = collections.defaultdict(int, {held: 1})
                    self.assertEqual(expected, bool(asked.is_compatible(holds)), (asked, held))
                    await h.release()
                    await a.release()
                    self.assertEqual({}, lock.holds)

        run(main())

    def test_read_write_and_mutex_match_their_python_predicates(self):
        async def main():
            lock = FifoLock()
            modes = (Mutex, Read, Write)
            for held in modes:
                for asked in modes:
                    h = Holder(lock, held)
                    await settle()
                    a = Holder(lock, asked)
                    await settle()
                    holds = collections.defaultdict(int, {held: 1})
                    self.assertEqual(bool(asked.is_compatible(holds)), a.entered, (asked, held))
                    await h.release()
                    await a.release()

        run(main())

    def test_semaphore_takes_any_size_a_c_size_t_holds_and_says_so_above(self):
        size_max = 2 ** (8 * struct.calcsize("N")) - 1
        for size in (2 ** 31, 2 ** 63, size_max):
            sem = Semaphore(size)
            self.assertEqual(size, sem.size)

            async def main():
                lock = FifoLock()
                async with lock(sem, n=1000):
                    async with lock(sem, n=5):
                        self.assertEqual({sem: 1005}, lock.holds)

            run(main())
        for size in (size_max + 1, 2 ** 100):
            with self.assertRaises(OverflowError) as cm:
                Semaphore(size)
            self.assertIn("more than a C size_t holds", str(cm.exception))
        with self.assertRaisesRegex(OverflowError, "size_t"):  # below the package too
            fifolock._fifolock._register(type("S", (), {}), "semaphore", size_max + 1)

    def test_semaphore_makes_one_cached_class_per_size(self):
        s3 = Semaphore(3)
        self.assertIs(s3, Semaphore(3))
        self.assertIsNot(s3, Semaphore(4))
        self.assertEqual(3, s3.size)
        for bad in ("3", 1.5, True, None):
            with self.assertRaises(TypeError):
                Semaphore(bad)
        for bad in (0, -1):
            with self.assertRaises(ValueError):
                Semaphore(bad)

        async def main():
            lock = FifoLock()
            hs = [Holder(lock, s3) for _ in range(5)]
            await settle()
            self.assertEqual([True] * 3 + [False] * 2, [h.entered for h in hs])
            self.assertEqual({s3: 3}, lock.holds)
            # A Python subclass is an ordinary Python mode of its own.
            Bigger = type("Bigger", (s3,), {"size": 5})
            b = Holder(lock, Bigger)
            await settle()
            self.assertFalse(b.entered)  # FIFO: behind the two waiting
            await hs[0].release()
            await hs[1].release()
            await settle()
            self.assertTrue(all(h.entered for h in hs))
            self.assertTrue(b.entered)
            self.assertEqual({s3: 3, Bigger: 1}, lock.holds)
            for h in hs[2:] + [b]:
                await h.release()

        run(main())

    def test_ready_made_modes_run_no_python_predicate_and_user_modes_do(self):
        calls = collections.Counter()

        names = {Mutex.is_compatible.__code__: "Mutex.is_compatible",
                 StaticMode.is_compatible.__code__: "StaticMode.is_compatible"}

        def profile(frame, event, arg):
            code = frame.f_code
            if event == "call" and code.co_name == "is_compatible":
                # co_qualname is new in Python 3.11.
                calls[getattr(code, "co_qualname", None) or names.get(code, code.co_name)] += 1

        class Sub(Mutex):
            pass

        async def work(mode):
            lock = FifoLock()
            hs = [Holder(lock, mode) for _ in range(3)]
            await settle()
            for h in hs:
                await h.release()

        for mode in (Mutex, Read, Write, IS, IX, S, SIX, X, Semaphore(2)):
            calls.clear()
            sys.setprofile(profile)
            try:
                run(work(mode))
            finally:
                sys.setprofile(None)
            self.assertEqual({}, dict(calls), mode)
        for mode, name in ((Sub, "Mutex.is_compatible"), (StaticMode, "StaticMode.is_compatible")):
            calls.clear()
            sys.setprofile(profile)
            try:
                run(work(mode))
            finally:
                sys.setprofile(None)
            self.assertGreater(calls[name], 0, mode)

    def test_ready_made_and_user_modes_see_each_other_on_one_lock(self):
        class AfterWrite(asyncio.Future):
            @staticmethod
            def is_compatible(holds):
                return not holds[Write]

        async def main():
            lock = FifoLock()
            w = Holder(lock, Write)
            await settle()
            a = Holder(lock, AfterWrite)
            await settle()
            self.assertFalse(a.entered)
            r = Holder(lock, Read)  # Read (in C) must wait for AfterWrite
            await settle()
            await w.release()
            await settle()
            self.assertTrue(a.entered and r.entered)
            self.assertEqual({AfterWrite: 1, Read: 1}, lock.holds)
            await a.release()
            await r.release()

        run(main())


class Introspection(Test):
    def test_holds_and_waiting_describe_the_lock_now(self):
        async def main():
            lock = FifoLock()
            self.assertEqual({}, lock.holds)
            self.assertEqual(0, lock.waiting)
            r1, r2 = Holder(lock, Read), Holder(lock, Read)
            s = Holder(lock, StaticMode)
            await settle()
            w = Holder(lock, Write)
            await settle()
            self.assertEqual({Read: 2, StaticMode: 1}, lock.holds)
            self.assertEqual(1, lock.waiting)
            snapshot = lock.holds
            snapshot[Read] = 100  # a copy: the lock is not changed
            self.assertEqual(2, lock.holds[Read])
            self.assertIn("waiting=1", repr(lock))
            for h in (r1, r2, s, w):
                await h.release()
            self.assertEqual({}, lock.holds)
            self.assertEqual(0, lock.waiting)

        run(main())

    def test_the_holds_argument_reads_like_a_defaultdict_of_current_holders(self):
        seen = {}

        class Unused(asyncio.Future):
            pass

        class Probe(asyncio.Future):
            @staticmethod
            def is_compatible(holds):
                seen["mapping"] = isinstance(holds, collections.abc.Mapping)
                seen["unused"] = holds[Unused]
                seen["read"] = holds[Read]
                seen["in"] = (Read in holds, Write in holds)
                seen["len"] = len(holds)
                seen["dict"] = dict(holds)
                seen["items"] = sorted((k.__name__, v) for k, v in holds.items())
                seen["keys"] = set(holds.keys())
                seen["values"] = sorted(holds.values())
                seen["get"] = (holds.get(Read), holds.get(Write), holds.get(Write, 0))
                seen["eq"] = holds == {Read: 2}
                seen["repr"] = repr(holds)
                seen["holds"] = holds
                return True

        async def main():
            lock = FifoLock()
            r1, r2 = Holder(lock, Read), Holder(lock, Read)
            await settle()
            async with lock(Probe):
                pass
            await r1.release()
            # Kept past the call, it reads the lock live.
            self.assertEqual(1, seen["holds"][Read])
            await r2.release()
            self.assertEqual(0, seen["holds"][Read])

        run(main())
        self.assertEqual({
            "mapping": True, "unused": 0, "read": 2, "in": (True, False), "len": 1,
            "dict": {Read: 2}, "items": [("Read", 2)], "keys": {Read}, "values": [2],
            "get": (2, None, 0), "eq": True,
        }, {k: v for k, v in seen.items() if k not in ("repr", "holds")})
        self.assertIn("Read", seen["repr"])
        # Once the lock is gone it reads as empty.
        self.assertEqual(0, seen["holds"][Read])
        self.assertEqual(0, len(seen["holds"]))
        with self.assertRaises(TypeError):
            seen["holds"][[]]  # unhashable, like a dict
        with self.assertRaises(TypeError):
            seen["holds"][Read] = 1


if __name__ == "__main__":
    unittest.main()
