"""Weighted requests (lock(Mode, n=3)) and conversions (held.convert(Mode))."""
import asyncio
import sys

import fifolock
from fifolock import (DeadlockError, FifoLock, Mutex, Read, Semaphore, SemaphoreBase,
                      Upgradable, Write)
from support import Test, run, settle


class Holder:
    """A task that holds lock(mode, n) until released; `held` is its context."""

    def __init__(self, lock, mode, n=1, log=None, name=None):
        self.gate = asyncio.Event()
        self.entered = False
        self.held = None
        self.log = log
        self.name = name
        self.task = asyncio.create_task(self._run(lock, mode, n))

    async def _run(self, lock, mode, n):
        async with lock(mode, n=n) as held:
            self.held = held
            self.entered = True
            if self.log is not None:
                self.log.append(self.name)
            await self.gate.wait()

    async def release(self):
        self.gate.set()
        await self.task


class PySem3(SemaphoreBase):
    size = 3


class Counting(asyncio.Future):
    """Records holds[Counting] at every question; admits at most 3."""
    seen = []

    @staticmethod
    def is_compatible(holds):
        Counting.seen.append(holds[Counting])
        return holds[Counting] < 3


class Boom(Exception):
    pass


class RaisesOnThird(asyncio.Future):
    armed = True  # raises for a third hold only while armed

    @staticmethod
    def is_compatible(holds):
        if holds[RaisesOnThird] == 2 and RaisesOnThird.armed:
            raise Boom("third")
        return not holds[Mutex]


class PyWrite(asyncio.Future):
    """Exclusive, in Python: sees the holds a conversion asks with."""
    seen = []

    @staticmethod
    def is_compatible(holds):
        PyWrite.seen.append(dict(holds))
        return not holds[Read] and not holds[PyWrite] and not holds[Upgradable]


class Fussy(asyncio.Future):
    """Raises while `fail` is set; else admits when Read is not held."""
    fail = False

    @staticmethod
    def is_compatible(holds):
        if Fussy.fail:
            raise Boom("fussy")
        return not holds[Read]


class NotAMode:
    pass


