"""EtcdSession: the etcd lock across real processes (spawned) and a real
etcd started here (tests/etcd/etcd-up.sh, as the C tests do), with `with`
and `async with`: FIFO, fencing tokens, timeouts, cancellation, Ctrl-C,
the event loop kept responsive, modes of one's own by name, and a lost
hold (its key deleted, its lease revoked) reported by check().

Skips only when etcd is not installed. A hang fails the test: faulthandler
ends the process with every thread's traceback after WATCHDOG seconds.
"""
import asyncio
import errno
import faulthandler
import json
import multiprocessing
import os
import signal
import subprocess
import tempfile
import threading
import time
import unittest

import fifolock
from fifolock import (DeadlockError, EtcdSession, LockLostError, Mutex, Read, Semaphore,
                      Upgradable, Write)

from support import Test, run

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.join(os.path.dirname(HERE), "etcd")
WATCHDOG = float(os.environ.get("FIFOLOCK_WATCHDOG", "300"))
ctx = multiprocessing.get_context("spawn")
cluster = {}


def setUpModule():
    faulthandler.dump_traceback_later(WATCHDOG, exit=True)
    d = tempfile.mkdtemp(prefix="fifolock-py-etcd-")
    env = dict(os.environ, ETCD_OWNER_PID=str(os.getpid()))
    rc = subprocess.run(["bash", os.path.join(SCRIPTS, "etcd-up.sh"), os.path.join(d, "etcd")],
                        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode
    if rc == 77:
        os.rmdir(d)
        raise unittest.SkipTest("etcd is not installed")
    if rc != 0:
        raise RuntimeError(f"etcd-up.sh failed ({rc})")
    cluster["dir"] = d
    with open(os.path.join(d, "etcd", "endpoints")) as f:
        cluster["endpoints"] = f.read().strip()


def tearDownModule():
    faulthandler.cancel_dump_traceback_later()
    if "dir" in cluster:
        subprocess.run(["bash", os.path.join(SCRIPTS, "etcd-down.sh"),
                        os.path.join(cluster["dir"], "etcd")])
        os.rmdir(cluster["dir"])


def etcdctl(*args):
    return subprocess.run(["etcdctl", "--endpoints", cluster["endpoints"]] + list(args),
                          check=True, capture_output=True, text=True).stdout


def entries(name):
    """The keys of the lock `name`'s queue."""
    return [k for k in etcdctl("get", f"fifolock/{name}/", "--prefix", "--keys-only").split()
            if k]


def wait_until(cond, timeout=20):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


class Pair:
    """A mode of one's own, crossing by name: at most two holders."""
    name = "pair"

    @staticmethod
    def is_compatible(holds):
        return holds[Pair] < 2


class Nameless:
    @staticmethod
    def is_compatible(holds):
        return True


MODES = {"Mutex": Mutex, "Write": Write, "Read": Read, "Pair": Pair}


# ---- what the spawned processes run -------------------------------------

def hold(endpoints, name, mode, ready, release, token):
    with EtcdSession(endpoints, modes=[Pair]) as s:
        with s.lock(name)(MODES[mode]) as held:
            token.value = held.token
            ready.set()
            release.wait()


def take_in_turn(endpoints, name, mode, me, log, use_async):
    with EtcdSession(endpoints, modes=[Pair]) as s:
        lock = s.lock(name)

        def note(held):
            with open(log, "a") as f:
                f.write(f"{me} {held.token}\n")
        if use_async:
            async def main():
                async with lock(MODES[mode]) as held:
                    note(held)
            asyncio.run(main())
        else:
            with lock(MODES[mode]) as held:
                note(held)


def try_take(endpoints, name, mode, timeout, result):
    with EtcdSession(endpoints, modes=[Pair]) as s:
        try:
            with s.lock(name)(MODES[mode], timeout=timeout):
                result.put("held")
        except TimeoutError:
            result.put("timeout")


class Base(Test):
    def setUp(self):
        super().setUp()
        self.name = f"{self._testMethodName}-{os.getpid()}-{time.monotonic_ns()}"
        self.session = EtcdSession(cluster["endpoints"], ttl=5, modes=[Pair])
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.is_alive():
                p.kill()
            p.join(10)
        self.session.close()
        super().tearDown()

    def start(self, target, *args):
        p = ctx.Process(target=target, args=(cluster["endpoints"], self.name) + args,
                        daemon=True)
        p.start()
        self.procs.append(p)
        return p

    def holder(self, mode):
        ready, release, token = ctx.Event(), ctx.Event(), ctx.Value("q", 0)
        p = self.start(hold, mode, ready, release, token)
        self.assertTrue(ready.wait(60), "the holder process never held")
        return p, release, token.value


class EtcdSync(Base):
    def test_exclusive_across_processes_tokens_grow_and_timeout_leaves_no_trace(self):
        lock = self.session.lock(self.name)
        p, release, t0 = self.holder("Write")
        with self.assertRaises(TimeoutError):
            with lock(Write, timeout=0.3):
                self.fail("granted beside a writer of another process")
        self.assertEqual(1, len(entries(self.name)), "the timed-out request left its entry")
        release.set()
        p.join(30)
        tokens = []
        for _ in range(3):
            with lock(Write, timeout=10) as held:
                tokens.append(held.token)
                self.assertIsNone(held.check() and None)
        self.assertLess(t0, tokens[0])
        self.assertEqual(sorted(set(tokens)), tokens, "fencing tokens must grow")
        self.assertEqual([], entries(self.name))

    def grants_in_queue_order(self, use_async):
        log = os.path.join(tempfile.mkdtemp(), "log")
        p, release, t0 = self.holder("Mutex")
        for i in range(3):
            self.start(take_in_turn, "Mutex", i, log, use_async)
            wait_until(lambda: len(entries(self.name)) == i + 2, 60)
        release.set()
        for q in self.procs:
            q.join(60)
            self.assertEqual(0, q.exitcode)
        with open(log) as f:
            lines = [line.split() for line in f]
        self.assertEqual(["0", "1", "2"], [who for who, _ in lines])
        tokens = [int(t) for _, t in lines]
        self.assertEqual(sorted(tokens), tokens, "tokens follow grant order")
        self.assertLess(t0, tokens[0])

    def test_grants_in_queue_order_across_processes(self):
        self.grants_in_queue_order(False)

    def test_grants_in_queue_order_across_processes_async(self):
        self.grants_in_queue_order(True)

    def test_own_mode_crosses_by_name(self):
        lock = self.session.lock(self.name)
        p, release, _ = self.holder("Pair")
        with lock(Pair, timeout=10):
            result = ctx.Queue()
            self.start(try_take, "Pair", 0.3, result)
            self.assertEqual("timeout", result.get(timeout=60),
                             "a third holder of a mode that admits two")
        release.set()
        p.join(30)

    def test_modes_not_given_or_nameless_are_refused(self):
        lock = self.session.lock(self.name)

        class Other:
            name = "other"

            @staticmethod
            def is_compatible(holds):
                return True
        with self.assertRaisesRegex(ValueError, "modes="):
            with lock(Other):
                pass
        with self.assertRaisesRegex(TypeError, "has no name"):
            EtcdSession(cluster["endpoints"], modes=[Nameless])
        with self.assertRaises(DeadlockError):
            with lock(Semaphore(2), 3):
                pass
        self.assertEqual([], entries(self.name))

    def test_upgrade_waits_for_a_reader_and_gets_a_new_token(self):
        lock = self.session.lock(self.name)
        p, release, _ = self.holder("Read")
        with lock(Upgradable) as held:
            t0 = held.token
            with self.assertRaises(TimeoutError):
                held.convert(Write, timeout=0.3)
            self.assertEqual((Upgradable, t0), (held.mode, held.token))
            threading.Timer(0.3, release.set).start()
            held.convert(Write, timeout=20)
            self.assertIs(Write, held.mode)
            self.assertGreater(held.token, t0, "a converted hold gets a new, larger token")
            held.check()
        p.join(30)
        wait_until(lambda: [k for k in entries(self.name) if "~token" not in k] == [])

        async def main():
            async with lock(Upgradable) as held:
                t1 = held.token
                await held.convert(Write, timeout=20)
                self.assertEqual(Write, held.mode)
                self.assertGreater(held.token, t1)
        run(main(), 60)

    def test_check_raises_once_the_key_is_deleted(self):
        lock = self.session.lock(self.name)
        with lock(Write) as held:
            held.check()
            etcdctl("del", held.key())
            wait_until(lambda: held.lost, 20)
            with self.assertRaises(LockLostError):
                held.check()

    def test_check_raises_once_the_lease_is_revoked(self):
        lock = self.session.lock(self.name)
        with lock(Write) as held:
            kv = json.loads(etcdctl("get", held.key(), "-w", "json"))["kvs"][0]
            etcdctl("lease", "revoke", "%x" % kv["lease"])

            def lost():
                try:
                    held.check()
                except LockLostError:
                    return True
                return False
            wait_until(lost, 20)
            wait_until(lambda: held.lost, 20)  # the lost callback came too

    def test_keyboard_interrupt_in_with_leaves_no_trace(self):
        lock = self.session.lock(self.name)
        p, release, _ = self.holder("Write")
        old = signal.signal(signal.SIGALRM, signal.default_int_handler)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.5)
            t0 = time.monotonic()
            with self.assertRaises(KeyboardInterrupt):
                with lock(Write):
                    self.fail("granted beside a writer")
            self.assertLess(time.monotonic() - t0, 5, "Ctrl-C did not end the wait")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
        wait_until(lambda: len(entries(self.name)) == 1)
        release.set()
        p.join(30)
        wait_until(lambda: entries(self.name) == [])
        with lock(Write, timeout=10):
            pass


