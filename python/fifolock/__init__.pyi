import asyncio
import os
from collections import defaultdict
from collections.abc import (Awaitable, ItemsView, Iterable, Iterator, KeysView, Mapping,
                             ValuesView)
from typing import Any, NamedTuple, Protocol, TypeVar, final, overload

_T = TypeVar("_T")
_C = TypeVar("_C", bound="_BeyondContext")

__version__: str

@final
class Holds(Mapping[type, int]):
    """The current holders of a lock per mode, as passed to is_compatible."""
    def __getitem__(self, mode: type, /) -> int: ...
    def __iter__(self) -> Iterator[type]: ...
    def __len__(self) -> int: ...
    def __contains__(self, mode: object, /) -> bool: ...
    @overload
    def get(self, mode: type, /) -> int | None: ...
    @overload
    def get(self, mode: type, default: _T, /) -> int | _T: ...
    def keys(self) -> KeysView[type]: ...
    def values(self) -> ValuesView[int]: ...
    def items(self) -> ItemsView[type, int]: ...
    def copy(self) -> defaultdict[type, int]:
        """A defaultdict(int) snapshot of the modes held now."""

class _Mode(Protocol):
    """A mode class: is_compatible(holds) as staticmethod, classmethod or method.

    It must answer at once: an awaitable answer (an async def) is a TypeError
    raised in the acquiring task. It must be pure and monotone: fewer holders
    never make a mode incompatible. A request that even a lock nobody holds
    refuses can never be granted: DeadlockError at once. To tell, it is asked
    once more with empty holds (n times, the ones before counted, for n
    holds) when the usual question says no or others wait."""
    def is_compatible(self, holds: Holds, /) -> Any: ...

class DeadlockError(RuntimeError):
    """A request would wait for ever (EDEADLK): its mode refuses even a lock
    nobody holds, so it can never be granted (lock(Semaphore(2), n=3),
    lock(Write, n=2), a conversion to such a mode); or held.convert() would
    have to wait while another conversion already waits on the same lock
    (each would wait for the other). Nothing changed: nothing was queued,
    and a converting context still holds its mode."""

@final
class LockContext:
    """lock(Mode, n=1): holds the lock in Mode (n holds at once).

    `async with lock(Mode) as held:` gives this context. Several tasks may
    use one context at once, but then none of them may convert."""
    @property
    def lock(self) -> FifoLock: ...
    @property
    def mode(self) -> type:
        """The mode held (or asked for): after convert(), the new one."""
    @property
    def n(self) -> int:
        """The number of holds taken on entry and released on exit."""
    def convert(self, mode: type[_Mode], /) -> Awaitable[None]:
        """Turns this context's hold into one of `mode` without letting go.

        At once if `mode` may join the other holders (waiters the old mode
        held back are then let in); otherwise it waits ahead of the whole
        queue, the context keeping the old mode, and new requests queue
        behind it. The exit releases the mode held then. Cancelled (also by
        wait_for or asyncio.timeout) or failed, the context keeps the old
        mode (one cancelled just after the switch is switched back when the
        old mode may rejoin at once; else it keeps the new one, as `mode`
        tells). Raises, changing nothing: ValueError if n != 1;
        RuntimeError outside the `async with`, after its exit, or when the
        context is entered more than once at a time; TypeError if `mode` is
        not a mode class; DeadlockError if it would wait and `mode` can never
        be granted (a lock nobody else holds refuses it) or another
        conversion waits on the lock; an exception of `mode`'s is_compatible.
        """
    def __aenter__(self) -> Awaitable[LockContext]: ...
    def __aexit__(self, exc_type: object, exc: object, tb: object, /) -> Awaitable[None]: ...