class Weighted(Test):
    def test_n_holds_are_taken_together_and_released_together(self):
        async def main():
            lock = FifoLock()
            sem = Semaphore(5)
            async with lock(sem, n=3) as held:
                self.assertEqual({sem: 3}, lock.holds)
                self.assertEqual(3, held.n)
                async with lock(sem, 2):
                    self.assertEqual({sem: 5}, lock.holds)
                self.assertEqual({sem: 3}, lock.holds)
            self.assertEqual({}, lock.holds)

        run(main())

    def test_a_waiting_weighted_request_holds_back_smaller_ones_behind_it(self):
        async def main():
            lock = FifoLock()
            sem = Semaphore(3)
            log = []
            a = Holder(lock, sem, 2, log, "a")
            await settle()
            b = Holder(lock, sem, 2, log, "b")
            await settle()
            c = Holder(lock, sem, 1, log, "c")  # would fit now, but b is first
            await settle()
            self.assertEqual(["a"], log)
            self.assertEqual(2, lock.waiting)
            await a.release()
            await settle()
            self.assertEqual(["a", "b", "c"], log)
            self.assertEqual({sem: 3}, lock.holds)
            await b.release()
            await c.release()
            self.assertEqual({}, lock.holds)

        run(main())

    def test_python_semaphore_takes_n_like_the_ready_made_one(self):
        async def main():
            for sem in (Semaphore(3), PySem3):
                lock = FifoLock()
                log = []
                a = Holder(lock, sem, 2, log, "a")
                b = Holder(lock, sem, 2, log, "b")
                await settle()
                self.assertEqual(["a"], log, sem)
                await a.release()
                await settle()
                self.assertEqual(["a", "b"], log, sem)
                with self.assertRaises(fifolock.DeadlockError):  # at once
                    async with asyncio.timeout(5):
                        async with lock(sem, n=4):  # more than ever fits
                            pass
                self.assertEqual(0, lock.waiting)
                await b.release()
                self.assertEqual({}, lock.holds, sem)

        if sys.version_info >= (3, 11):
            run(main())

    def test_a_python_predicate_is_asked_once_per_hold_with_those_before_counted(self):
        async def main():
            lock = FifoLock()
            Counting.seen.clear()
            async with lock(Counting, n=3):
                self.assertEqual([0, 1, 2], Counting.seen)
                Counting.seen.clear()
                t = asyncio.create_task(self._enter(lock, Counting, 1))
                await settle()
                # asked once, refused; then whether it could ever fit (an empty lock)
                self.assertEqual([3, 0], Counting.seen)
                Counting.seen.clear()
            await t
            self.assertEqual([0], Counting.seen)  # at the release: fits alone
            Counting.seen.clear()
            async with lock(Counting, n=2):
                t = asyncio.create_task(self._enter(lock, Counting, 2))
                await settle()
                # its 2nd refused, then asked as on an empty lock: 0, 1 fit
                self.assertEqual([0, 1, 2, 3, 0, 1], Counting.seen)
                Counting.seen.clear()
            await t
            self.assertEqual([0, 1], Counting.seen)

        run(main())

    async def _enter(self, lock, mode, n):
        async with lock(mode, n=n):
            pass

    def test_a_predicate_raising_for_a_later_hold_fails_only_that_request(self):
        async def main():
            lock = FifoLock()
            with self.assertRaises(Boom):
                async with lock(RaisesOnThird, n=3):
                    self.fail("entered")
            self.assertEqual({}, lock.holds)
            # Asked as it queues whether it could ever fit: raised at once.
            m = Holder(lock, Mutex)
            await settle()
            with self.assertRaises(Boom):
                await self._enter(lock, RaisesOnThird, 3)
            self.assertEqual(0, lock.waiting)
            # Queued: raised at the grant; the releasing task and those behind go on.
            RaisesOnThird.armed = False
            w = asyncio.create_task(self._enter(lock, RaisesOnThird, 3))
            after = Holder(lock, RaisesOnThird, 2)
            await settle()
            self.assertEqual(2, lock.waiting)
            RaisesOnThird.armed = True
            await m.release()
            with self.assertRaises(Boom):
                await w
            await settle()
            self.assertTrue(after.entered)
            self.assertEqual({RaisesOnThird: 2}, lock.holds)
            await after.release()
            self.assertEqual({}, lock.holds)

        run(main())

    def test_a_cancelled_weighted_waiter_leaves_nothing_and_lets_the_rest_in(self):
        async def main():
            lock = FifoLock()
            sem = Semaphore(3)
            a = Holder(lock, sem, 2)
            await settle()
            big = Holder(lock, sem, 3)
            small = Holder(lock, sem, 1)
            await settle()
            self.assertEqual((False, False), (big.entered, small.entered))
            big.task.cancel()
            await settle()
            self.assertTrue(small.entered)  # let in by the cancel, not a release
            self.assertEqual({sem: 3}, lock.holds)
            self.assertEqual(0, lock.waiting)
            await a.release()
            await small.release()
            self.assertEqual({}, lock.holds)

        run(main())

    def test_a_weighted_waiter_cancelled_after_its_grant_gives_all_back(self):
        async def main():
            lock = FifoLock()
            sem = Semaphore(3)
            ctx = lock(sem, n=3)
            await ctx.__aenter__()
            b = Holder(lock, sem, 3)
            await settle()
            await ctx.__aexit__(None, None, None)  # grants b, without a task switch
            self.assertEqual({sem: 3}, lock.holds)
            b.task.cancel()                        # before b resumed
            await asyncio.gather(b.task, return_exceptions=True)
            self.assertFalse(b.entered)
            self.assertEqual({}, lock.holds)

        run(main())

    def test_bad_n_is_refused_and_changes_nothing(self):
        async def main():
            lock = FifoLock()
            for n, exc in ((0, ValueError), (-1, ValueError), (1.5, TypeError),
                           ("3", TypeError), (True, TypeError), (None, TypeError),
                           (2**40, OverflowError)):
                with self.assertRaises(exc, msg=repr(n)):
                    lock(Mutex, n=n)
                with self.assertRaises(exc, msg=repr(n)):
                    lock(Mutex, n)
            with self.assertRaises(TypeError):
                lock(Mutex, size=2)
            with self.assertRaises(TypeError):
                lock(Mutex, 2, 3)
            with self.assertRaises(TypeError):
                lock(n=2)
            self.assertEqual({}, lock.holds)
            self.assertEqual(0, lock.waiting)
            # Beyond what a mode counts: OverflowError, nothing taken.
            async with lock(Mutex):
                pass

        run(main())


