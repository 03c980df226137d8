#!/usr/bin/env python3
"""fifolock's locks beyond one process, from Python, against the locks a
Python user would pick instead.

    PYTHONPATH=<dir with the built fifolock package> /usr/bin/python3 bench/bench_python_procs.py [--quick]

Anchors (Debian 12: apt-get install python3-filelock python3-etcd3
python3-kazoo zookeeper etcd-server etcd-client; run with Debian's
/usr/bin/python3, whose dist-packages hold them). A row whose package or
server is missing is skipped with a message.

Cases (each the median of REPEATS runs, implementations interleaved within
a repeat; the machine is shared and noisy: read the ratios):

  one machine   P = 2 and 8 contender processes (multiprocessing, spawn),
                each looping `with lock: pass` for DURATION seconds:
                fifolock.ProcessFifoLock (Mutex), filelock.FileLock (flock(2))
                and multiprocessing.Lock (a POSIX semaphore).
  machines      the same over loopback with P = 2 and 8: fifolock.EtcdSession
                against python-etcd3's Lock on the same etcd (started here
                with tests/etcd/etcd-up.sh), and kazoo's Lock on ZooKeeper
                (started here from /usr/share/zookeeper).
  each row      throughput: acquisitions per second, all processes together;
                handoff: the median time from one process's release to the
                next holder's return from acquire, when the holder changes
                (both stamped with CLOCK_MONOTONIC, which every process
                shares; the stamps are stored in a preallocated list, the
                only work inside the lock); fairness: the fewest
                acquisitions of one process divided by the most (1.0: equal).
  event loop    what a task waiting for a held lock costs its event loop:
                a ticker counts `await asyncio.sleep(0)` for DURATION seconds
                with 0, 1 and 10 tasks waiting; the loss is the share of
                ticks gone against 0 waiters.
"""
import argparse
import asyncio
import multiprocessing
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import fifolock
from fifolock import Mutex

HERE = os.path.dirname(os.path.abspath(__file__))
ETCD_SCRIPTS = os.path.join(os.path.dirname(HERE), "tests", "etcd")
ctx = multiprocessing.get_context("spawn")


# ---- the locks, as each contender process makes them ----------------------

def make_lock(kind, arg):
    """(enter, exit) of one lock of `kind` in this process, and a closer."""
    if kind == "fifolock-shm":
        lock = fifolock.ProcessFifoLock(arg)
        c = lock(Mutex)
        return c.__enter__, lambda: c.__exit__(None, None, None), lock.close
    if kind == "filelock":
        import filelock
        lock = filelock.FileLock(arg)
        return lock.acquire, lock.release, lambda: None
    if kind == "multiprocessing":
        return arg.acquire, arg.release, lambda: None
    if kind == "fifolock-etcd":
        s = fifolock.EtcdSession(arg, ttl=10)
        c = s.lock("bench")(Mutex)
        return c.__enter__, lambda: c.__exit__(None, None, None), s.close
    if kind == "etcd3":
        import etcd3
        host, port = arg.split("//")[1].split(":")
        client = etcd3.client(host=host, port=int(port))
        lock = client.lock("bench-etcd3", ttl=10)
        # not client.close(): its watch thread then reports a closed channel
        return lambda: etcd3_acquire(client, lock), lock.release, lambda: None
    if kind == "kazoo":
        from kazoo.client import KazooClient
        zk = KazooClient(hosts=arg)
        zk.start(timeout=30)
        lock = zk.Lock("/bench-kazoo")
        return lock.acquire, lock.release, zk.stop
    raise ValueError(kind)


def etcd3_acquire(client, lock):
    """python-etcd3 0.12's Lock.acquire(), step for step: a new lease, a
    transaction "create the key if it does not exist", else wait for an
    event on the key and try again. Its own acquire() cannot wait on
    Debian 12 (its tenacity wait callback takes the arguments of an older
    tenacity: TypeError once contended). Its watch has no timeout there; a
    release between the transaction and the watch's start would leave it
    waiting for the next event on the key, so here it looks again after
    1 s at most."""
    from etcd3 import exceptions
    while True:
        lock.lease = client.lease(lock.ttl)
        ok, _ = client.transaction(
            compare=[client.transactions.create(lock.key) == 0],
            success=[client.transactions.put(lock.key, lock.uuid, lease=lock.lease)],
            failure=[client.transactions.get(lock.key)])
        if ok:
            return True
        lock.lease = None
        try:
            client.watch_once(lock.key, 1)
        except exceptions.WatchTimedOut:
            pass


