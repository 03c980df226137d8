"""Locks beyond one process: ProcessFifoLock (shared memory, one machine)
and EtcdSession (an etcd cluster, many machines), with one kind of context
that works with ``with`` (the thread blocks, GIL released) and ``async with``
(the task waits, the event loop goes on).

How an ``async with`` waits: first one try in the event loop's thread
(never blocks: it is granted at once or not). If it must wait, the wait
runs on a thread of its own, with the GIL released, that reports the grant
with ``loop.call_soon_threadsafe``; cancelling the task sets an event that
the wait reads before each of its sleeps (at most 50 ms apart), and the
request leaves the queue without a trace. A grant that races the
cancellation is given back at once.
"""
import asyncio as _asyncio
import collections as _collections
import os as _os
import threading as _threading
import time as _time

from . import _fifolock

__all__ = ["DeadHolder", "ProcessFifoLock", "ProcessLockContext", "LockLostError",
           "EtcdSession", "EtcdLock", "EtcdLockContext"]

LockLostError = _fifolock.LockLostError

DeadHolder = _collections.namedtuple("DeadHolder", "pid mode name limit n")
DeadHolder.__doc__ = """A holder that died before a grant (``held.dead_holders``):
its ``pid`` (as its pid namespace named it), its ``mode`` (the class, None if
this process does not know it), the mode's ``name`` and ``limit`` in the lock
file, and ``n``, the holds of it that died."""


def _settle(fut, ok, value):
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class _Request(_threading.Event):
    """One wait on a worker thread: set() once its waiter gave up. For the
    etcd lock, also whether the session was interrupted for it."""
    __slots__ = ("sent", "finished")

    def __init__(self):
        super().__init__()
        self.sent = False
        self.finished = False


class _Handoff:
    """What a worker thread and the waiter that gave up agree on, under one
    lock: a grant is either handed over or given back, never both, never
    neither."""

    def __init__(self, give_back, on_cancel):
        self.cancel = _Request()
        self.guard = _threading.Lock()
        self.give_back = give_back
        self.on_cancel = on_cancel
        self.value = None
        self.granted = False

    def worker_got(self, value):
        """In the worker, after a grant: True if the waiter takes it."""
        with self.guard:
            if not self.cancel.is_set():
                self.value = value
                self.granted = True
                return True
        self.give_back(value)
        return False

    def waiter_gives_up(self):
        """In the waiter, on an exception: the wait is withdrawn, or the
        grant that won the race is given back."""
        with self.guard:
            self.cancel.set()
            mine, value = self.granted, self.value
            self.granted = False
        if mine:
            self.give_back(value)
        else:
            self.on_cancel(self.cancel)


async def _wait_in_thread(acquire, give_back, on_cancel):
    """acquire(cancel) on a thread of its own, the task awaiting its result
    or exception. Cancelled, the wait is withdrawn, or the grant given back
    if it won the race, before the CancelledError goes on (within one sleep
    of the wait, 50 ms)."""
    loop = _asyncio.get_running_loop()
    fut = loop.create_future()
    finished = loop.create_future()
    h = _Handoff(give_back, on_cancel)

    def tell(f, ok, value):
        try:
            loop.call_soon_threadsafe(_settle, f, ok, value)
            return True
        except RuntimeError:  # the loop is closed: nobody waits
            return False

    def work():
        try:
            value = acquire(h.cancel)
        except BaseException as exc:  # handed to the task as it is
            if not h.cancel.is_set():
                tell(fut, False, exc)
        else:
            if h.worker_got(value) and not tell(fut, True, value):
                h.waiter_gives_up()  # nobody will take it
        tell(finished, True, None)

    _threading.Thread(target=work, name="fifolock-wait", daemon=True).start()
    try:
        return await fut
    except BaseException as exc:
        h.waiter_gives_up()
        if isinstance(exc, _asyncio.CancelledError):
            # no trace once the cancellation goes on: the wait has ended
            try:
                await _asyncio.shield(finished)
            except _asyncio.CancelledError:
                pass
        raise