def start_cluster(d, *options):
    env = dict(os.environ, ETCD_OWNER_PID=str(os.getpid()))
    rc = subprocess.run(["bash", os.path.join(SCRIPTS, "etcd-up.sh"), d] + list(options),
                        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                        timeout=120).returncode
    if rc != 0:
        raise RuntimeError(f"etcd-up.sh {' '.join(options)} failed ({rc})")
    with open(os.path.join(d, "endpoints")) as f:
        return f.read().strip()


class EtcdTlsAuth(Test):
    """TLS with a client certificate, and etcd's users: two more clusters
    (as the C tests, one of each)."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="fifolock-py-etcd-sec-")
        cls.tls_endpoints = start_cluster(os.path.join(cls.dir, "tls"), "--tls")
        cls.auth_endpoints = start_cluster(os.path.join(cls.dir, "auth"), "--auth")
        cls.tls = os.path.join(cls.dir, "tls", "tls")

    @classmethod
    def tearDownClass(cls):
        for d in ("tls", "auth"):
            subprocess.run(["bash", os.path.join(SCRIPTS, "etcd-down.sh"),
                            os.path.join(cls.dir, d)])
        os.rmdir(cls.dir)

    def pem(self, name):
        return os.path.join(self.tls, name + ".pem")

    def test_tls_with_a_client_certificate_takes_the_lock(self):
        async def main():
            async with EtcdSession(self.tls_endpoints, cacert=self.pem("ca"),
                                   cert=self.pem("client"), key=self.pem("client-key")) as s:
                async with s.lock("tls")(Write, timeout=20) as held:
                    self.assertGreater(held.token, 0)
                    held.check()
                with s.lock("tls")(Read, timeout=20) as held:
                    self.assertGreater(held.token, 0)
        run(main(), 60)

    def test_a_user_takes_the_lock(self):
        with EtcdSession(self.auth_endpoints, user="alice", password="alicepw") as s:
            with s.lock("auth")(Write, timeout=20) as held:
                self.assertGreater(held.token, 0)

    def test_a_wrong_password_or_ca_is_refused_with_its_own_error(self):
        with self.assertRaises(OSError) as cm:
            EtcdSession(self.auth_endpoints, user="alice", password="wrong")
        self.assertEqual(errno.EKEYREJECTED, cm.exception.errno, cm.exception)
        with self.assertRaises(OSError) as cm:
            EtcdSession(self.tls_endpoints, cacert=self.pem("other-ca"),
                        cert=self.pem("client"), key=self.pem("client-key"))
        self.assertEqual(errno.ENOKEY, cm.exception.errno, cm.exception)


class EtcdAsync(Base):
    def test_wait_keeps_the_loop_responsive_and_cancel_leaves_no_trace(self):
        lock = self.session.lock(self.name)
        p, release, _ = self.holder("Write")
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        async def main():
            t = asyncio.ensure_future(ticker())
            task = asyncio.ensure_future(lock(Write).__aenter__())
            await asyncio.sleep(0.5)
            self.assertEqual(2, len(entries(self.name)))
            task.cancel()
            with self.assertRaises(asyncio.CancelledError):
                await task
            for _ in range(500):
                if len(entries(self.name)) == 1:
                    break
                await asyncio.sleep(0.01)
            self.assertEqual(1, len(entries(self.name)), "the cancelled request stayed")
            threading.Timer(0.3, release.set).start()
            async with lock(Write, timeout=20) as held:
                self.assertGreater(held.token, 0)
            t.cancel()
        run(main(), 60)
        self.assertGreater(ticks, 30, "the event loop stalled while a task waited")
        p.join(30)
        self.assertEqual([], entries(self.name))

    def test_cancel_racing_the_grant_gives_it_back(self):
        other = EtcdSession(cluster["endpoints"], ttl=5)
        lock = self.session.lock(self.name)

        async def once(delay):
            held = other.lock(self.name)(Mutex)
            held.__enter__()
            task = asyncio.ensure_future(lock(Mutex).__aenter__())
            await asyncio.sleep(0.1)
            held.__exit__(None, None, None)
            if delay < 0:
                await asyncio.sleep(-delay)  # the loop may report the grant first
            else:
                time.sleep(delay)  # the grant lands while the loop is busy
            task.cancel()
            try:
                ctx_ = await task
            except asyncio.CancelledError:
                return "cancelled"
            await ctx_.__aexit__(None, None, None)
            return "granted"

        async def main():
            return [await once(0.002 * (i % 5) * (-1) ** i) for i in range(16)]
        try:
            outcomes = run(main(), 120)
        finally:
            other.close()
        self.assertIn("cancelled", outcomes)
        wait_until(lambda: entries(self.name) == [])

    def test_cancel_after_the_grant_was_reported_gives_it_back(self):
        from unittest import mock
        import fifolock._beyond as beyond
        lock = self.session.lock(self.name)
        other = EtcdSession(cluster["endpoints"], ttl=5)
        victim = []
        process = beyond._EtcdDriver.process

        def process_then_cancel(driver):
            process(driver)  # settles the future of the granted request ...
            for task in victim:
                task.cancel()  # ... and the task is cancelled before it resumes
            victim.clear()

        async def main():
            held = other.lock(self.name)(Mutex)
            held.__enter__()
            task = asyncio.ensure_future(lock(Mutex).__aenter__())
            for _ in range(500):
                if len(entries(self.name)) == 2:
                    break
                await asyncio.sleep(0.01)
            victim.append(task)
            held.__exit__(None, None, None)
            with self.assertRaises(asyncio.CancelledError):
                await task
        try:
            with mock.patch.object(beyond._EtcdDriver, "process", process_then_cancel):
                run(main(), 60)
            wait_until(lambda: entries(self.name) == [], 20)
            with other.lock(self.name)(Mutex, timeout=10):
                pass
        finally:
            other.close()

    # The library's event-loop API (fifolock_etcd_acquire_async): no
    # thread per waiting task.
    def test_waiting_tasks_need_no_thread_each(self):
        lock = self.session.lock(self.name)
        p, release, _ = self.holder("Write")

        async def main():
            before = threading.active_count()
            tasks = [asyncio.ensure_future(lock(Read).__aenter__()) for _ in range(20)]
            for _ in range(500):
                if len(entries(self.name)) == 21:
                    break
                await asyncio.sleep(0.01)
            self.assertEqual(21, len(entries(self.name)))
            self.assertLess(threading.active_count() - before, 3,
                            "a thread per waiting task")
            release.set()
            held = await asyncio.gather(*tasks)  # readers: all at once
            self.assertEqual(20, len({h.token for h in held}))
            for h in held:
                await h.__aexit__(None, None, None)
        run(main(), 60)
        p.join(30)
        wait_until(lambda: entries(self.name) == [])

    def test_timeout_and_lost_event_async(self):
        lock = self.session.lock(self.name)
        p, release, _ = self.holder("Write")

        async def main():
            with self.assertRaises(TimeoutError):
                async with lock(Write, timeout=0.3):
                    self.fail("granted beside a writer")
            release.set()
            async with lock(Write, timeout=20) as held:
                etcdctl("del", held.key())
                await asyncio.wait_for(held.wait_lost(), 20)
                with self.assertRaises(LockLostError):
                    held.check()
        run(main(), 60)
        p.join(30)


if __name__ == "__main__":
    unittest.main()
