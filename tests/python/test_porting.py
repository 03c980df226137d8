"""What docs/porting.md says, line by line: where this module behaves unlike
the original `fifolock` package, and where it behaves the same although its
insides differ. (The tests of the fixes it lists live with their subject:
test_cancel.py for cancellation and raising or async predicates,
test_loops.py for the loop a lock belongs to.)"""
import asyncio
import collections
import unittest

from fifolock import FifoLock, Mutex, Read, Semaphore, Write
from support import Test, run, settle


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


class Probe(asyncio.Future):
    """Lets everybody in, and records what its holds argument says."""
    seen = []

    @staticmethod
    def is_compatible(holds):
        Probe.seen.append({
            "Read": holds[Read], "Write": holds[Write],
            "Read in": Read in holds, "Write in": Write in holds,
            "len": len(holds), "get Write": holds.get(Write),
            "copy": holds.copy(), "keys": set(holds),
        })
        return True


class HoldsArgument(Test):
    def test_holds_has_only_the_modes_held_now_even_after_a_mode_was_released(self):
        async def main():
            lock = FifoLock()
            Probe.seen.clear()
            w = Holder(lock, Write)
            await settle()
            await w.release()  # Write was held once: the original keeps a 0 for it
            r = Holder(lock, Read)
            await settle()
            async with lock(Probe):
                pass
            await r.release()
            return Probe.seen[-1]

        seen = run(main())
        self.assertEqual({
            "Read": 1, "Write": 0, "Read in": True, "Write in": False, "len": 1,
            "get Write": None, "copy": {Read: 1}, "keys": {Read},
        }, seen)

    def test_holds_copy_and_lock_holds_are_defaultdict_snapshots_reading_0_when_unheld(self):
        async def main():
            lock = FifoLock()
            Probe.seen.clear()
            r = Holder(lock, Read)
            await settle()
            async with lock(Probe):
                snapshot = lock.holds
            await r.release()
            return Probe.seen[-1]["copy"], snapshot, lock.holds

        copied, during, after = run(main())
        for name, d in (("holds.copy()", copied), ("lock.holds", during),
                        ("lock.holds when idle", after)):
            with self.subTest(name):
                self.assertIsInstance(d, collections.defaultdict)
                self.assertIs(int, d.default_factory)
                self.assertEqual(0, d[Write])  # as a predicate's holds[Write]
                self.assertEqual(0, d[Semaphore(7)])
        self.assertEqual({Read: 1, Probe: 1, Write: 0, Semaphore(7): 0}, dict(during))
        self.assertEqual({Read: 1, Write: 0, Semaphore(7): 0}, dict(copied))

    def test_lock_holds_and_the_predicates_holds_agree_on_every_mode(self):
        modes = (Read, Write, Mutex, Semaphore(2), Probe)
        seen = {}

        class Compare(asyncio.Future):
            @staticmethod
            def is_compatible(holds):
                seen.update({m: holds[m] for m in modes})
                return True

        async def main():
            lock = FifoLock()
            r1, r2 = Holder(lock, Read), Holder(lock, Read)
            s = Holder(lock, Semaphore(2))
            await settle()
            async with lock(Compare):
                snapshot = lock.holds
                from_lock = {m: snapshot[m] for m in modes}
            for h in (r1, r2, s):
                await h.release()
            return from_lock

        from_lock = run(main())
        self.assertEqual(seen, from_lock)
        self.assertEqual({Read: 2, Write: 0, Mutex: 0, Semaphore(2): 1, Probe: 0}, seen)

    def test_holds_cannot_be_changed_by_a_predicate(self):
        tries = []

        class Meddler(asyncio.Future):
            @staticmethod
            def is_compatible(holds):
                for change in (lambda: holds.__setitem__(Read, 0),
                               lambda: holds.__delitem__(Read),
                               lambda: holds.pop(Read),
                               lambda: holds.clear()):
                    try:
                        change()
                        tries.append("changed")
                    except (TypeError, AttributeError):
                        tries.append("refused")
                return True

        async def main():
            lock = FifoLock()
            r = Holder(lock, Read)
            await settle()
            async with lock(Meddler):
                self.assertEqual({Read: 1, Meddler: 1}, lock.holds)
            await r.release()

        run(main())
        self.assertEqual(["refused"] * 4, tries)


