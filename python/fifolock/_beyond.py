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

from . import _fifolock

__all__ = ["DeadHolder", "ProcessFifoLock", "ProcessLockContext", "LockLostError"]

LockLostError = _fifolock.LockLostError

DeadHolder = _collections.namedtuple("DeadHolder", "pid mode name limit n")
DeadHolder.__doc__ = """A holder that died before a grant (``held.dead_holders``):
its ``pid`` (as its pid namespace named it), its ``mode`` (the class, None if
this process does not know it), the mode's ``name`` and ``limit`` in the lock
file, and ``n``, the holds of it that died."""

_CONVERT_MSG = ("convert() of a lock beyond one process is not available yet: the C "
                "library's conversions for it (fifolock_shm_convert, "
                "fifolock_etcd_convert) are not in this build; release and acquire "
                "the new mode instead")


def _settle(fut, ok, value):
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


async def _wait_in_thread(acquire, release):
    """acquire(cancel) on a thread of its own; its result, or its exception.
    Cancelled, the wait is withdrawn (cancel.set()), or the grant given back
    with release() if it won the race."""
    loop = _asyncio.get_running_loop()
    fut = loop.create_future()
    cancel = _threading.Event()
    guard = _threading.Lock()
    granted = [False]

    def work():
        try:
            value = acquire(cancel)
        except BaseException as exc:  # noqa: B902 - handed to the task as it is
            if isinstance(exc, InterruptedError) and cancel.is_set():
                return  # withdrawn: the task knows, it cancelled
            try:
                loop.call_soon_threadsafe(_settle, fut, False, exc)
            except RuntimeError:
                pass  # the loop is closed: nobody waits
            return
        with guard:
            give_back = cancel.is_set()
            granted[0] = not give_back
        if give_back:
            release()
            return
        try:
            loop.call_soon_threadsafe(_settle, fut, True, value)
        except RuntimeError:  # the loop is closed: nobody will take it
            with guard:
                granted[0] = False
            release()

    _threading.Thread(target=work, name="fifolock-wait", daemon=True).start()
    try:
        return await fut
    except BaseException:
        with guard:
            cancel.set()
            mine = granted[0]
            granted[0] = False
        if mine:
            release()  # the grant raced the cancellation: no trace
        raise


class _Context:
    """What ``lock(Mode, n, timeout)`` returns: enter it with ``with`` or
    ``async with``; ``as held`` gives the context itself. One hold at a time:
    entering it again before its exit is RuntimeError."""

    __slots__ = ("_lock", "mode", "n", "timeout", "_holding", "__weakref__")

    def __init__(self, lock, mode, n=1, timeout=None):
        self._lock = lock
        self.mode = mode
        self.n = n
        self.timeout = timeout
        self._holding = False

    def _check_free(self):
        if self._holding:
            raise RuntimeError(f"{self!r} holds already: use a new lock(mode) for a second hold")

    # subclasses: _acquire(timeout, cancel) -> result; _granted(result); _release()

    def __enter__(self):
        self._check_free()
        self._granted(self._acquire(self.timeout, None))
        self._holding = True
        return self

    def __exit__(self, *exc_info):
        self._exit()

    def _exit(self):
        if not self._holding:
            raise RuntimeError(f"release of {self!r}, which does not hold")
        self._release()
        self._holding = False

    async def __aenter__(self):
        self._check_free()
        try:
            result = self._acquire(0, None)
        except TimeoutError:
            if self.timeout == 0:
                raise
            result = await _wait_in_thread(
                lambda cancel: self._acquire(self.timeout, cancel), self._release)
        self._granted(result)
        self._holding = True
        return self

    async def __aexit__(self, *exc_info):
        self._exit()

    def convert(self, mode, timeout=None):
        """Not available yet (raises NotImplementedError)."""
        raise NotImplementedError(_CONVERT_MSG)

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
