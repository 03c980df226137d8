"""Random runs of FifoLock against a plain model of the lock's rules (README, "The rules").

The model is the specification, written as simply as possible: a list of
waiters, a Counter of holds, and the grant rule ("while the head's mode is
compatible with the holds, grant it"). Each run mixes ready-made modes (C
predicates) and Python modes of every kind, and random acquires, releases,
cancels while waiting, cancels right after a grant, and predicates that
raise. After every step the lock and the model must agree on who holds,
who waits, and who failed.
"""
import asyncio
import collections
import os
import random
import sys
import unittest

from fifolock import (FifoLock, IS, IX, S, SIX, X, Mutex, Read, Semaphore,
                      SemaphoreBase, Write)


class PyRead(asyncio.Future):
    @staticmethod
    def is_compatible(holds):
        return not holds[PyWrite] and not holds[Write]


class PyWrite(asyncio.Future):
    @staticmethod
    def is_compatible(holds):
        return not (holds[PyRead] or holds[PyWrite] or holds[Read] or holds[Write])


PySem3 = type("PySem3", (SemaphoreBase,), {"size": 3})


class Plain(asyncio.Future):
    def is_compatible(self, holds):
        return holds[Plain] < 2 and not holds[X]


FAILING = set()  # modes whose predicate raises right now


class Fails(asyncio.Future):
    @staticmethod
    def is_compatible(holds):
        if Fails in FAILING:
            raise LookupError("Fails failed")
        return not holds[Fails] and not holds[Mutex]


MODES = [Mutex, Read, Write, IS, IX, S, SIX, X, Semaphore(2),
         PyRead, PyWrite, PySem3, Plain, Fails]


class Model:
    def __init__(self, instances):
        self.queue = []                      # [(client, mode)]
        self.holds = collections.Counter()
        self.holders = {}                    # client -> mode
        self.failed = set()
        self.instances = instances           # mode -> an instance, for plain methods

    def compatible(self, mode):
        holds = collections.defaultdict(int, self.holds)
        return self.instances[mode].is_compatible(holds)

    def ask(self, mode):
        """is_compatible, with "raised" counting as yes (the waiter then fails)."""
        try:
            return bool(self.compatible(mode)), False
        except LookupError:
            return True, True

    def grant(self):
        while self.queue:
            client, mode = self.queue[0]
            ok, raised = self.ask(mode)
            if not ok:
                break
            self.queue.pop(0)
            if raised:
                self.failed.add(client)
            else:
                self.holds[mode] += 1
                self.holders[client] = mode

    def acquire(self, client, mode):
        if not self.queue:
            ok, raised = self.ask(mode)
            if ok:
                if raised:
                    self.failed.add(client)
                else:
                    self.holds[mode] += 1
                    self.holders[client] = mode
                return
        # Before it queues: could it ever fit? (asked on an empty lock; a
        # request that could not is refused with DeadlockError, a raise
        # fails it at once)
        try:
            ever = bool(self.instances[mode].is_compatible(collections.defaultdict(int)))
        except LookupError:
            ever = False
        if not ever:
            self.failed.add(client)
            return
        self.queue.append((client, mode))

    def release(self, client):
        mode = self.holders.pop(client)
        self.holds[mode] -= 1
        if not self.holds[mode]:
            del self.holds[mode]
        self.grant()

    def cancel(self, client):
        for i, (c, _) in enumerate(self.queue):
            if c == client:
                del self.queue[i]
                if i == 0:  # only a new head can be compatible
                    self.grant()
                return
        self.release(client)  # granted but not resumed: gives it back


class Client:
    def __init__(self, lock, mode, name):
        self.name = name
        self.mode = mode
        self.gate = asyncio.Event()
        self.entered = False
        self.victim = None
        self.task = asyncio.create_task(self.run(lock))

    async def run(self, lock):
        async with lock(self.mode):
            self.entered = True
            await self.gate.wait()
        if self.victim is not None:
            self.victim.task.cancel()  # in the same step as the release


async def settle(steps=8):
    for _ in range(steps):
        await asyncio.sleep(0)

def run(coro, timeout=30):
    """asyncio.run, failing instead of hanging if the lock deadlocks."""
    return asyncio.run(asyncio.wait_for(coro, timeout))



class ModelTest(unittest.TestCase):
    def setUp(self):
        self.unraisable = []
        self.old_hook = sys.unraisablehook
        sys.unraisablehook = self.unraisable.append

    def tearDown(self):
        sys.unraisablehook = self.old_hook
        FAILING.clear()
        self.assertEqual([], [repr(u.exc_value) for u in self.unraisable])

    async def one_run(self, seed, steps):
        rng = random.Random(seed)
        lock = FifoLock()
        model = Model({m: m(loop=asyncio.get_running_loop()) for m in MODES})
        clients = {}
        names = iter(range(10**9))

        def check(what):
            holding = {c.name for c in clients.values()
                       if c.entered and not c.task.done()}
            self.assertEqual(set(model.holders), holding, f"seed {seed}: {what}")
            self.assertEqual(dict(model.holds), lock.holds, f"seed {seed}: {what}")
            self.assertEqual(len(model.queue), lock.waiting, f"seed {seed}: {what}")
            failed = {c.name for c in clients.values() if c.task.done()
                      and not c.task.cancelled() and c.task.exception() is not None}
            self.assertEqual(model.failed, failed, f"seed {seed}: {what}")

        for step in range(steps):
            holders = [clients[n] for n in model.holders]
            waiters = [clients[n] for n, _ in model.queue]
            r = rng.random()
            if r < 0.45 or not (holders or waiters):
                mode = rng.choice(MODES)
                name = next(names)
                what = f"step {step}: acquire {name} {mode.__name__}"
                model.acquire(name, mode)
                clients[name] = Client(lock, mode, name)
            elif r < 0.75 and holders:
                c = rng.choice(holders)
                what = f"step {step}: release {c.name}"
                model.release(c.name)
                c.gate.set()
            elif r < 0.85 and waiters:
                c = rng.choice(waiters)
                what = f"step {step}: cancel waiting {c.name}"
                model.cancel(c.name)
                c.task.cancel()
            elif r < 0.95 and holders and waiters:
                # Release, and in the same step cancel a waiter: maybe one
                # that release just granted, before it could run.
                c = rng.choice(holders)
                v = rng.choice(waiters)
                what = f"step {step}: release {c.name} and cancel {v.name}"
                model.release(c.name)
                model.cancel(v.name)
                c.victim = v
                c.gate.set()
            else:
                what = f"step {step}: Fails {'ok' if Fails in FAILING else 'raises'}"
                # Nothing changes on the lock, so nothing is asked until the
                # next change (predicates are meant to be pure: this one is
                # not, which shows exactly when they run).
                FAILING.symmetric_difference_update({Fails})
            await settle()
            check(what)

        FAILING.clear()
        for c in list(clients.values()):
            c.gate.set()
            if not c.entered:
                c.task.cancel()
        await asyncio.gather(*(c.task for c in clients.values()), return_exceptions=True)
        self.assertEqual({}, lock.holds)
        self.assertEqual(0, lock.waiting)

    def test_random_runs_agree_with_the_model(self):
        runs = int(os.environ.get("FIFOLOCK_MODEL_RUNS", "60"))
        for seed in range(runs):
            run(self.one_run(seed, 120))


if __name__ == "__main__":
    unittest.main()