class FifoLock:
    """A first-in-first-out lock whose modes you define.

    Bound to one event loop: its first acquire binds it to its thread (an
    acquire or release from another thread raises RuntimeError and changes
    nothing); its first wait binds it to the running loop for ever, even
    once that loop has closed, as asyncio.Lock binds itself (a request that
    must wait under another loop raises RuntimeError). holds, waiting and
    repr() may be read from anywhere.
    """
    def __init__(self) -> None: ...
    def __call__(self, mode: type[_Mode], /, n: int = 1) -> LockContext:
        """A context that holds the lock in `mode`: n holds in one request,
        all or nothing, in one place in the queue (a waiting one holds back
        every request behind it). A Python is_compatible is asked once per
        hold, each time with those before counted. n must be an int >= 1
        (TypeError, ValueError; OverflowError beyond 2**32 - 1). Entering it
        raises DeadlockError at once if n holds of `mode` would not fit a
        lock nobody holds (more than a semaphore's size, Write with n=2)."""
    @property
    def holds(self) -> defaultdict[type, int]:
        """A new defaultdict(int) {mode class: number of holders} of the modes
        held now: 0 for a mode not held, as in is_compatible's holds."""
    @property
    def waiting(self) -> int:
        """The number of requests waiting in the queue now."""

@final
class ThreadHolds(Mapping[type, int]):
    """The current holders of a ThreadFifoLock per mode, as passed to
    is_compatible. Inside the predicate it reads the counts as the predicate
    is asked; anywhere else every read is a snapshot."""
    def __getitem__(self, mode: type, /) -> int: ...
    def __iter__(self) -> Iterator[type]: ...
    def __len__(self) -> int: ...
    def __contains__(self, mode: object, /) -> bool: ...
    @overload
    def get(self, mode: type, /) -> int | None: ...
    @overload
    def get(self, mode: type, default: _T, /) -> int | _T: ...
    def keys(self) -> KeysView[type]: ...
    def values(self) -> ValuesView[int]: ...
    def items(self) -> ItemsView[type, int]: ...
    def copy(self) -> defaultdict[type, int]: ...

class _ThreadMode(Protocol):
    """Any class with is_compatible(holds) (staticmethod, classmethod or
    method); it need not be an asyncio.Future."""
    def is_compatible(self, holds: ThreadHolds, /) -> Any: ...

@final
class ThreadLockContext:
    """lock(Mode, n=1, timeout=None): `with` holds the lock in Mode (n holds)."""
    @property
    def lock(self) -> ThreadFifoLock: ...
    @property
    def mode(self) -> type: ...
    @property
    def n(self) -> int: ...
    @property
    def timeout(self) -> float | None: ...
    def __enter__(self) -> ThreadLockContext:
        """Blocks this thread, the GIL released, until granted (FIFO).
        TimeoutError when the timeout passes first; an exception raised by a
        signal handler (KeyboardInterrupt) ends the wait too; either way the
        request leaves no trace in the queue. An exception raised by the
        mode's is_compatible about this request is raised here. DeadlockError
        at once, without blocking, for a request that can never be granted
        (its mode refuses even a lock nobody holds)."""
    def convert(self, mode: type, timeout: float | None = None) -> None:
        """Turns this context's hold into one of `mode` without letting go
        (Write to Read; Upgradable to Write), as LockContext.convert does.
        At once if `mode` may join the other holders; else it waits ahead of
        the whole queue, the GIL released, keeping the old mode. TimeoutError,
        DeadlockError (`mode` can never be granted, or another conversion
        waits), an exception of `mode`'s is_compatible or of a signal handler
        (KeyboardInterrupt): the context keeps the old mode. A signal that
        comes as the switch is made is raised by this call, switched back;
        only if the switch let in holders the old mode excludes (a downgrade)
        is the new mode kept, and held.mode says so. Needs n == 1
        (ValueError) and one entry (RuntimeError otherwise)."""
    def __exit__(self, exc_type: object, exc: object, tb: object, /) -> None:
        """Releases the holds (RuntimeError if this context holds none)."""

