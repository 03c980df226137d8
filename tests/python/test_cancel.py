"""Cancellation, timeouts and exceptions raised by is_compatible."""
import asyncio
import gc
import logging
import sys
import unittest
import warnings

from fifolock import FifoLock, IS, IX, Mutex, Read, S, Write, X
from support import Test, run, settle


class TrackedLock(FifoLock):
    """A FifoLock whose instances the tests can count. (A weak reference
    would not do: the collector clears those of all unreachable objects,
    even of those it then fails to free.)"""


def live_objects(*type_names):
    gc.collect()
    gc.collect()
    return [o for o in gc.get_objects() if type(o).__name__ in type_names
            and type(o).__module__ in ("fifolock", "fifolock._fifolock", __name__)]


class Holder:
    """A task that holds `lock` in `mode` until released."""

    def __init__(self, lock, mode, log=None, name=None):
        self.gate = asyncio.Event()
        self.entered = False
        self.log = log
        self.name = name
        self.before_release = None
        self.after_release = None
        self.task = asyncio.create_task(self._run(lock, mode))

    async def _run(self, lock, mode):
        async with lock(mode):
            self.entered = True
            if self.log is not None:
                self.log.append(self.name)
            await self.gate.wait()
            if self.before_release is not None:
                self.before_release()  # same step as the release
        if self.after_release is not None:
            self.after_release()  # same step as the release: nobody ran yet

    async def release(self):
        self.gate.set()
        await self.task


class UserMutex(asyncio.Future):
    @staticmethod
    def is_compatible(holds):
        return not holds[UserMutex]


class BehindMutex(asyncio.Future):
    @staticmethod
    def is_compatible(holds):
        return not holds[Mutex]


class CancelWhileWaiting(Test):
    def test_a_cancelled_waiter_leaves_the_queue_and_the_rest_keep_their_order(self):
        async def main():
            lock = FifoLock()
            log = []
            h = Holder(lock, Mutex, log, "h")
            await settle()
            ws = [Holder(lock, Mutex, log, f"w{i}") for i in range(4)]
            await settle()
            self.assertEqual(4, lock.waiting)
            ws[1].task.cancel()
            ws[3].task.cancel()
            await settle()
            self.assertEqual(2, lock.waiting)
            self.assertTrue(ws[1].task.cancelled())
            await h.release()
            await ws[0].release()
            await ws[2].release()
            self.assertEqual(["h", "w0", "w2"], log)
            self.assertEqual({}, lock.holds)
            self.assertEqual(0, lock.waiting)

        run(main())

    def test_cancelled_waiting_write_lets_queued_reads_through_at_once(self):
        for write in (Write, X):
            with self.subTest(write=write):
                read = Read if write is Write else IS

                async def main():
                    lock = FifoLock()
                    r0 = Holder(lock, read)
                    await settle()
                    w = Holder(lock, write)
                    await settle()
                    rs = [Holder(lock, read) for _ in range(3)]
                    await settle()
                    self.assertEqual(4, lock.waiting)
                    self.assertFalse(any(r.entered for r in rs))
                    w.task.cancel()
                    await settle()
                    # r0 still holds: the readers came in because w left.
                    self.assertFalse(r0.task.done())
                    self.assertTrue(all(r.entered for r in rs))
                    self.assertEqual({read: 4}, lock.holds)
                    self.assertEqual(0, lock.waiting)
                    self.assertTrue(w.task.cancelled())
                    for r in [r0] + rs:
                        await r.release()
                    self.assertEqual({}, lock.holds)

                run(main())

    def test_a_cancelled_user_mode_head_unblocks_the_waiters_behind(self):
        class Excl(asyncio.Future):
            @staticmethod
            def is_compatible(holds):
                return not holds[Excl] and not holds[Shared]

        class Shared(asyncio.Future):
            @staticmethod
            def is_compatible(holds):
                return not holds[Excl]

        async def main():
            lock = FifoLock()
            s0 = Holder(lock, Shared)
            await settle()
            e = Holder(lock, Excl)
            await settle()
            ss = [Holder(lock, Shared) for _ in range(2)]
            await settle()
            e.task.cancel()
            await settle()
            self.assertTrue(all(s.entered for s in ss))
            self.assertEqual({Shared: 3}, lock.holds)
            for s in [s0] + ss:
                await s.release()

        run(main())

    def test_closing_a_waiting_coroutine_leaves_the_queue(self):
        async def user(lock):
            async with lock(Mutex):
                pass

        async def main():
            lock = FifoLock()
            h = Holder(lock, Mutex)
            await settle()
            coro = user(lock)
            fut = coro.send(None)  # drive it by hand: it queues and yields
            self.assertIsInstance(fut, asyncio.Future)
            self.assertEqual(1, lock.waiting)
            coro.close()
            self.assertEqual(0, lock.waiting)
            await h.release()
            self.assertEqual({}, lock.holds)

        run(main())


