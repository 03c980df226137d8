#!/usr/bin/env python3
"""Speed of the fifolock Python module against its anchors.

    PYTHONPATH=<dir with the built fifolock package> python3 bench/bench_python.py [--quick]

Every case runs in one process on one event loop; the implementations are
interleaved within each repeat and each time is the median of the repeats
(the machine is shared and noisy: read the ratios, not the absolute times).

Anchors:
  asyncio      asyncio.Lock / asyncio.Semaphore (where they apply);
  pure Python  PyFifoLock below: the lock's rules written in plain Python
               (a FIFO deque of futures, a defaultdict of holds, the grant
               loop), the baseline this C module replaces.
Cases:
  uncontended  one task, `async with lock(Mutex): pass`, N times;
  contended    100 tasks, each taking the lock 500 times, with
               `await asyncio.sleep(0)` inside;
  read         100 tasks taking Read 500 times each (sleep(0) inside);
  semaphore    100 tasks, a semaphore of 10, 500 times each (sleep(0) inside).
"C, recipe Mutex" is the C lock with the documentation's Python-predicate
Mutex: the cost of calling is_compatible in Python.
"""
import argparse
import asyncio
import collections
import statistics
import sys
import time

import fifolock
from fifolock import FifoLock, Mutex, Read, Semaphore


# ---- the pure-Python baseline: the lock's rules in plain Python -------------

class PyFifoLock:
    """The lock's rules in plain Python: a FIFO deque of (future, mode),
    a defaultdict of hold counts, and the grant loop."""

    def __init__(self):
        self._waiters = collections.deque()
        self._holds = collections.defaultdict(int)

    def __call__(self, mode):
        return _PyContext(self, mode)

    def _grant(self):
        waiters, holds = self._waiters, self._holds
        while waiters:
            fut, mode = waiters[0]
            if fut.cancelled():  # left while the loop could not run yet
                waiters.popleft()
                continue
            if not mode.is_compatible(holds):
                break
            waiters.popleft()
            holds[mode] += 1
            fut.set_result(None)


class _PyContext:
    __slots__ = ("_lock", "_mode")

    def __init__(self, lock, mode):
        self._lock = lock
        self._mode = mode

    async def __aenter__(self):
        lock, mode = self._lock, self._mode
        if not lock._waiters and mode.is_compatible(lock._holds):
            lock._holds[mode] += 1
            return
        fut = asyncio.get_running_loop().create_future()
        entry = (fut, mode)
        lock._waiters.append(entry)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                lock._holds[mode] -= 1  # granted, cancelled before it resumed
            else:
                try:
                    lock._waiters.remove(entry)
                except ValueError:
                    pass
            lock._grant()
            raise

    async def __aexit__(self, *exc_info):
        self._lock._holds[self._mode] -= 1
        self._lock._grant()


class PySemaphoreMode(asyncio.Future):
    size = 10

    @classmethod
    def is_compatible(cls, holds):
        return holds[cls] < cls.size


class RecipeMutex(asyncio.Future):
    @staticmethod
    def is_compatible(holds):
        return not holds[RecipeMutex]


# ---- cases ----------------------------------------------------------------------

async def uncontended_fifo(lock, mode, n):
    t = time.perf_counter()
    for _ in range(n):
        async with lock(mode):
            pass
    return time.perf_counter() - t


async def uncontended_asyncio(lock, n):
    t = time.perf_counter()
    for _ in range(n):
        async with lock:
            pass
    return time.perf_counter() - t


async def tasks_fifo(lock, mode, tasks, each):
    async def worker():
        for _ in range(each):
            async with lock(mode):
                await asyncio.sleep(0)

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return time.perf_counter() - t


async def tasks_asyncio(lock, tasks, each):
    async def worker():
        for _ in range(each):
            async with lock:
                await asyncio.sleep(0)

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return time.perf_counter() - t


def cases(n, tasks, each):
    """name -> [(implementation, ops, factory of a coroutine returning seconds)]"""
    sem10 = Semaphore(10)
    return {
        "uncontended Mutex": [
            ("C fifolock", n, lambda: uncontended_fifo(FifoLock(), Mutex, n)),
            ("C, recipe Mutex", n, lambda: uncontended_fifo(FifoLock(), RecipeMutex, n)),
            ("pure Python", n, lambda: uncontended_fifo(PyFifoLock(), Mutex, n)),
            ("asyncio.Lock", n, lambda: uncontended_asyncio(asyncio.Lock(), n)),
        ],
        "contended Mutex": [
            ("C fifolock", tasks * each, lambda: tasks_fifo(FifoLock(), Mutex, tasks, each)),
            ("C, recipe Mutex", tasks * each,
             lambda: tasks_fifo(FifoLock(), RecipeMutex, tasks, each)),
            ("pure Python", tasks * each, lambda: tasks_fifo(PyFifoLock(), Mutex, tasks, each)),
            ("asyncio.Lock", tasks * each,
             lambda: tasks_asyncio(asyncio.Lock(), tasks, each)),
        ],
        "read, 100 tasks": [
            ("C fifolock", tasks * each, lambda: tasks_fifo(FifoLock(), Read, tasks, each)),
            ("pure Python", tasks * each, lambda: tasks_fifo(PyFifoLock(), Read, tasks, each)),
        ],
        "semaphore(10)": [
            ("C fifolock", tasks * each, lambda: tasks_fifo(FifoLock(), sem10, tasks, each)),
            ("pure Python", tasks * each,
             lambda: tasks_fifo(PyFifoLock(), PySemaphoreMode, tasks, each)),
            ("asyncio.Semaphore", tasks * each,
             lambda: tasks_asyncio(asyncio.Semaphore(10), tasks, each)),
        ],
    }


async def main(args):
    table = cases(args.n, args.tasks, args.each)
    times = {(c, impl): [] for c, rows in table.items() for impl, _, _ in rows}
    for case, rows in table.items():  # warm up
        for impl, _, make in rows:
            await make()
    for rep in range(args.repeats):
        for case, rows in table.items():
            order = rows if rep % 2 == 0 else rows[::-1]  # ABBA: no side always first
            for impl, _, make in order:
                times[case, impl].append(await make())

    print(f"fifolock {fifolock.__version__} from {fifolock.__file__}")
    print(f"Python {sys.version.split()[0]}; medians of {args.repeats} repeats; "
          f"uncontended n={args.n}; {args.tasks} tasks x {args.each}")
    print()
    print("| case | implementation | median ms | ns/acquire | vs asyncio | vs pure Python |")
    print("|---|---|---:|---:|---:|---:|")
    for case, rows in table.items():
        med = {impl: statistics.median(times[case, impl]) for impl, _, _ in rows}
        anchor = next((impl for impl in med if impl.startswith("asyncio")), None)
        for impl, ops, _ in rows:
            vs_asyncio = f"{med[impl] / med[anchor]:.2f}x" if anchor else "-"
            vs_python = f"{med[impl] / med['pure Python']:.2f}x"
            print(f"| {case} | {impl} | {med[impl] * 1e3:.1f} | "
                  f"{med[impl] / ops * 1e9:.0f} | {vs_asyncio} | {vs_python} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, smaller runs")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("-n", type=int, default=100_000, help="uncontended acquisitions")
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--each", type=int, default=500)
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.n, args.each = 3, 20_000, 100
    asyncio.run(main(args))