class ThreadFifoLock:
    """A first-in-first-out lock for threads, on the C library's fifolock_mt.

    The modes of FifoLock (ready-made ones run in C), or any class with
    is_compatible(holds). is_compatible runs under the lock's internal
    lock: it must not use this lock (RuntimeError) or another
    ThreadFifoLock. After os.fork() the child's locks are whole; what other
    threads held or waited for stays held or queued, as with threading.Lock.
    Wherever the C thread lock builds (docs/platforms.md).
    """
    def __init__(self) -> None: ...
    def __call__(self, mode: type[_ThreadMode], /, n: int = 1,
                 timeout: float | None = None) -> ThreadLockContext:
        """n: an int >= 1 (TypeError, ValueError, OverflowError);
        timeout: seconds >= 0 or None (TypeError, ValueError)."""
    @property
    def holds(self) -> defaultdict[type, int]:
        """A new defaultdict(int) snapshot {mode class: holders}."""
    @property
    def waiting(self) -> int:
        """The number of requests queued now (a snapshot)."""

class Mutex(asyncio.Future[None]):
    @staticmethod
    def is_compatible(holds: Mapping[type, int]) -> bool: ...

class Read(asyncio.Future[None]):
    @staticmethod
    def is_compatible(holds: Mapping[type, int]) -> bool: ...

class Write(asyncio.Future[None]):
    @staticmethod
    def is_compatible(holds: Mapping[type, int]) -> bool: ...

class Upgradable(asyncio.Future[None]):
    """Shares with Read; excludes Write and other Upgradables: one holder at a
    time, who may convert() to Write without letting go."""
    @staticmethod
    def is_compatible(holds: Mapping[type, int]) -> bool: ...

class IS(asyncio.Future[None]):
    @staticmethod
    def is_compatible(holds: Mapping[type, int]) -> bool: ...

class IX(asyncio.Future[None]):
    @staticmethod
    def is_compatible(holds: Mapping[type, int]) -> bool: ...

class S(asyncio.Future[None]):
    @staticmethod
    def is_compatible(holds: Mapping[type, int]) -> bool: ...

class SIX(asyncio.Future[None]):
    @staticmethod
    def is_compatible(holds: Mapping[type, int]) -> bool: ...

class X(asyncio.Future[None]):
    @staticmethod
    def is_compatible(holds: Mapping[type, int]) -> bool: ...

class SemaphoreBase(asyncio.Future[None]):
    size: int
    @classmethod
    def is_compatible(cls, holds: Mapping[type, int]) -> bool: ...

def Semaphore(size: int) -> type[SemaphoreBase]:
    """The semaphore mode of `size` places (the same class for the same size).

    size: an int from 1 to the largest C size_t (2**64 - 1 on a 64-bit
    machine); TypeError, ValueError below 1, OverflowError above. A request
    of more than `size` holds at once is refused with DeadlockError."""

# ---- beyond one process ------------------------------------------------------

class _NamedMode(Protocol):
    """A mode that crosses processes: a ready-made one, or a class of your
    own that declares `name` (1 to 31 bytes for ProcessFifoLock, 63 for
    EtcdSession) and optionally `limit`, with is_compatible(holds), which
    is asked in each process that decides; it must be pure and monotone."""
    name: str
    def is_compatible(self, holds: Mapping[type, int], /) -> Any: ...

class LockLostError(RuntimeError):
    """A hold beyond this process was lost (its etcd lease expired or was
    revoked, or its entry deleted; or no keepalive was acknowledged within
    the lease's TTL). Another holder may have been granted since."""

class DeadHolder(NamedTuple):
    """A holder that died before a grant (held.dead_holders)."""
    pid: int
    mode: type | None
    name: str
    limit: int
    n: int

class _BeyondContext:
    mode: type
    n: int
    timeout: float | None
    def __enter__(self: _C) -> _C:
        """Blocks until granted, the GIL released (TimeoutError,
        DeadlockError, KeyboardInterrupt: nothing left queued or held)."""
    def __exit__(self, *exc_info: object) -> None: ...
    async def __aenter__(self: _C) -> _C:
        """Waits without blocking the event loop; cancellable (a cancel
        before the grant leaves no trace; one racing it gives it back)."""
    async def __aexit__(self, *exc_info: object) -> None: ...