class CancelAfterGrant(Test):
    def test_a_task_granted_but_cancelled_before_it_resumed_gives_the_hold_back(self):
        for mode in (Mutex, UserMutex):
            with self.subTest(mode=mode):
                async def main():
                    lock = FifoLock()
                    log = []
                    h = Holder(lock, mode, log, "h")
                    await settle()
                    v = Holder(lock, mode, log, "v")
                    w = Holder(lock, mode, log, "w")
                    await settle()
                    states = []

                    def cancel_victim():
                        # Released a moment ago: v was granted, has not run.
                        states.append((dict(lock.holds), lock.waiting))
                        v.task.cancel()

                    h.after_release = cancel_victim
                    await h.release()
                    self.assertEqual([({mode: 1}, 1)], states)
                    await settle()
                    self.assertTrue(v.task.cancelled())
                    self.assertTrue(w.entered)
                    self.assertEqual({mode: 1}, lock.holds)
                    await w.release()
                    self.assertEqual(["h", "w"], log)
                    self.assertEqual({}, lock.holds)
                    self.assertEqual(0, lock.waiting)

                run(main())

    def test_a_waiter_cancelled_just_before_its_grant_gives_the_hold_back_at_once(self):
        for mode in (Mutex, UserMutex):
            with self.subTest(mode=mode):
                async def main():
                    lock = FifoLock()
                    h = Holder(lock, mode)
                    await settle()
                    v = Holder(lock, mode)
                    w = Holder(lock, mode)
                    await settle()
                    # v's task is cancelled, has not run, and is granted in
                    # the same step: it can't be told, so the hold moves on.
                    h.before_release = v.task.cancel
                    await h.release()
                    self.assertEqual({mode: 1}, lock.holds)
                    self.assertEqual(0, lock.waiting)
                    await settle()
                    self.assertTrue(v.task.cancelled())
                    self.assertTrue(w.entered)
                    await w.release()
                    self.assertEqual({}, lock.holds)

                run(main())

    def test_cancel_after_grant_of_a_shared_mode_gives_back_only_its_own_hold(self):
        async def main():
            lock = FifoLock()
            w = Holder(lock, Write)
            await settle()
            rs = [Holder(lock, Read) for _ in range(3)]
            await settle()
            w.after_release = lambda: rs[1].task.cancel()
            await w.release()
            await settle()
            self.assertTrue(rs[1].task.cancelled())
            self.assertTrue(rs[0].entered and rs[2].entered)
            self.assertEqual({Read: 2}, lock.holds)
            await rs[0].release()
            await rs[2].release()
            self.assertEqual({}, lock.holds)

        run(main())