def _wait_blocking(acquire, give_back, on_cancel):
    """acquire(cancel) on a thread of its own while this thread waits in a
    way that signal handlers interrupt (Ctrl-C in the main thread)."""
    h = _Handoff(give_back, on_cancel)
    done = _threading.Event()
    box = []

    def work():
        try:
            value = acquire(h.cancel)
        except BaseException as exc:
            box.append(exc)
        else:
            if h.worker_got(value):
                box.append(None)
        done.set()

    _threading.Thread(target=work, name="fifolock-wait", daemon=True).start()
    try:
        done.wait()
    except BaseException:
        h.waiter_gives_up()
        done.wait()  # the request is gone (or given back) before this goes on
        raise
    if box and box[0] is not None:
        raise box[0]
    return h.value


class _Context:
    """What ``lock(Mode, n, timeout)`` returns: enter it with ``with`` or
    ``async with``; ``as held`` gives the context itself. One hold at a time:
    entering it again before its exit is RuntimeError."""

    __slots__ = ("_lock", "mode", "n", "timeout", "_holding", "_entered_async", "_first_mode",
                 "__weakref__")

    def __init__(self, lock, mode, n=1, timeout=None):
        self._lock = lock
        self.mode = mode  # the mode held now: convert() changes it until exit
        self._first_mode = mode
        self.n = n
        self.timeout = timeout
        self._holding = False
        self._entered_async = False

    def _check_free(self):
        if self._holding:
            raise RuntimeError(f"{self!r} holds already: use a new lock(mode) for a second hold")

    # A front end gives: _acquire(timeout, cancel) -> value, waiting in this
    # thread (cancel: None, or a _Request its waiter may set);
    # _granted(value); _release() (of the context's hold); _give_back(value)
    # (of a grant nobody took); _on_cancel(cancel) (make the wait see it).

    def _on_cancel(self, cancel):
        pass

    def _wait_sync(self):
        return self._acquire(self.timeout, None)

    def _try_now(self):
        """(True, value) if granted at once without waiting; else (False, None)."""
        if self.timeout == 0:
            return True, self._acquire(0, None)
        try:
            return True, self._acquire(0, None)
        except TimeoutError:
            return False, None

    def __enter__(self):
        self._check_free()
        self._granted(self._wait_sync())
        self._holding = True
        self._entered_async = False
        return self

    def __exit__(self, *exc_info):
        self._exit()

    def _exit(self):
        if not self._holding:
            raise RuntimeError(f"release of {self!r}, which does not hold")
        self._release()
        self._holding = False
        self.mode = self._first_mode

    async def __aenter__(self):
        self._check_free()
        ok, value = self._try_now()
        if not ok:
            value = await _wait_in_thread(
                lambda cancel: self._acquire(self.timeout, cancel), self._give_back,
                self._on_cancel)
        self._granted(value)
        self._holding = True
        self._entered_async = True
        return self

    async def __aexit__(self, *exc_info):
        self._exit()

    def convert(self, mode, timeout=None):
        """Each lock's context says how it converts."""
        raise NotImplementedError(f"{type(self).__name__} has no convert()")

    def __repr__(self):
        name = getattr(self.mode, "__qualname__", repr(self.mode))
        state = "held" if self._holding else "not held"
        return f"<{type(self).__name__} {name} n={self.n} {state}>"