class Nobody(asyncio.Future):
    """A user's mode that refuses even a lock nobody holds: it never fits."""
    asked = []

    @staticmethod
    def is_compatible(holds):
        Nobody.asked.append(dict(holds))
        return False


class NeverFits(Test):
    """A request no lock could grant is refused at once with DeadlockError."""

    def test_it_is_refused_at_once_on_an_idle_a_held_and_a_queued_lock(self):
        async def main():
            lock = FifoLock()
            never = [(Semaphore(2), 3), (Write, 2), (Mutex, 2), (PySem3, 4), (Nobody, 1)]
            holders = []
            for step in range(3):
                if step == 1:
                    holders.append(Holder(lock, Read))  # held
                if step == 2:
                    holders.append(Holder(lock, Write))  # and queued
                await settle()
                holds, waiting = dict(lock.holds), lock.waiting
                for mode, n in never:
                    with self.assertRaises(DeadlockError) as cm:
                        async with asyncio.timeout(5):  # a wait would time out instead
                            async with lock(mode, n=n):
                                self.fail("entered")
                    self.assertIn("never", str(cm.exception))
                    self.assertEqual(holds, lock.holds)
                    self.assertEqual(waiting, lock.waiting)
            # the writer behind the reader goes on as if nothing came
            await holders[0].release()
            await settle()
            self.assertTrue(holders[1].entered)
            await holders[1].release()
            self.assertEqual({}, lock.holds)
            # what fits an empty lock still just waits its turn
            async with lock(Semaphore(2), n=2):
                self.assertEqual({Semaphore(2): 2}, lock.holds)

        run(main())

    def test_a_conversion_to_a_mode_that_never_fits_keeps_the_old_mode(self):
        async def main():
            lock = FifoLock()
            other = Holder(lock, Read)
            await settle()
            async with lock(Read) as held:
                with self.assertRaises(DeadlockError) as cm:
                    async with asyncio.timeout(5):  # a wait would time out instead
                        await held.convert(Nobody)
                self.assertIn("never", str(cm.exception))
                self.assertIs(Read, held.mode)
                self.assertEqual({Read: 2}, lock.holds)
                self.assertEqual(0, lock.waiting)
                await other.release()
                with self.assertRaises(DeadlockError):  # alone, too
                    await held.convert(Nobody)
                self.assertEqual({Read: 1}, lock.holds)
                await held.convert(Write)
                self.assertEqual({Write: 1}, lock.holds)

        run(main())

    def test_a_raise_of_the_could_it_ever_fit_question_reaches_its_own_task(self):
        class Odd(asyncio.Future):
            @staticmethod
            def is_compatible(holds):
                if not holds:
                    raise Boom("asked on an empty lock")
                return False

        async def main():
            lock = FifoLock()
            m = Holder(lock, Mutex)
            await settle()
            with self.assertRaisesRegex(Boom, "empty lock"):
                async with lock(Odd):
                    self.fail("entered")
            self.assertEqual({Mutex: 1}, lock.holds)
            self.assertEqual(0, lock.waiting)
            async with lock(Read) as held:  # and about a conversion
                with self.assertRaisesRegex(Boom, "empty lock"):
                    await held.convert(Odd)
                self.assertIs(Read, held.mode)
                self.assertEqual(0, lock.waiting)
            await m.release()
            self.assertEqual({}, lock.holds)

        run(main())

    def test_while_a_conversion_waits_a_new_request_is_asked_about_itself(self):
        class Bad(asyncio.Future):
            @staticmethod
            def is_compatible(holds):
                raise Boom("bad")

        async def main():
            lock = FifoLock()
            a, b = Holder(lock, Read), Holder(lock, Read)
            await settle()
            conv = asyncio.create_task(a.held.convert(Write))
            await settle()
            self.assertEqual(1, lock.waiting)
            with self.assertRaisesRegex(Boom, "bad"):
                async with lock(Bad):
                    self.fail("entered")
            # the conversion waits on, untouched
            self.assertFalse(conv.done())
            self.assertEqual(1, lock.waiting)
            await b.release()
            await conv
            self.assertIs(Write, a.held.mode)
            await a.release()
            self.assertEqual({}, lock.holds)

        run(main())