class Timeouts(Test):
    def test_wait_for_around_async_with_times_out_and_leaves_nothing(self):
        async def user(lock, mode):
            async with lock(mode):
                pass

        async def main():
            lock = FifoLock()
            for mode in (Mutex, UserMutex):
                h = Holder(lock, mode)
                await settle()
                with self.assertRaises(asyncio.TimeoutError):
                    await asyncio.wait_for(user(lock, mode), 0.01)
                self.assertEqual(0, lock.waiting)
                self.assertEqual({mode: 1}, lock.holds)
                await h.release()
                await asyncio.wait_for(user(lock, mode), 1)
                self.assertEqual({}, lock.holds)

        run(main())

    def test_wait_for_around_aenter_times_out_or_acquires(self):
        async def main():
            lock = FifoLock()
            h = Holder(lock, Mutex)
            await settle()
            cm = lock(Mutex)
            with self.assertRaises(asyncio.TimeoutError):
                await asyncio.wait_for(cm.__aenter__(), 0.01)
            self.assertEqual(0, lock.waiting)
            await h.release()
            await asyncio.wait_for(cm.__aenter__(), 1)
            self.assertEqual({Mutex: 1}, lock.holds)
            await cm.__aexit__(None, None, None)
            self.assertEqual({}, lock.holds)

        run(main())

    @unittest.skipUnless(hasattr(asyncio, "timeout"), "asyncio.timeout is 3.11+")
    def test_asyncio_timeout_around_acquire(self):
        async def main():
            lock = FifoLock()
            for mode in (Write, UserMutex):
                h = Holder(lock, mode)
                await settle()
                with self.assertRaises(TimeoutError):
                    async with asyncio.timeout(0.01):
                        async with lock(mode):
                            self.fail("acquired a held lock")
                self.assertEqual(0, lock.waiting)
                await h.release()
                async with asyncio.timeout(1):
                    async with lock(mode):
                        self.assertEqual({mode: 1}, lock.holds)
                self.assertEqual({}, lock.holds)

        run(main())

    def test_thousands_of_timed_out_waiters_leave_nothing_behind(self):
        async def user(lock, mode):
            async with lock(mode):
                pass

        class AfterX(asyncio.Future):
            @staticmethod
            def is_compatible(holds):
                return not holds[X]

        async def main():
            lock = TrackedLock()
            h = Holder(lock, X)
            await settle()
            modes = (IS, X, AfterX, S)  # none compatible with X
            results = await asyncio.gather(
                *(asyncio.wait_for(user(lock, modes[i % 4]), 0.02) for i in range(2000)),
                return_exceptions=True)
            self.assertEqual([], [r for r in results if not isinstance(r, asyncio.TimeoutError)])
            self.assertEqual(0, lock.waiting)
            self.assertEqual({X: 1}, lock.holds)
            await h.release()

        run(main())
        self.assertEqual([], live_objects("TrackedLock", "Acquire", "LockContext"))