class ProcessLockContext(_Context):
    """The context of a ProcessFifoLock: ``with lock(Write) as held:``.

    ``held.owner_dead`` is True when a holder of a mode that may write died
    before this grant and nobody has declared the data repaired since
    (``lock.consistent()``); ``held.dead_holders`` lists the deaths this grant
    was told of (DeadHolder tuples, at most 8) and ``held.dead_count`` how
    many there were."""

    __slots__ = ("owner_dead", "dead_holders", "dead_count")

    def __init__(self, lock, mode, n=1, timeout=None):
        super().__init__(lock, mode, n, timeout)
        self.owner_dead = False
        self.dead_holders = []
        self.dead_count = 0

    def _acquire(self, timeout, cancel):
        return self._lock._shm.acquire(self.mode, self.n, timeout, cancel)

    def _granted(self, result):
        if result is None:
            self.owner_dead = False
            self.dead_holders = []
            self.dead_count = 0
        else:
            deaths, count = result
            self.owner_dead = True
            self.dead_holders = [DeadHolder(*d) for d in deaths]
            self.dead_count = count

    def _release(self):
        self._lock._shm.release(self.mode, self.n)

    def _give_back(self, value):
        self._lock._shm.release(self.mode, self.n)

    def convert(self, mode, timeout=None):
        """Turns this context's hold into one of ``mode`` without letting go
        (fifolock_shm_convert): at once if the other holders allow it, else
        waiting ahead of the whole queue (nothing else is granted meanwhile).
        Entered with ``with``, it blocks (GIL released; Ctrl-C ends the
        wait); entered with ``async with``, it returns an awaitable
        (cancellable). TimeoutError, DeadlockError (another conversion
        waits, or ``mode`` never fits), a cancellation or a Ctrl-C leave the
        old mode held. ``self.mode`` is the mode held; exit releases it.
        owner_dead and dead_holders are updated as by a grant."""
        if not self._holding:
            raise RuntimeError(f"convert() of {self!r}, which does not hold")
        if self.n != 1:
            raise ValueError(f"convert() needs a context of one hold, not n={self.n}")
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be a number of seconds >= 0 or None, not {timeout!r}")
        if self._entered_async:
            return self._aconvert(mode, timeout)
        self._switched(mode, self._lock._shm.convert(self.mode, mode, timeout, None))

    def _switched(self, mode, result):
        switched, deaths, exc = result
        self.mode = mode
        self._granted(deaths)
        if exc is not None:
            raise exc  # Ctrl-C came as the switch was made: it holds `mode`

    async def _aconvert(self, mode, timeout):
        shm = self._lock._shm
        old = self.mode
        try:
            result = shm.convert(old, mode, 0, None)  # at once, if it can
        except TimeoutError:
            if timeout == 0:
                raise
        else:
            return self._switched(mode, result)

        def undo(result):
            # the switch raced the cancellation: back to the old mode, if
            # that can be done at once; else the context holds the new one
            try:
                shm.convert(mode, old, 0, None)
            except Exception:
                self.mode = mode

        result = await _wait_in_thread(lambda cancel: shm.convert(old, mode, timeout, cancel),
                                       undo, self._on_cancel)
        self._switched(mode, result)


class ProcessFifoLock:
    """A FIFO lock with user-defined modes shared by the processes of one
    machine, in the lock file at ``path`` (created if missing; Linux)::

        lock = ProcessFifoLock("/run/myapp/cache.lock")
        with lock(Write) as held:           # blocks, the GIL released
            if held.owner_dead:             # a writer died holding it
                repair()
                lock.consistent()
        async with lock(Read):              # waits without blocking the loop
            ...

    ``lock(Mode, n=1, timeout=None)`` gives a context (ProcessLockContext).
    Every ready-made mode is known to every process; Semaphore(n) crosses as
    ``semaphore`` of n; a mode of your own crosses by the ``name`` (and
    optional ``limit``) it declares, and every process must give a name the
    same meaning. The handle on the file knows its modes from when it was
    opened: pass your own modes and the semaphores you use in ``modes``;
    a mode first used later is learnt only while this object holds and waits
    for nothing (else ValueError). ``read_only`` lists modes (beside Read,
    IS and S) whose holders only read: their deaths are not reported.
    ``capacity`` and ``permissions`` apply when this call creates the file.

    Holds belong to this object (in this process): any thread may exit a
    context another entered. The process's death drops them all.
    """

    def __init__(self, path, modes=(), *, capacity=None, permissions=None, read_only=()):
        self._shm = _fifolock._ShmLock(_os.fspath(path), tuple(modes), capacity or 0,
                                       permissions or 0, tuple(read_only))

    def __call__(self, mode, n=1, timeout=None):
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be a number of seconds >= 0 or None, not {timeout!r}")
        return ProcessLockContext(self, mode, n, timeout)

    @property
    def path(self):
        """The lock file's path."""
        return self._shm.path

    @property
    def closed(self):
        """True once close() ran."""
        return self._shm.closed

    def consistent(self):
        """Declares the data repaired after a holder died: later grants have
        owner_dead False (until the next death). Call it holding a mode that
        may write; RuntimeError otherwise."""
        self._shm.consistent()

    def waiting(self):
        """Requests waiting now, of all processes."""
        return self._shm.waiting()

    def held(self, mode):
        """Holds of ``mode`` now, of all processes."""
        return self._shm.held(mode)

    def close(self):
        """Closes the handle (the file stays). RuntimeError while a context
        of this lock holds or waits."""
        self._shm.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        state = "closed" if self.closed else "open"
        return f"<ProcessFifoLock {self.path!r} {state}>"