def contender(kind, arg, start, duration, out):
    enter, leave, close = make_lock(kind, arg)
    stamps = [0.0] * 2000000  # acquired, released, ... : no allocation while timing
    now = time.monotonic
    k = 0
    start.wait()
    end = now() + duration
    while True:
        enter()
        t = now()
        stamps[k] = t
        stamps[k + 1] = now()
        leave()
        k += 2
        if t >= end or k >= len(stamps):
            break
    close()
    out.put((os.getpid(), stamps[:k]))


def run_contended(kind, arg, procs, duration):
    start = ctx.Event()
    out = ctx.Queue()
    ps = [ctx.Process(target=contender, args=(kind, arg, start, duration, out), daemon=True)
          for _ in range(procs)]
    for p in ps:
        p.start()
    time.sleep(1.0 + 0.1 * procs)  # imported, connected, ready
    start.set()
    results = [out.get(timeout=duration + 60) for _ in ps]
    for p in ps:
        p.join(30)
    events = []  # (acquired, released, pid)
    for pid, st in results:
        events += [(st[i], st[i + 1], pid) for i in range(0, len(st), 2)]
    events.sort()
    counts = [len(st) // 2 for _, st in results]
    first = events[0][0]
    last = events[-1][1]
    handoffs = [b[0] - a[1] for a, b in zip(events, events[1:]) if a[2] != b[2]]
    return {
        "throughput": len(events) / (last - first),
        "handoff_us": statistics.median(handoffs) * 1e6 if handoffs else float("nan"),
        "fairness": min(counts) / max(counts) if max(counts) else 0.0,
    }


# ---- servers ---------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_etcd(tmp):
    d = os.path.join(tmp, "etcd")
    env = dict(os.environ, ETCD_OWNER_PID=str(os.getpid()))
    rc = subprocess.run(["bash", os.path.join(ETCD_SCRIPTS, "etcd-up.sh"), d], env=env,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    if rc != 0:
        return None, None
    with open(os.path.join(d, "endpoints")) as f:
        endpoints = f.read().strip()
    return endpoints, lambda: subprocess.run(["bash", os.path.join(ETCD_SCRIPTS, "etcd-down.sh"), d])


def start_zookeeper(tmp):
    home = "/usr/share/zookeeper"
    if not os.path.isdir(home) or shutil.which("java") is None:
        return None, None
    conf = os.path.join(tmp, "zk")
    os.makedirs(os.path.join(conf, "data"))
    port = free_port()
    with open(os.path.join(conf, "zoo.cfg"), "w") as f:
        f.write(f"tickTime=2000\ndataDir={conf}/data\nclientPort={port}\n"
                "clientPortAddress=127.0.0.1\nadmin.enableServer=false\n"
                "maxClientCnxns=0\n4lw.commands.whitelist=ruok\n")
    jars = [os.path.join(home, j) for j in os.listdir(home) if j.endswith(".jar")]
    jars += [os.path.join("/usr/share/java", j) for j in os.listdir("/usr/share/java")
             if j.endswith(".jar")]
    with open(os.path.join(conf, "log"), "w") as log:
        p = subprocess.Popen(["java", "-Xmx256m", "-cp", ":".join([conf] + jars),
                              "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                              os.path.join(conf, "zoo.cfg")], stdout=log, stderr=log)
    end = time.monotonic() + 30
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), 1) as s:
                s.sendall(b"ruok")
                if s.recv(4) == b"imok":
                    return f"127.0.0.1:{port}", lambda: (p.kill(), p.wait())
        except OSError:
            pass
        time.sleep(0.3)
    p.kill()
    return None, None


# ---- the event loop's cost of a waiting task -------------------------------

async def ticks_for(duration):
    n = 0
    end = time.monotonic() + duration
    while time.monotonic() < end:
        await asyncio.sleep(0)
        n += 1
    return n


async def loop_cost(make, waiters, duration):
    holder, lock_of = make()
    with holder:
        tasks = [asyncio.ensure_future(lock_of().__aenter__()) for _ in range(waiters)]
        await asyncio.sleep(0.5)  # all queued
        n = await ticks_for(duration)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short runs, one repeat")
    ap.add_argument("--procs", default="2,8")
    ap.add_argument("--parts", default="locks,loop", help="locks, loop or both")
    args = ap.parse_args()
    duration = 1.0 if args.quick else 3.0
    repeats = 1 if args.quick else 3
    procs = [int(p) for p in args.procs.split(",")]
    print(f"# bench_python_procs: Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, {platform.platform()}")
    print(f"# {duration:g} s per run, median of {repeats}")
    tmp = tempfile.mkdtemp(prefix="fifolock-bench-")
    stops = []
    try:
        rows = []
        path = os.path.join(tmp, "shm.lock")
        fifolock.ProcessFifoLock(path).close()
        local = [("fifolock-shm", path), ("filelock", os.path.join(tmp, "file.lock")),
                 ("multiprocessing", None)]
        try:
            import filelock  # noqa: F401
        except ImportError:
            print("# filelock: not installed (apt-get install python3-filelock), skipped")
            local = [r for r in local if r[0] != "filelock"]
        remote = []
        endpoints, stop = start_etcd(tmp)
        if endpoints is None:
            print("# etcd did not start (apt-get install etcd-server etcd-client), skipped")
        else:
            stops.append(stop)
            remote.append(("fifolock-etcd", endpoints))
            try:
                import etcd3  # noqa: F401
                remote.append(("etcd3", endpoints.split(",")[0]))
            except ImportError:
                print("# python-etcd3: not installed (apt-get install python3-etcd3), skipped")
        try:
            import kazoo  # noqa: F401
            zk, stop = start_zookeeper(tmp)
            if zk is None:
                print("# ZooKeeper did not start (apt-get install zookeeper), kazoo skipped")
            else:
                stops.append(stop)
                remote.append(("kazoo", zk))
        except ImportError:
            print("# kazoo: not installed (apt-get install python3-kazoo), skipped")

        for p in procs if "locks" in args.parts else ():
            for group in (local, remote):
                samples = {k: [] for k, _ in group}
                for _ in range(repeats):
                    for kind, arg in group:
                        if kind == "multiprocessing":
                            arg = ctx.Lock()
                        samples[kind].append(run_contended(kind, arg, p, duration))
                for kind, _ in group:
                    s = samples[kind]
                    rows.append((kind, p,
                                 statistics.median(r["throughput"] for r in s),
                                 statistics.median(r["handoff_us"] for r in s),
                                 statistics.median(r["fairness"] for r in s)))
        print()
        print("| lock | processes | acquisitions/s | handoff (µs, median) | fairness |")
        print("|---|---:|---:|---:|---:|")
        for kind, p, thr, hand, fair in rows:
            print(f"| {kind} | {p} | {thr:,.0f} | {hand:,.0f} | {fair:.2f} |")

        # the event loop's cost of a waiting task
        def shm():
            a = fifolock.ProcessFifoLock(path)
            b = fifolock.ProcessFifoLock(path)
            return a(Mutex), lambda: b(Mutex)
        makers = [("fifolock-shm", shm)]
        if endpoints is not None:
            sa = fifolock.EtcdSession(endpoints)
            sb = fifolock.EtcdSession(endpoints)
            makers.append(("fifolock-etcd",
                           lambda: (sa.lock("cost")(Mutex), lambda: sb.lock("cost")(Mutex))))
        if "loop" not in args.parts:
            makers = []
        print()
        print("| lock | tasks waiting | loop ticks/s | loop time lost |")
        print("|---|---:|---:|---:|")
        for name, make in makers:
            ticks = {w: [] for w in (0, 1, 10)}
            for _ in range(repeats * 2):  # interleaved: the machine drifts
                for w in ticks:
                    ticks[w].append(asyncio.run(loop_cost(make, w, duration)))
            base = statistics.median(ticks[0])
            for w, t in ticks.items():
                n = statistics.median(t)
                print(f"| {name} | {w} | {n / duration:,.0f} | {100 * (1 - n / base):.1f} % |")
        if endpoints is not None:
            sa.close()
            sb.close()
    finally:
        for stop in stops:
            stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