class PredicateRaises(Test):
    def test_on_a_free_lock_the_acquiring_task_gets_it_and_the_lock_stays_free(self):
        class Bad(asyncio.Future):
            @staticmethod
            def is_compatible(holds):
                raise ValueError("bad predicate")

        async def main():
            lock = FifoLock()
            with self.assertRaisesRegex(ValueError, "bad predicate"):
                async with lock(Bad):
                    self.fail("entered")
            self.assertEqual({}, lock.holds)
            self.assertEqual(0, lock.waiting)
            async with lock(Mutex):
                self.assertEqual({Mutex: 1}, lock.holds)

        run(main())

    def test_at_the_head_only_its_own_task_gets_it_and_the_queue_goes_on(self):
        armed = []

        class Bad(asyncio.Future):
            @staticmethod
            def is_compatible(holds):
                if holds[X] or not armed:  # "could it ever fit?" as it queues: yes
                    return not holds[X]
                raise ValueError("bad at head")

        async def main():
            lock = FifoLock()
            log = []
            a = Holder(lock, X, log, "a")
            await settle()
            b = Holder(lock, Bad, log, "b")
            c = Holder(lock, IS, log, "c")
            d = Holder(lock, IX, log, "d")
            await settle()
            self.assertEqual(3, lock.waiting)
            armed.append(True)
            await a.release()  # runs Bad's predicate: a is not affected
            await settle()
            with self.assertRaisesRegex(ValueError, "bad at head"):
                await b.task
            self.assertTrue(c.entered and d.entered)
            self.assertEqual({IS: 1, IX: 1}, lock.holds)
            self.assertEqual(0, lock.waiting)
            await c.release()
            await d.release()
            self.assertEqual(["a", "c", "d"], log)
            self.assertEqual({}, lock.holds)

        run(main())

    def test_raised_in_the_grant_loop_of_a_cancel(self):
        class Bad(asyncio.Future):
            @staticmethod
            def is_compatible(holds):
                raise KeyError("bad after cancel")

        async def main():
            lock = FifoLock()
            s = Holder(lock, S)
            await settle()
            x = Holder(lock, X)
            await settle()
            b = Holder(lock, Bad)
            c = Holder(lock, IS)
            await settle()
            x.task.cancel()
            await settle()
            with self.assertRaisesRegex(KeyError, "bad after cancel"):
                await b.task
            self.assertTrue(c.entered)
            self.assertEqual({S: 1, IS: 1}, lock.holds)
            await s.release()
            await c.release()
            self.assertEqual({}, lock.holds)

        run(main())

    def test_a_failing_bool_of_the_answer_counts_as_raising(self):
        class Answer:
            def __bool__(self):
                raise ArithmeticError("no answer")

        class Odd(asyncio.Future):
            @staticmethod
            def is_compatible(holds):
                return Answer()

        async def main():
            lock = FifoLock()
            with self.assertRaisesRegex(ArithmeticError, "no answer"):
                async with lock(Odd):
                    pass
            self.assertEqual({}, lock.holds)

        run(main())

    def test_a_raising_head_that_was_already_cancelled_just_goes(self):
        raising = False

        class Flaky(asyncio.Future):
            @staticmethod
            def is_compatible(holds):
                if raising:
                    raise ValueError("flaky")
                return not holds[Mutex]

        async def main():
            nonlocal raising
            lock = FifoLock()
            m = Holder(lock, Mutex)
            await settle()
            f = Holder(lock, Flaky)
            n = Holder(lock, Mutex)
            await settle()
            raising = True
            # Cancel f and release in the same step: f's predicate raises for
            # a waiter whose task is already cancelled.
            m.before_release = f.task.cancel
            await m.release()
            self.assertEqual({Mutex: 1}, lock.holds)  # n, at once
            await settle()
            self.assertTrue(f.task.cancelled())
            self.assertTrue(n.entered)
            await n.release()
            self.assertEqual({}, lock.holds)
            self.assertEqual(0, lock.waiting)

        run(main())

    def test_a_predicate_may_not_acquire_or_release_the_lock_it_is_asked_about(self):
        async def main():
            lock = FifoLock()
            attempts = []

            class Reentrant(asyncio.Future):
                @staticmethod
                def is_compatible(holds):
                    try:
                        lock(Mutex).__aenter__().send(None)
                    except RuntimeError as e:
                        attempts.append(("acquire", str(e)))
                    try:
                        lock(Mutex).__aexit__(None, None, None)
                    except RuntimeError as e:
                        attempts.append(("release", str(e)))

                    # Reading is fine.
                    attempts.append(("read", lock.waiting, dict(lock.holds)))
                    return True

            async with lock(Reentrant):
                pass
            self.assertEqual("acquire", attempts[0][0])
            self.assertIn("must not", attempts[0][1])
            self.assertEqual("release", attempts[1][0])
            self.assertEqual(("read", 0, {}), attempts[2])
            self.assertEqual({}, lock.holds)

            class Raises(asyncio.Future):
                @staticmethod
                def is_compatible(holds):
                    lock(Mutex).__aexit__(None, None, None)

            m = Holder(lock, Mutex)
            await settle()
            with self.assertRaises(RuntimeError):
                async with lock(Raises):
                    pass
            self.assertEqual({Mutex: 1}, lock.holds)
            await m.release()

        run(main())

    def test_an_acquisition_dropped_inside_a_predicate_is_finished_after_it(self):
        garbage = []
        seen = []

        async def main():
            lock = FifoLock()

            class Dropper(asyncio.Future):
                @staticmethod
                def is_compatible(holds):
                    # Drops the last reference to a granted acquisition of
                    # Mutex: its hold must not be given back in here.
                    before = holds[Mutex]
                    garbage.clear()
                    seen.append((before, holds[Mutex]))
                    return not holds[Mutex]

            h = Holder(lock, Mutex)
            await settle()
            acq = lock(Mutex).__aenter__()
            fut = acq.send(None)  # queued behind h
            self.assertEqual(1, lock.waiting)
            d = Holder(lock, Dropper)
            await settle()
            self.assertEqual(2, lock.waiting)
            garbage.append(acq)
            del acq
            await h.release()  # grants acq, then asks Dropper
            self.assertTrue(fut.done())
            await settle()
            self.assertTrue(d.entered)
            self.assertEqual({Dropper: 1}, lock.holds)
            await d.release()
            self.assertEqual({}, lock.holds)

        run(main())
        self.assertIn((1, 1), seen)  # the hold outlived the predicate call
        self.assertEqual((0, 0), seen[-1])