_ETCD_MISSING = ("EtcdSession needs the etcd lock, which this build of fifolock lacks: "
                 "it is compiled in only where libcurl and json-c are found when the "
                 "extension is built (Debian: apt-get install libcurl4-openssl-dev "
                 "libjson-c-dev pkg-config, then reinstall fifolock)")


class EtcdLockContext(_Context):
    """The context of a lock of an EtcdSession: ``with session.lock(name)(Write)
    as held:``. ``held.token`` is the fencing token of the hold (it grows
    with grant order); ``held.check()`` raises LockLostError once the hold is
    lost (else returns the CLOCK_BOOTTIME second until which it is safe);
    ``held.lost`` is True once the session was told it is lost;
    ``await held.wait_lost()`` returns when it is."""

    __slots__ = ("name", "token", "_reason", "_watchers")

    def __init__(self, lock, mode, n=1, timeout=None):
        super().__init__(lock, mode, n, timeout)
        self.name = lock.name
        self.token = None
        self._reason = None
        self._watchers = []

    @property
    def _session(self):
        return self._lock.session

    def _acquire(self, timeout, cancel):
        return self._session._acquire(self.name, self.mode, self.n, timeout, cancel)

    def _wait_sync(self):
        if _threading.current_thread() is not _threading.main_thread():
            return self._acquire(self.timeout, None)
        # the main thread: its wait must see Ctrl-C
        return _wait_blocking(lambda cancel: self._acquire(self.timeout, cancel),
                              self._give_back, self._on_cancel)

    def _try_now(self):
        return False, None  # a try is a round trip to etcd: not in the loop's thread

    def _on_cancel(self, cancel):
        self._session._cancel(cancel)

    async def __aenter__(self):
        session = self._session
        self._check_free()
        driver = session._driver()
        req = session._s.acquire_async(self.name, self.mode, self.n, self.timeout)
        fut = driver.wait(req)
        try:
            await fut
        except BaseException:
            # Cancelled: withdrawn if not reported yet; else a grant that
            # raced the cancellation is given back.
            if not req.cancel() and req.granted:
                session._s.release(self.name, req.result())
            raise
        self._granted(req.result())
        self._holding = True
        self._entered_async = True
        return self

    def _granted(self, token):
        self.token = token
        self._reason = None
        self._session._holders[(self.name, token)] = self

    def _release(self):
        token = self.token
        self._session._holders.pop((self.name, token), None)
        self._session._s.release(self.name, token)

    def _give_back(self, token):
        self._session._s.release(self.name, token)

    def convert(self, mode, timeout=None):
        """Turns this hold into one of ``mode`` without letting go
        (fifolock_etcd_timed_convert): at once if the other holders allow
        it, else ahead of the queue. ``held.token`` becomes the new fencing
        token. Blocks after ``with``; returns an awaitable after ``async
        with`` (its wait on a thread of its own: a cancel interrupts the
        session's blocking waits, as a Ctrl-C does). A timeout,
        DeadlockError, cancel or Ctrl-C leave the old mode held under the
        old token."""
        s = self._session._s
        if not self._holding:
            raise RuntimeError(f"convert() of {self!r}, which does not hold")
        if self.n != 1:
            raise ValueError(f"convert() needs a context of one hold, not n={self.n}")
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be a number of seconds >= 0 or None, not {timeout!r}")
        old_mode, old_token = self.mode, self.token
        session = self._session

        def wait(cancel):
            return session._wait_retrying(
                lambda left: s.convert(self.name, old_token, mode, left), timeout, cancel)

        def undo(token):
            # the switch raced the cancellation: back, if that can be done at once
            try:
                self._switched(old_mode, s.convert(self.name, token, old_mode, 0))
            except Exception:
                self._switched(mode, token)

        if self._entered_async:
            async def aconvert():
                self._switched(mode, await _wait_in_thread(wait, undo, self._on_cancel))
            return aconvert()
        if _threading.current_thread() is _threading.main_thread():
            token = _wait_blocking(wait, undo, self._on_cancel)
        else:
            token = wait(None)
        self._switched(mode, token)

    def _switched(self, mode, token):
        holders = self._session._holders
        holders.pop((self.name, self.token), None)
        self.mode = mode
        self.token = token
        holders[(self.name, token)] = self

    def _lost(self, reason):
        """The session's background thread: this hold was lost."""
        self._reason = reason
        for loop, fut in self._watchers:
            try:
                loop.call_soon_threadsafe(_settle, fut, True, reason)
            except RuntimeError:
                pass

    @property
    def lost(self):
        """True once the session was told this hold is lost."""
        return self._reason is not None

    def check(self):
        """Raises LockLostError if the hold is lost (or may be: no keepalive
        acknowledged within the TTL); else returns the CLOCK_BOOTTIME time
        (seconds) until which it is safe. Asks no server."""
        if not self._holding:
            raise RuntimeError(f"check() of {self!r}, which does not hold")
        return self._session._s.check(self.name, self.token)

    async def wait_lost(self):
        """Returns the reason (errno.ENOLCK or errno.ETIMEDOUT) once the
        session is told this hold is lost."""
        if self._reason is not None:
            return self._reason
        loop = _asyncio.get_running_loop()
        fut = loop.create_future()
        entry = (loop, fut)
        self._watchers.append(entry)
        try:
            if self._reason is not None:
                return self._reason
            return await fut
        finally:
            self._watchers.remove(entry)

    def key(self):
        """The etcd key of this hold's entry, to fence a write on."""
        return self._session._s.key(self.name, self.token)