class ModeClasses(Test):
    def test_static_and_class_method_modes_are_never_instantiated(self):
        made = []

        class Counted(asyncio.Future):
            def __init__(self, *args, **kwargs):
                made.append(self)
                super().__init__(*args, **kwargs)

            @staticmethod
            def is_compatible(holds):
                return not holds[Counted]

        class CountedSub(Counted):
            @classmethod
            def is_compatible(cls, holds):
                return not holds[cls]

        async def main():
            lock = FifoLock()
            for mode in (Counted, CountedSub):
                for _ in range(3):
                    async with lock(mode):
                        pass

        run(main())
        self.assertEqual([], made)

    def test_a_plain_method_mode_is_instantiated_once_per_lock_not_per_acquire(self):
        made = []

        class Plain(asyncio.Future):
            def __init__(self, *args, **kwargs):
                made.append(self)
                super().__init__(*args, **kwargs)

            def is_compatible(self, holds):
                return not holds[Plain]

        async def main():
            for _ in range(2):
                lock = FifoLock()
                cm = lock(Plain)
                self.assertEqual(0, len(made))  # not at lock(Mode)
                for _ in range(3):
                    async with cm:
                        pass
                await asyncio.gather(*(Holder(lock, Plain).release() for _ in range(3)))
                self.assertEqual(1, len(made))
                made.clear()

        run(main())

    def test_a_mode_need_not_be_a_future_nor_take_no_arguments(self):
        class NotAFuture:
            def __init__(self, size):
                self.size = size

            @staticmethod
            def is_compatible(holds):
                return not holds[NotAFuture]

        async def main():
            lock = FifoLock()
            async with lock(NotAFuture):
                self.assertEqual({NotAFuture: 1}, lock.holds)

        run(main())

    def test_the_head_is_asked_again_after_a_release_not_at_each_new_request(self):
        # A request refused as it comes is asked once more, as on an empty
        # lock: could it ever fit? (A mode that refuses an empty lock would
        # wait for ever: DeadlockError instead.)
        asked = []

        class Counted(asyncio.Future):
            @staticmethod
            def is_compatible(holds):
                asked.append(dict(holds))
                return not holds[Mutex]

        async def main():
            lock = FifoLock()
            m = Holder(lock, Mutex)
            await settle()
            head = Holder(lock, Counted)
            await settle()
            self.assertEqual([{Mutex: 1}, {}], asked)  # as it came, and could it ever
            behind = [Holder(lock, Mutex) for _ in range(3)]
            await settle()
            self.assertEqual(2, len(asked))  # new requests do not ask the head
            await m.release()
            await settle()
            self.assertEqual([{Mutex: 1}, {}, {}], asked)
            self.assertTrue(head.entered)
            await head.release()
            for h in behind:
                await h.release()

        run(main())


class ContextObjects(Test):
    def test_one_lock_mode_object_serves_any_number_of_async_with_in_turn_or_at_once(self):
        async def main():
            lock = FifoLock()
            cm = lock(Read)
            for _ in range(3):
                async with cm:
                    async with cm:
                        self.assertEqual({Read: 2}, lock.holds)
            self.assertEqual({}, lock.holds)

        run(main())


if __name__ == "__main__":
    unittest.main()


class ComparedWithAsyncioLock(Test):
    def test_a_release_hands_the_lock_to_the_first_waiter_before_it_resumes(self):
        # asyncio.Lock: locked() is False from the release until the woken
        # waiter runs, and a task that acquires in between barges in.
        # FifoLock: the waiter holds from the release on (docs/porting.md).
        async def main():
            lock = FifoLock()
            order = []
            held = lock(Mutex)
            await held.__aenter__()

            async def waiter(name):
                async with lock(Mutex):
                    order.append(name)

            w = asyncio.create_task(waiter("waiter"))
            await settle()
            self.assertEqual(1, lock.waiting)
            await held.__aexit__(None, None, None)  # returns without a loop turn
            self.assertFalse(w.done())  # the waiter has not run yet
            self.assertEqual({Mutex: 1}, lock.holds)  # handed over already
            self.assertEqual(0, lock.waiting)
            late = asyncio.create_task(waiter("late"))  # can't barge in
            await asyncio.gather(w, late)
            self.assertEqual(["waiter", "late"], order)
            self.assertEqual({}, lock.holds)

            # asyncio.Lock, for contrast: free between the release and the turn
            alock = asyncio.Lock()
            await alock.acquire()
            t = asyncio.create_task(alock.acquire())
            await settle()
            alock.release()
            self.assertFalse(alock.locked())
            await t
            alock.release()

        run(main())