class Awaitable:
    def __await__(self):
        yield


async def async_answer(holds):
    return True


class AsyncStatic(asyncio.Future):
    @staticmethod
    async def is_compatible(holds):
        return not holds[AsyncStatic]


class AsyncClass(asyncio.Future):
    @classmethod
    async def is_compatible(cls, holds):
        return not holds[cls]


class AsyncPlain(asyncio.Future):
    async def is_compatible(self, holds):
        return not holds[AsyncPlain]


class ReturnsCoroutine(asyncio.Future):
    is_compatible = staticmethod(async_answer)


class ReturnsAwaitable(asyncio.Future):
    @staticmethod
    def is_compatible(holds):
        return Awaitable()


class ReturnsGenerator(asyncio.Future):
    @staticmethod
    def is_compatible(holds):
        yield True


ASYNC_MODES = (AsyncStatic, AsyncClass, AsyncPlain, ReturnsCoroutine, ReturnsAwaitable,
               ReturnsGenerator)


class AsyncPredicate(Test):
    """An is_compatible that answers with an awaitable (an async def, most
    often) is refused: a coroutine object is true, so taking it for the
    answer would let everybody in."""

    def setUp(self):
        super().setUp()
        self.warnings = warnings.catch_warnings(record=True)
        self.caught = self.warnings.__enter__()
        warnings.simplefilter("always")

    def tearDown(self):
        gc.collect()  # a coroutine left unawaited warns when it is freed
        self.warnings.__exit__(None, None, None)
        self.assertEqual([], [str(w.message) for w in self.caught])
        super().tearDown()

    def test_on_a_free_lock_it_is_a_type_error_in_the_acquiring_task(self):
        async def main():
            lock = FifoLock()
            for mode in ASYNC_MODES:
                with self.subTest(mode=mode.__name__):
                    with self.assertRaisesRegex(TypeError, mode.__name__ + ".*awaitable"):
                        async with lock(mode):
                            self.fail("entered")
                    self.assertEqual({}, lock.holds)
                    self.assertEqual(0, lock.waiting)
            async with lock(Mutex):
                self.assertEqual({Mutex: 1}, lock.holds)

        run(main())

    def test_asked_as_they_queue_only_their_own_tasks_get_it_and_the_queue_goes_on(self):
        async def main():
            lock = FifoLock()
            log = []
            x = Holder(lock, X, log, "x")
            await settle()
            first = Holder(lock, IS, log, "is")  # so that the others queue
            waiters = [Holder(lock, mode, log, mode.__name__) for mode in ASYNC_MODES]
            s1, s2 = Holder(lock, S, log, "s1"), Holder(lock, S, log, "s2")
            await settle()
            # asked as they queue whether they could ever fit: refused at once
            for h in waiters:
                with self.assertRaisesRegex(TypeError, "awaitable"):
                    await h.task
            self.assertEqual(3, lock.waiting)
            await x.release()  # x is not affected
            await settle()
            self.assertEqual({IS: 1, S: 2}, lock.holds)
            self.assertEqual(0, lock.waiting)
            for h in (first, s1, s2):
                await h.release()
            self.assertEqual(["x", "is", "s1", "s2"], log)
            self.assertEqual({}, lock.holds)

        run(main())

    def test_the_refused_coroutines_are_closed_not_left_to_warn(self):
        made = []

        class Tracked(asyncio.Future):
            @staticmethod
            def is_compatible(holds):
                made.append(async_answer(holds))
                return made[-1]

        async def main():
            lock = FifoLock()
            with self.assertRaises(TypeError):
                async with lock(Tracked):
                    pass

        run(main())
        self.assertEqual(1, len(made))
        self.assertIsNone(made[0].cr_frame)  # closed
        with self.assertRaises(RuntimeError):
            made[0].send(None)  # "cannot reuse already awaited coroutine"