class Convert(Test):
    def test_upgradable_converts_to_write_at_once_and_exit_releases_write(self):
        async def main():
            lock = FifoLock()
            async with lock(Upgradable) as held:
                self.assertIs(Upgradable, held.mode)
                self.assertIsNone(await held.convert(Write))
                self.assertIs(Write, held.mode)
                self.assertEqual({Write: 1}, lock.holds)
            self.assertEqual({}, lock.holds)
            self.assertIs(Upgradable, held.mode)  # after exit: what it asks for

        run(main())

    def test_a_waiting_conversion_goes_ahead_of_the_queue_and_blocks_new_requests(self):
        async def main():
            lock = FifoLock()
            log = []
            r1 = Holder(lock, Read, log=log, name="r1")
            u = Holder(lock, Upgradable, log=log, name="u")
            await settle()
            w = Holder(lock, Write, log=log, name="w")
            await settle()
            conv = asyncio.create_task(u.held.convert(Write))
            await settle()
            self.assertFalse(conv.done())
            r2 = Holder(lock, Read, log=log, name="r2")  # compatible, but queues
            await settle()
            self.assertFalse(r2.entered)
            self.assertEqual(3, lock.waiting)  # the conversion counts
            self.assertEqual({Read: 1, Upgradable: 1}, lock.holds)
            await r1.release()
            await conv
            self.assertEqual({Write: 1}, lock.holds)
            self.assertIs(Write, u.held.mode)
            await u.release()
            await settle()
            self.assertTrue(w.entered)
            self.assertFalse(r2.entered)
            await w.release()
            await settle()
            self.assertTrue(r2.entered)
            await r2.release()
            self.assertEqual(["r1", "u", "w", "r2"], log)
            self.assertEqual({}, lock.holds)

        run(main())

    def test_a_downgrade_at_once_grants_the_waiters_the_old_mode_held_back(self):
        async def main():
            lock = FifoLock()
            w = Holder(lock, Write)
            await settle()
            readers = [Holder(lock, Read) for _ in range(3)]
            writer = Holder(lock, Write)
            await settle()
            self.assertFalse(any(r.entered for r in readers))
            await w.held.convert(Read)
            self.assertIs(Read, w.held.mode)
            await settle()
            self.assertTrue(all(r.entered for r in readers))
            self.assertFalse(writer.entered)
            self.assertEqual({Read: 4}, lock.holds)
            await w.release()
            for r in readers:
                await r.release()
            await settle()
            self.assertTrue(writer.entered)
            await writer.release()
            self.assertEqual({}, lock.holds)

        run(main())

    def test_a_second_conversion_that_would_wait_is_a_deadlock_error(self):
        async def main():
            lock = FifoLock()
            a = Holder(lock, Read)
            b = Holder(lock, Read)
            await settle()
            first = asyncio.create_task(a.held.convert(Write))
            await settle()
            self.assertFalse(first.done())
            with self.assertRaises(DeadlockError) as cm:
                await b.held.convert(Write)
            self.assertIsInstance(cm.exception, RuntimeError)
            self.assertIs(Read, b.held.mode)
            self.assertEqual({Read: 2}, lock.holds)
            self.assertEqual(1, lock.waiting)
            await b.release()
            await first
            self.assertEqual({Write: 1}, lock.holds)
            await a.release()
            self.assertEqual({}, lock.holds)
            self.assertIs(fifolock.DeadlockError, DeadlockError)

        run(main())

    def test_a_waiting_conversion_cancelled_keeps_the_old_mode_and_the_queue_goes_on(self):
        async def main():
            for how in ("wait_for", "timeout", "cancel"):
                lock = FifoLock()
                r1 = Holder(lock, Read)
                u = Holder(lock, Upgradable)
                await settle()
                later = []

                async def convert():
                    if how == "wait_for":
                        await asyncio.wait_for(u.held.convert(Write), 0.02)
                    elif how == "timeout" and sys.version_info >= (3, 11):
                        async with asyncio.timeout(0.02):
                            await u.held.convert(Write)
                    else:
                        t = asyncio.create_task(u.held.convert(Write))
                        await settle()
                        later.append(Holder(lock, Read))  # queued behind it
                        await settle()
                        self.assertFalse(later[0].entered)
                        t.cancel()
                        await t

                with self.assertRaises((TimeoutError, asyncio.TimeoutError,
                                        asyncio.CancelledError), msg=how):
                    await convert()
                await settle()
                self.assertIs(Upgradable, u.held.mode, how)
                self.assertEqual(0, lock.waiting, how)
                for h in later:
                    self.assertTrue(h.entered, how)  # let in by the cancel
                    await h.release()
                self.assertEqual({Read: 1, Upgradable: 1}, lock.holds, how)
                await r1.release()
                await u.held.convert(Write)  # and it may convert again
                self.assertEqual({Write: 1}, lock.holds, how)
                await u.release()
                self.assertEqual({}, lock.holds, how)

        run(main())

    def test_a_conversion_cancelled_after_its_switch_turns_back_to_the_old_mode(self):
        async def main():
            lock = FifoLock()
            r = lock(Read)
            await r.__aenter__()
            u = Holder(lock, Upgradable)
            await settle()
            conv = asyncio.create_task(u.held.convert(Write))
            await settle()
            await r.__aexit__(None, None, None)  # switches u, without a task switch
            self.assertIs(Write, u.held.mode)
            self.assertEqual({Write: 1}, lock.holds)
            conv.cancel()                        # before the converting task resumed
            with self.assertRaises(asyncio.CancelledError):
                await conv
            self.assertIs(Upgradable, u.held.mode)
            self.assertEqual({Upgradable: 1}, lock.holds)
            await u.release()
            self.assertEqual({}, lock.holds)

        run(main())

    def test_closing_a_waiting_conversion_withdraws_it(self):
        async def main():
            lock = FifoLock()
            r = Holder(lock, Read)
            u = Holder(lock, Upgradable)
            await settle()
            aw = u.held.convert(Write)
            fut = aw.send(None)  # waits
            self.assertIsInstance(fut, asyncio.Future)
            self.assertEqual(1, lock.waiting)
            aw.close()
            self.assertEqual(0, lock.waiting)
            self.assertEqual({Read: 1, Upgradable: 1}, lock.holds)
            await r.release()
            await u.release()
            self.assertEqual({}, lock.holds)

        run(main())

    def test_a_python_mode_is_asked_with_the_hold_being_converted_left_out(self):
        async def main():
            lock = FifoLock()
            PyWrite.seen.clear()
            async with lock(Read) as held:
                await held.convert(PyWrite)
                self.assertEqual([{}], PyWrite.seen)
                self.assertEqual({PyWrite: 1}, lock.holds)
                await held.convert(Read)
            self.assertEqual({}, lock.holds)

        run(main())

    def test_a_conversion_whose_predicate_raises_at_once_keeps_the_old_mode(self):
        async def main():
            lock = FifoLock()
            Fussy.fail = True
            try:
                async with lock(Upgradable) as held:
                    with self.assertRaises(Boom):
                        await held.convert(Fussy)
                    self.assertIs(Upgradable, held.mode)
                    self.assertEqual({Upgradable: 1}, lock.holds)
                    self.assertEqual(0, lock.waiting)
            finally:
                Fussy.fail = False
            self.assertEqual({}, lock.holds)

        run(main())

    def test_a_waiting_conversion_whose_predicate_raises_gets_it_and_the_queue_goes_on(self):
        async def main():
            lock = FifoLock()
            r = Holder(lock, Read)
            u = Holder(lock, Upgradable)
            await settle()
            conv = asyncio.create_task(u.held.convert(Fussy))
            await settle()
            self.assertFalse(conv.done())
            r2 = Holder(lock, Read)
            await settle()
            self.assertFalse(r2.entered)
            Fussy.fail = True
            try:
                await r.release()  # the releasing task does not see it
                with self.assertRaises(Boom):
                    await conv
            finally:
                Fussy.fail = False
            await settle()
            self.assertTrue(r2.entered)
            self.assertIs(Upgradable, u.held.mode)
            self.assertEqual({Read: 1, Upgradable: 1}, lock.holds)
            await r2.release()
            await u.release()
            self.assertEqual({}, lock.holds)

        run(main())

    def test_bad_conversions_are_refused_and_change_nothing(self):
        async def main():
            lock = FifoLock()
            ctx = lock(Upgradable)
            with self.assertRaises(RuntimeError):
                ctx.convert(Write)  # outside the context
            async with ctx as held:
                self.assertIs(ctx, held)
                for bad in (42, NotAMode, "Write", None):
                    with self.assertRaises(TypeError, msg=repr(bad)):
                        await held.convert(bad)
                self.assertEqual({Upgradable: 1}, lock.holds)
            with self.assertRaises(RuntimeError):
                await held.convert(Write)  # after exit
            sem = Semaphore(3)
            async with lock(sem, n=2) as held:
                with self.assertRaises(ValueError):
                    held.convert(Mutex)
                self.assertEqual({sem: 2}, lock.holds)
            # Made inside, awaited after the exit: refused when awaited.
            async with lock(Upgradable) as held:
                aw = held.convert(Write)
            with self.assertRaises(RuntimeError):
                await aw
            self.assertEqual({}, lock.holds)
            self.assertEqual(0, lock.waiting)

        run(main())

    def test_a_context_entered_twice_at_once_may_not_convert(self):
        async def main():
            lock = FifoLock()
            ctx = lock(Read)
            async with ctx:
                async with ctx:
                    with self.assertRaises(RuntimeError):
                        ctx.convert(Write)
                # Entered once again: its own hold converts.
                await ctx.convert(Upgradable)
                self.assertEqual({Upgradable: 1}, lock.holds)
                with self.assertRaises(RuntimeError):  # converted: not re-entered
                    async with ctx:
                        pass
                self.assertEqual({Upgradable: 1}, lock.holds)
            self.assertEqual({}, lock.holds)
            async with ctx:  # usable again after its exit
                self.assertEqual({Read: 1}, lock.holds)

        run(main())

    def test_a_conversion_waiting_while_its_context_exits_is_an_error(self):
        async def main():
            lock = FifoLock()
            r = Holder(lock, Read)
            ctx = lock(Upgradable)
            await ctx.__aenter__()
            conv = asyncio.create_task(ctx.convert(Write))
            await settle()
            with self.assertRaises(RuntimeError):
                await ctx.__aexit__(None, None, None)
            self.assertEqual({Read: 1, Upgradable: 1}, lock.holds)
            await r.release()
            await conv
            await ctx.__aexit__(None, None, None)
            self.assertEqual({}, lock.holds)

        run(main())


if __name__ == "__main__":
    import unittest
    unittest.main()
