#!/usr/bin/env python3
"""Speed and fairness of fifolock.ThreadFifoLock against threading's locks.

    PYTHONPATH=<dir with the built fifolock package> python3 bench/bench_python_threads.py [--quick]

Every number is the median of the repeats; the implementations are
interleaved within each repeat (the machine is shared and noisy: read the
ratios, not the absolute times).

Cases:
  uncontended  one thread, `with lock(Mutex): pass` N times, with the context
               made once (`ctx = lock(Mutex)`, `with ctx:`) and made each
               time (`with lock(Mutex):`), against `with threading.Lock():`
               and `with threading.RLock():`;
  contended    4 and 8 threads for DURATION seconds, each looping
               `with lock: counter += 1`; throughput (acquisitions per
               second, all threads together) and fairness: the fewest
               acquisitions of one thread divided by the most (1.0: all
               equal; threading.Lock lets the releasing thread take it again
               while it holds the GIL, so one thread may get nearly all), and
               the per-thread counts of the median run.
"""
import argparse
import os
import platform
import statistics
import sys
import threading
import time

import fifolock
from fifolock import Mutex, ThreadFifoLock


class PyMutex:
    """A user's mode: its predicate runs in Python, under the lock."""

    @staticmethod
    def is_compatible(holds):
        return not holds[PyMutex]


def uncontended(n, repeats):
    lock = ThreadFifoLock()
    ctx = lock(Mutex)
    pctx = lock(PyMutex)
    tl = threading.Lock()
    rl = threading.RLock()

    def fifo_ctx():
        for _ in range(n):
            with ctx:
                pass

    def fifo_new():
        for _ in range(n):
            with lock(Mutex):
                pass

    def fifo_py():
        for _ in range(n // 10):
            with pctx:
                pass

    def thread_lock():
        for _ in range(n):
            with tl:
                pass

    def thread_rlock():
        for _ in range(n):
            with rl:
                pass

    cases = [("ThreadFifoLock, ctx reused", fifo_ctx, n),
             ("ThreadFifoLock, lock(Mutex) each time", fifo_new, n),
             ("ThreadFifoLock, Python-predicate mode", fifo_py, n // 10),
             ("threading.Lock", thread_lock, n),
             ("threading.RLock", thread_rlock, n)]
    times = {name: [] for name, _, _ in cases}
    for _ in range(repeats):
        for name, fn, count in cases:
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) / count * 1e9)
    print(f"uncontended, one thread ({n} acquisitions, median of {repeats}):")
    base = statistics.median(times["threading.Lock"])
    for name, _, _ in cases:
        m = statistics.median(times[name])
        print(f"  {name:40s} {m:8.0f} ns   {m / base:5.2f}x threading.Lock")


def contended_once(make_with, nthreads, duration):
    stop = threading.Event()
    start = threading.Barrier(nthreads + 1)
    counts = [0] * nthreads
    shared = [0]

    def worker(k):
        guard = make_with()
        c = 0
        start.wait()
        while not stop.is_set():
            with guard:
                shared[0] += 1
            c += 1
        counts[k] = c

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(nthreads)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(duration)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    assert shared[0] == sum(counts)
    return sum(counts) / elapsed, min(counts) / max(max(counts), 1), sorted(counts)


def contended(nthreads, duration, repeats):
    lock = ThreadFifoLock()
    tl = threading.Lock()
    cases = [("ThreadFifoLock(Mutex)", lambda: lock(Mutex)),
             ("ThreadFifoLock(PyMutex)", lambda: lock(PyMutex)),
             ("threading.Lock", lambda: tl)]
    runs = {name: [] for name, _ in cases}
    for _ in range(repeats):
        for name, make in cases:
            runs[name].append(contended_once(make, nthreads, duration))
    print(f"contended, {nthreads} threads, {duration} s each (median of {repeats}):")
    for name, _ in cases:
        rs = sorted(runs[name], key=lambda r: r[0])
        mid = rs[len(rs) // 2]
        fair = statistics.median(r[1] for r in rs)
        print(f"  {name:26s} {mid[0]:10.0f} acq/s   fairness min/max {fair:5.3f}   "
              f"per thread {mid[2]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small counts (a smoke test)")
    args = ap.parse_args()
    n, repeats, duration = (20000, 3, 0.2) if args.quick else (200000, 7, 1.0)
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"{platform.machine()}, fifolock engine {fifolock._fifolock.ENGINE_VERSION}, "
          f"switch interval {sys.getswitchinterval() * 1e3:.0f} ms")
    uncontended(n, repeats)
    for nthreads in (4, 8):
        contended(nthreads, duration, repeats)


if __name__ == "__main__":
    main()