class Abandoned(Test):
    def test_an_acquisition_dropped_after_its_grant_gives_the_hold_back(self):
        async def main():
            lock = FifoLock()
            h = Holder(lock, Mutex)
            await settle()
            acq = lock(Mutex).__aenter__()
            fut = acq.send(None)  # queued: drive it by hand, then lose it
            w = Holder(lock, Mutex)
            await settle()
            await h.release()
            self.assertTrue(fut.done())  # granted, never resumed
            self.assertEqual({Mutex: 1}, lock.holds)
            del acq
            self.assertEqual({Mutex: 1}, lock.holds)  # now w's
            await settle()
            self.assertTrue(w.entered)
            await w.release()
            self.assertEqual({}, lock.holds)

        run(main())

    def test_a_dropped_grant_gives_its_hold_back_after_the_collector_finalized_others(self):
        # A lock reuses the memory of a finished acquisition for the next; one
        # the collector has finalized must not be reused: CPython would not run
        # the finalizer of the next use, which gives a dropped grant back.
        kept = []

        class Keeper:
            def __del__(self):
                kept.append(self.acq)  # the finalized acquisition outlives the cycle

        async def main():
            lock = FifoLock()
            for _ in range(3):
                acq = lock(Mutex).__aenter__()
                held = await acq
                await held.__aexit__(None, None, None)
                keeper = Keeper()
                keeper.acq, keeper.cycle = acq, keeper
                del acq, keeper
                gc.collect()  # finalizes both; Keeper's finalizer keeps acq
                self.assertTrue(gc.is_finalized(kept[0]))
                kept.clear()  # the finalized acquisition is freed here
                async with lock(Mutex):
                    acq = lock(Mutex).__aenter__()
                    self.assertFalse(gc.is_finalized(acq))
                    fut = acq.send(None)  # queued: drive it by hand, then lose it
                self.assertTrue(fut.done())  # granted, never resumed
                self.assertEqual({Mutex: 1}, lock.holds)
                del acq
                self.assertEqual(({}, 0), (lock.holds, lock.waiting))

        run(main())

    def test_a_held_lock_with_waiters_on_a_closed_loop_is_collected(self):
        def start():
            loop = asyncio.new_event_loop()
            lock = TrackedLock()

            async def hold_forever():
                await lock(Mutex).__aenter__()  # never released

            async def wait(mode):
                async with lock(mode):
                    pass

            loop.run_until_complete(hold_forever())
            tasks = [loop.create_task(wait(m)) for m in (Mutex, BehindMutex, Mutex)]
            loop.run_until_complete(asyncio.sleep(0.01))
            self.assertEqual(3, lock.waiting)
            # And one driven by hand, with no coroutine to close it.
            acq = lock(Mutex).__aenter__()
            loop.run_until_complete(self.send_once(acq))
            self.assertEqual(4, lock.waiting)
            loop.close()
            del tasks, acq

        logger = logging.getLogger("asyncio")
        old = logger.disabled
        logger.disabled = True  # "Task was destroyed but it is pending!"
        try:
            start()
            alive = live_objects("TrackedLock", "Acquire", "LockContext")
        finally:
            logger.disabled = old
        self.assertEqual([], alive)

    @staticmethod
    async def send_once(acq):
        acq.send(None)

    def test_a_lock_with_tasks_waiting_on_a_closed_loop_is_collected(self):
        holders = []

        async def user(lock, mode):
            async with lock(mode):
                await asyncio.sleep(3600)

        def start():
            loop = asyncio.new_event_loop()
            lock = TrackedLock()
            for mode in (Mutex, UserMutex, Mutex, UserMutex, Read):
                holders.append(loop.create_task(user(lock, mode)))
            loop.run_until_complete(asyncio.sleep(0.01))
            self.assertEqual(3, lock.waiting)
            loop.close()

        logger = logging.getLogger("asyncio")
        old = logger.disabled
        logger.disabled = True  # "Task was destroyed but it is pending!"
        try:
            start()
            holders.clear()
            alive = live_objects("TrackedLock", "Acquire", "LockContext")
        finally:
            logger.disabled = old
        self.assertEqual([], alive)


if __name__ == "__main__":
    unittest.main()