class _EtcdDriver:
    """A session's async requests on one event loop: the session's one
    descriptor watched with add_reader, its timeout with call_later; each
    reported request settles its future. No thread per waiter."""

    def __init__(self, session, loop):
        self.session = session
        self.loop = loop
        self.futures = {}
        self.timer = None
        self.fd = session._s.fd()
        loop.add_reader(self.fd, self.process)

    def wait(self, req):
        fut = self.loop.create_future()
        self.futures[req] = fut
        self.rearm()
        return fut

    def process(self):
        for req in self.session._s.process():
            fut = self.futures.pop(req, None)
            if fut is not None and not fut.done():
                fut.set_result(None)  # the task reads req.result()
            # a cancelled task's request: its except block decides
        self.rearm()

    def rearm(self):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        ms = self.session._s.timeout()
        if ms >= 0:
            self.timer = self.loop.call_later(ms / 1000, self.process)

    def close(self):
        if self.timer is not None:
            self.timer.cancel()
        if not self.loop.is_closed():
            self.loop.remove_reader(self.fd)
        for fut in self.futures.values():
            if not fut.done():
                fut.set_exception(LockLostError("the EtcdSession was closed"))
        self.futures.clear()


class EtcdLock:
    """The lock ``name`` of an EtcdSession: ``lock(Mode, n=1, timeout=None)``
    gives an EtcdLockContext."""

    __slots__ = ("session", "name")

    def __init__(self, session, name):
        self.session = session
        self.name = name

    def __call__(self, mode, n=1, timeout=None):
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be a number of seconds >= 0 or None, not {timeout!r}")
        return EtcdLockContext(self, mode, n, timeout)

    def __repr__(self):
        return f"<EtcdLock {self.name!r}>"