class ProcessLockContext(_BeyondContext):
    owner_dead: bool
    dead_holders: list[DeadHolder]
    dead_count: int
    def convert(self, mode: type, timeout: float | None = None) -> Any:
        """Turns this context's one hold into `mode` without letting go,
        waiting ahead of the queue: blocks if entered with `with`, returns
        an awaitable if entered with `async with`. TimeoutError,
        DeadlockError, a cancel or Ctrl-C leave the old mode held."""

@final
class ProcessFifoLock:
    """A FIFO lock shared by the processes of one machine, in the lock file
    at `path` (fifolock_shm, Linux). Pass your own modes and the semaphores
    you use in `modes` (a new one is learnt only while this object holds
    and waits for nothing: ValueError otherwise)."""
    def __init__(self, path: str | os.PathLike[str], modes: Iterable[type] = (), *,
                 capacity: int | None = None, permissions: int | None = None,
                 read_only: Iterable[type] = ()) -> None: ...
    def __call__(self, mode: type, n: int = 1,
                 timeout: float | None = None) -> ProcessLockContext: ...
    @property
    def path(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def consistent(self) -> None:
        """Declares the data repaired after a holder died (RuntimeError
        without a hold of a mode that may write)."""
    def waiting(self) -> int: ...
    def held(self, mode: type) -> int: ...
    def close(self) -> None:
        """RuntimeError while a context of this lock holds or waits."""
    def __enter__(self) -> ProcessFifoLock: ...
    def __exit__(self, *exc_info: object) -> None: ...

class EtcdLockContext(_BeyondContext):
    def convert(self, mode: type, timeout: float | None = None) -> Any:
        """As ProcessLockContext.convert(); the hold gets a new token."""
    name: str
    token: int | None
    """The fencing token (the entry's create revision): grows with grant order."""
    @property
    def lost(self) -> bool: ...
    def check(self) -> float:
        """LockLostError once lost; else the CLOCK_BOOTTIME second until
        which the hold is safe. Asks no server."""
    async def wait_lost(self) -> int:
        """Returns errno.ENOLCK or errno.ETIMEDOUT once the hold is lost."""
    def key(self) -> str: ...

@final
class EtcdLock:
    session: EtcdSession
    name: str
    def __call__(self, mode: type, n: int = 1,
                 timeout: float | None = None) -> EtcdLockContext: ...

@final
class EtcdSession:
    """A session (one lease) on an etcd v3 cluster (fifolock_etcd).
    NotImplementedError if this build lacks the etcd lock."""
    def __init__(self, endpoints: str | Iterable[str], *, ttl: int = 10,
                 cacert: str | None = None, cert: str | None = None, key: str | None = None,
                 user: str | None = None, password: str | None = None,
                 modes: Iterable[type] = (), prefix: str | None = None,
                 timeout: float | None = None) -> None: ...
    def lock(self, name: str) -> EtcdLock: ...
    @property
    def closed(self) -> bool: ...
    def close(self) -> None:
        """Revokes the lease: everything held or asked for goes."""
    def __enter__(self) -> EtcdSession: ...
    def __exit__(self, *exc_info: object) -> None: ...
    async def __aenter__(self) -> EtcdSession: ...
    async def __aexit__(self, *exc_info: object) -> None: ...

__all__ = [
    "FifoLock", "Holds", "LockContext", "DeadlockError",
    "ThreadFifoLock", "ThreadHolds", "ThreadLockContext",
    "Mutex", "Read", "Write", "Upgradable", "Semaphore", "SemaphoreBase",
    "IS", "IX", "S", "SIX", "X",
    "ProcessFifoLock", "ProcessLockContext", "DeadHolder", "LockLostError",
    "EtcdSession", "EtcdLock", "EtcdLockContext",
]
