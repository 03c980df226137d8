"""A FifoLock belongs to one event loop, as asyncio's own primitives do.

Its first acquire binds it to its thread: acquiring or releasing it from any
other thread raises RuntimeError and leaves the lock as it was, instead of
waking a task on a loop that is not told. Its first wait binds it to the
running loop, as asyncio.Lock binds itself: a request that must wait under
another loop (a later one, after the first has closed) raises RuntimeError.
"""
import asyncio
import threading
import unittest

from fifolock import FifoLock, Mutex, Read, Write
from support import Test, run, settle

BOUND = "is bound to a different event loop"


class Holder:
    """A task that holds `lock` in `mode` until released."""

    def __init__(self, lock, mode):
        self.gate = asyncio.Event()
        self.entered = False
        self.task = asyncio.create_task(self._run(lock, mode))

    async def _run(self, lock, mode):
        async with lock(mode):
            self.entered = True
            await self.gate.wait()

    async def release(self):
        self.gate.set()
        await self.task


class LoopThread:
    """An event loop running in a thread of its own until stopped."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro, timeout=30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


class OtherThread(Test):
    def test_two_threads_each_with_a_loop_get_a_runtime_error_not_lost_wakeups(self):
        lock = FifoLock()
        results = {}

        def worker(name):
            async def main():
                for _ in range(2000):
                    async with lock(Mutex):
                        await asyncio.sleep(0)
                return "done"
            try:
                results[name] = asyncio.run(asyncio.wait_for(main(), 20))
            except BaseException as e:  # a timeout here is the lost wakeup
                results[name] = e

        threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertFalse(any(t.is_alive() for t in threads))
        outcomes = sorted(r if isinstance(r, str) else f"{type(r).__name__}: {r}"
                          for r in results.values())
        # The first acquire binds the lock to its thread: that thread
        # runs to the end, the other is refused at once; nobody waits for ever.
        self.assertEqual(2, len(outcomes), outcomes)
        self.assertEqual("done", outcomes[1], outcomes)
        self.assertTrue(outcomes[0].startswith("RuntimeError") and BOUND in outcomes[0],
                        outcomes)
        self.assertEqual({}, lock.holds)
        self.assertEqual(0, lock.waiting)

    def test_acquire_and_release_from_another_thread_raise_and_change_nothing(self):
        lock = FifoLock()
        other = LoopThread()
        try:
            async def hold():
                self.holder = Holder(lock, Read)
                self.waiter = Holder(lock, Write)
                await settle()

            other.call(hold())
            self.assertEqual(({Read: 1}, 1), (lock.holds, lock.waiting))

            async def misuse():
                for mode in (Read, Write, Mutex):
                    with self.assertRaisesRegex(RuntimeError, BOUND):
                        async with lock(mode):
                            self.fail("entered")
                with self.assertRaisesRegex(RuntimeError, BOUND):
                    await lock(Read).__aexit__(None, None, None)

            run(misuse())
            self.assertEqual(({Read: 1}, 1), (lock.holds, lock.waiting))

            async def finish():
                await self.holder.release()
                await settle()
                self.assertTrue(self.waiter.entered)
                await self.waiter.release()

            other.call(finish())
            self.assertEqual(({}, 0), (lock.holds, lock.waiting))
        finally:
            other.stop()

    def test_the_lock_is_bound_by_its_first_acquire_not_where_it_was_made(self):
        lock = FifoLock()
        lock(Mutex)  # making a context does not bind
        self.assertEqual(({}, 0), (lock.holds, lock.waiting))
        other = LoopThread()
        try:
            async def use():
                async with lock(Mutex):
                    return dict(lock.holds)

            self.assertEqual({Mutex: 1}, other.call(use()))
            self.assertEqual({Mutex: 1}, other.call(use()))
            # Introspection is allowed from anywhere.
            self.assertEqual(({}, 0), (lock.holds, lock.waiting))
            self.assertIn("waiting=0", repr(lock))
        finally:
            other.stop()
        with self.assertRaisesRegex(RuntimeError, BOUND):
            run(use())

    def test_a_waiter_granted_by_a_coroutine_closed_in_another_thread_is_woken(self):
        lock = FifoLock()
        entered = threading.Event()
        other = LoopThread()
        try:
            async def hold():
                async with lock(Mutex):
                    await asyncio.sleep(3600)  # the loop sleeps as long, if not woken

            async def wait():
                async with lock(Mutex):
                    entered.set()

            async def start():
                self.coro = hold()
                self.coro.send(None)  # acquired by hand, in the lock's thread
                self.waiter = asyncio.create_task(wait())
                await settle()

            other.call(start())
            self.assertEqual(({Mutex: 1}, 1), (lock.holds, lock.waiting))
            self.coro.close()  # here: releases, and grants the waiter over there
            # Nothing else wakes that loop: only the grant's own wakeup can.
            self.assertTrue(entered.wait(10), "the waiter was never woken")
            async def finish():
                await self.waiter

            other.call(finish())
            self.assertEqual(({}, 0), (lock.holds, lock.waiting))
        finally:
            other.stop()


class LaterLoop(Test):
    def test_in_one_thread_later_loops_are_refused_exactly_when_asyncio_lock_refuses(self):
        async def uncontended(cm):
            async with cm:
                pass

        async def contended(cm):
            async def take():
                async with cm:
                    await asyncio.sleep(0)
            await asyncio.gather(take(), take())

        def outcome(use, cm):
            try:
                run(use(cm))  # a new loop each time; the last one has closed
                return "ok"
            except RuntimeError as e:
                return "bound" if BOUND in str(e) else repr(e)

        # asyncio.Lock binds itself to the loop of its first wait, for ever.
        for uses in ((uncontended, uncontended, contended, uncontended, contended),
                     (contended, uncontended, contended),
                     (uncontended, contended, contended)):
            with self.subTest(uses=[u.__name__ for u in uses]):
                plain, fifo = asyncio.Lock(), FifoLock()
                expected = [outcome(use, plain) for use in uses]
                self.assertEqual(expected, [outcome(use, fifo(Mutex)) for use in uses])
                self.assertIn("bound", expected)
                self.assertEqual(({}, 0), (fifo.holds, fifo.waiting))

    def test_a_later_loop_is_refused_while_the_first_runs_on_in_another_thread(self):
        # The lock's loop running is not enough: it must run in this thread.
        lock = FifoLock()
        first = asyncio.new_event_loop()

        async def contended():
            h = Holder(lock, Mutex)
            await settle()
            acq = lock(Mutex).__aenter__()
            fut = acq.send(None)  # waits: binds the lock to this loop
            await h.release()
            self.assertTrue(fut.done())
            with self.assertRaises(StopIteration):
                acq.send(None)
            await lock(Mutex).__aexit__(None, None, None)

        first.run_until_complete(contended())  # bound to `first` and this thread
        thread = threading.Thread(target=first.run_forever, daemon=True)
        thread.start()
        try:
            with self.assertRaises(RuntimeError) as caught:
                run(contended())
            self.assertIn(BOUND, str(caught.exception))
            self.assertEqual(({}, 0), (lock.holds, lock.waiting))
        finally:
            first.call_soon_threadsafe(first.stop)
            thread.join(30)
            first.close()

    def test_a_lock_made_and_used_inside_each_run_works_every_time(self):
        async def main():
            lock = FifoLock()
            a, b = Holder(lock, Mutex), Holder(lock, Mutex)
            await settle()
            await a.release()
            await b.release()
            return lock.holds

        for _ in range(3):
            self.assertEqual({}, run(main()))

    def test_the_error_names_the_lock_and_fires_before_the_engine_is_touched(self):
        lock = FifoLock()

        async def hold_and_queue():
            self.h = Holder(lock, Mutex)
            self.w = Holder(lock, Mutex)
            await settle()

        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(hold_and_queue())

            async def other():
                await lock(Mutex).__aenter__()

            with self.assertRaises(RuntimeError) as caught:
                run(other())
            self.assertIn("FifoLock", str(caught.exception))
            self.assertIn(BOUND, str(caught.exception))
            self.assertEqual(({Mutex: 1}, 1), (lock.holds, lock.waiting))

            async def finish():
                await self.h.release()
                await self.w.release()

            loop.run_until_complete(finish())
            self.assertEqual(({}, 0), (lock.holds, lock.waiting))
        finally:
            loop.close()

    def test_a_coroutine_closed_in_another_thread_still_gives_its_hold_back(self):
        lock = FifoLock()
        holder = {}

        async def hold():
            async with lock(Mutex):
                await asyncio.sleep(3600)

        async def start():
            holder["coro"] = hold()
            holder["coro"].send(None)  # acquired; now waits in sleep()

        first = asyncio.new_event_loop()
        try:
            first.run_until_complete(start())
            self.assertEqual({Mutex: 1}, lock.holds)

            # GeneratorExit through the async with, as when the collector
            # frees a coroutine that was dropped, in whatever thread it runs.
            closer = threading.Thread(target=holder["coro"].close)
            closer.start()
            closer.join(30)
            self.assertEqual(({}, 0), (lock.holds, lock.waiting))
        finally:
            first.close()


class OwnFutures(Test):
    def check_waits_on_made(self, loop, made):
        """A queued request waits on the future the loop's create_future made."""

        async def main():
            lock = FifoLock()
            h = Holder(lock, Mutex)
            await settle()
            for _ in range(2):  # the first wait binds the loop, the next finds it bound
                acq = lock(Mutex).__aenter__()
                before = len(made)
                fut = acq.send(None)  # queued: drive it by hand
                self.assertEqual(before + 1, len(made))
                self.assertIs(made[-1], fut)
                acq.close()
            await h.release()
            return lock.holds, lock.waiting

        try:
            self.assertEqual(({}, 0), loop.run_until_complete(main()))
        finally:
            loop.close()

    def test_a_loop_that_makes_its_own_futures_makes_the_one_a_request_waits_on(self):
        made = []

        class Loop(asyncio.SelectorEventLoop):
            def create_future(self):
                made.append(super().create_future())
                return made[-1]

        self.check_waits_on_made(Loop(), made)

    def test_a_create_future_set_on_the_loop_itself_is_asked_too(self):
        made = []
        loop = asyncio.new_event_loop()
        base = loop.create_future

        def create_future():
            made.append(base())
            return made[-1]

        loop.create_future = create_future
        self.check_waits_on_made(loop, made)


if __name__ == "__main__":
    unittest.main()