class EtcdSession:
    """A session on an etcd v3 cluster (fifolock_etcd): one lease that keeps
    its requests alive. ``session.lock(name)`` gives a lock used as a
    ProcessFifoLock is::

        with EtcdSession("http://127.0.0.1:2379") as session:
            lock = session.lock("jobs")
            with lock(Write) as held:       # blocks, the GIL released
                store(data, fence=held.token)
            async with lock(Read) as held:  # waits without blocking the loop
                held.check()                # LockLostError once lost

    ``endpoints`` is a comma-separated str or a list of URLs; ``ttl`` the
    lease's in seconds; TLS as etcdctl's --cacert/--cert/--key; ``user`` and
    ``password`` for etcd's auth. ``modes`` lists your own mode classes (each
    with a ``name``): a session knows the ready-made ones, and must be told
    the others when it opens. ``prefix`` is the key prefix ("fifolock/"),
    ``timeout`` the budget in seconds of one etcd request and of the open.
    Closing the session (or leaving its with) revokes the lease: everything
    it held or asked for goes at once.
    """

    def __init__(self, endpoints, *, ttl=10, cacert=None, cert=None, key=None, user=None,
                 password=None, modes=(), prefix=None, timeout=None):
        if not hasattr(_fifolock, "_EtcdSession"):
            raise NotImplementedError(_ETCD_MISSING)
        import weakref
        self._holders = {}
        self._drv = None
        self._icond = _threading.Condition()
        self._icount = 0
        me = weakref.ref(self)

        def on_lost(name, token, reason):
            session = me()
            held = session and session._holders.get((name, token))
            if held is not None:
                held._lost(reason)
        if not isinstance(endpoints, str):
            endpoints = ",".join(endpoints)
        self._s = _fifolock._EtcdSession(
            endpoints, ttl, cacert, cert, key, user, password, tuple(modes), prefix,
            int(timeout * 1000) if timeout else 0, on_lost)

    def lock(self, name):
        """The lock called ``name`` (any non-empty str) on this cluster."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a lock's name must be a non-empty str, not {name!r}")
        return EtcdLock(self, name)

    # Waits beyond the event loop's API: fifolock_etcd_interrupt() ends every
    # wait of the session, so the one that gives up interrupts it, the
    # others queue again once it is cleared (at the tail: their place went
    # with their entry).

    def _acquire(self, name, mode, n, timeout, cancel):
        return self._wait_retrying(lambda left: self._s.acquire(name, mode, n, left),
                                   timeout, cancel)

    def _wait_retrying(self, call, timeout, cancel):
        """call(seconds left) until it is not ended by another wait's
        interrupt of the session."""
        end = None if timeout is None else _time.monotonic() + timeout
        try:
            while True:
                left = None if end is None else max(0.0, end - _time.monotonic())
                try:
                    return call(left)
                except InterruptedError:
                    if cancel is not None and cancel.is_set():
                        raise
                with self._icond:
                    while self._icount:
                        self._icond.wait()
        finally:
            if cancel is not None:
                self._finished(cancel)

    def _cancel(self, cancel):
        with self._icond:
            if cancel.finished or cancel.sent:
                return
            cancel.sent = True
            self._icount += 1
            self._s.interrupt()

    def _finished(self, cancel):
        with self._icond:
            cancel.finished = True
            if cancel.sent:
                cancel.sent = False
                self._icount -= 1
                if self._icount == 0:
                    self._s.clear_interrupt()
                    self._icond.notify_all()

    def _driver(self):
        """The async requests' driver, on the running loop: one loop per
        session (the library's event-loop API is for one thread)."""
        loop = _asyncio.get_running_loop()
        if self._drv is not None and self._drv.loop is not loop:
            if not self._drv.loop.is_closed() and self._drv.futures:
                raise RuntimeError("this EtcdSession waits on another event loop: use one "
                                   "session per loop")
            self._drv.close()
            self._drv = None
        if self._drv is None:
            self._drv = _EtcdDriver(self, loop)
        return self._drv

    @property
    def closed(self):
        """True once close() ran."""
        return self._s.closed

    def close(self):
        """Revokes the lease (everything held or asked for goes) and ends
        the session."""
        self._holders.clear()
        if self._drv is not None:
            self._drv.close()
            self._drv = None
        self._s.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info):
        self.close()

    def __repr__(self):
        return f"<EtcdSession {'closed' if self.closed else 'open'}>"
