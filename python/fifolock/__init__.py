"""First-in-first-out locks for asyncio whose modes you define.

A drop-in for the ``fifolock`` package, on the fifolock C engine::

    import asyncio
    from fifolock import FifoLock

    class Mutex(asyncio.Future):
        @staticmethod
        def is_compatible(holds):
            return not holds[Mutex]

    lock = FifoLock()

    async def access():
        async with lock(Mutex):
            ...  # access resource

A mode is a class (an ``asyncio.Future`` subclass) with
``is_compatible(holds)``: a staticmethod, classmethod or plain method that
answers whether one more holder of the mode may join the current holders.
``holds[M]`` is the number of holders of exactly ``M`` right now (0 if none).
Requests are granted strictly in the order they were made.

Ready-made modes, whose predicates run in C: :class:`Mutex`; :class:`Read`,
:class:`Write` and :class:`Upgradable`; :func:`Semaphore` (``Semaphore(3)`` is a mode class);
the intention modes :class:`IS`, :class:`IX`, :class:`S`, :class:`SIX` and
:class:`X`. Their ``is_compatible`` is also written out in Python, so they
are used exactly like modes of your own (and subclassing one gives an
ordinary Python mode).

``lock(Mode, n=3)`` takes 3 holds at once (all or nothing, in one place in
the queue) and releases them on exit. ``async with lock(Upgradable) as
held:`` gives the context, whose ``await held.convert(Write)`` turns its hold
into Write without letting go; ``held.mode`` is the mode held now.

For threads, :class:`ThreadFifoLock` takes the same modes (any class with
``is_compatible``, not only futures)::

    lock = ThreadFifoLock()
    with lock(Write, timeout=0.5):   # blocks, the GIL released; TimeoutError
        ...
    with lock(Upgradable) as held:
        held.convert(Write, timeout=None)   # ahead of the queue; exit releases Write

A lock belongs to one event loop: to the thread of its first acquire, and,
as asyncio.Lock, to the loop of its first wait (see :class:`FifoLock`).
Where this module differs from the ``fifolock`` package: docs/porting.md.
"""
import asyncio as _asyncio
from collections.abc import Mapping as _Mapping

import os as _os
import struct as _struct

from . import _fifolock
from ._fifolock import DeadlockError, FifoLock, Holds, LockContext, _register

__all__ = [
    "FifoLock", "Holds", "LockContext", "DeadlockError",
    "Mutex", "Read", "Write", "Upgradable", "Semaphore", "SemaphoreBase",
    "IS", "IX", "S", "SIX", "X",
]
__version__ = _fifolock.ENGINE_VERSION  # FIFOLOCK_VERSION_STRING of include/fifolock.h

_Mapping.register(Holds)

from ._beyond import DeadHolder, EtcdLock, EtcdLockContext, EtcdSession, LockLostError
__all__ += ["DeadHolder", "LockLostError", "EtcdSession", "EtcdLock", "EtcdLockContext"]
if hasattr(_fifolock, "_ShmLock"):  # Linux
    from ._beyond import ProcessFifoLock, ProcessLockContext
    __all__ += ["ProcessFifoLock", "ProcessLockContext"]

if hasattr(_fifolock, "ThreadFifoLock"):  # Linux
    from ._fifolock import ThreadFifoLock, ThreadHolds, ThreadLockContext
    __all__ += ["ThreadFifoLock", "ThreadHolds", "ThreadLockContext"]
    _Mapping.register(ThreadHolds)
    # No thread is inside a lock's internal lock when the process is copied.
    _os.register_at_fork(before=_fifolock._fork_before,
                         after_in_parent=_fifolock._fork_parent,
                         after_in_child=_fifolock._fork_child)


class Mutex(_asyncio.Future):
    """Exclusive mode: one holder at a time."""

    @staticmethod
    def is_compatible(holds):
        return not holds[Mutex]


class Read(_asyncio.Future):
    """Shared mode: any number of holders, unless Write is held."""

    @staticmethod
    def is_compatible(holds):
        return not holds[Write]


class Write(_asyncio.Future):
    """Exclusive mode: only when neither Read, Write nor Upgradable is held."""

    @staticmethod
    def is_compatible(holds):
        return not holds[Read] and not holds[Write] and not holds[Upgradable]


class Upgradable(_asyncio.Future):
    """Upgradable read: shares with Read, excludes Write and other Upgradables.

    One holder at a time, who may later turn it into Write without letting
    go: ``async with lock(Upgradable) as held: ... await held.convert(Write)``.
    """

    @staticmethod
    def is_compatible(holds):
        return not holds[Write] and not holds[Upgradable]


# The intention modes, with the standard matrix (a row may join the columns
# held):
#
#            IS   IX   S    SIX  X
#      IS    yes  yes  yes  yes  no
#      IX    yes  yes  no   no   no
#      S     yes  no   yes  no   no
#      SIX   yes  no   no   no   no
#      X     no   no   no   no   no

class IS(_asyncio.Future):
    """Intention shared: compatible with everything but X."""

    @staticmethod
    def is_compatible(holds):
        return not holds[X]


class IX(_asyncio.Future):
    """Intention exclusive: compatible with IS and IX."""

    @staticmethod
    def is_compatible(holds):
        return not (holds[S] or holds[SIX] or holds[X])


class S(_asyncio.Future):
    """Shared: compatible with IS and S."""

    @staticmethod
    def is_compatible(holds):
        return not (holds[IX] or holds[SIX] or holds[X])


class SIX(_asyncio.Future):
    """Shared with intention exclusive: compatible with IS only."""

    @staticmethod
    def is_compatible(holds):
        return not (holds[IX] or holds[S] or holds[SIX] or holds[X])


class X(_asyncio.Future):
    """Exclusive: compatible with nothing."""

    @staticmethod
    def is_compatible(holds):
        return not (holds[IS] or holds[IX] or holds[S] or holds[SIX] or holds[X])


class SemaphoreBase(_asyncio.Future):
    """Base of the semaphore modes: at most ``cls.size`` holders of ``cls``.

    The package's recipe. Subclass it with a ``size`` for a Python-level
    semaphore mode, or use :func:`Semaphore`, whose classes run in C.
    """

    size = 1

    @classmethod
    def is_compatible(cls, holds):
        return holds[cls] < cls.size


_semaphores = {}


_SIZE_MAX = 2 ** (8 * _struct.calcsize("N")) - 1  # a C size_t


def Semaphore(size):
    """The semaphore mode of ``size`` places: a mode class, the same one for
    the same size::

        async with lock(Semaphore(3)):
            ...  # at most 3 tasks here at once

    ``size`` is an int from 1 to the largest C ``size_t`` (2**64 - 1 on a
    64-bit machine): ValueError below, OverflowError above. (A lock counts
    at most 2**32 - 1 holds of one mode, so a bigger size never refuses.)
    """
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"Semaphore size must be an int, not {type(size).__name__}")
    if size < 1:
        raise ValueError("Semaphore size must be at least 1")
    if size > _SIZE_MAX:
        raise OverflowError(f"Semaphore size {size} is more than a C size_t holds "
                            f"(at most {_SIZE_MAX})")
    cls = _semaphores.get(size)
    if cls is None:
        cls = type("Semaphore", (SemaphoreBase,), {
            "size": size,
            "__module__": __name__,
            "__qualname__": f"Semaphore({size})",
            "__doc__": f"Semaphore mode: at most {size} holders at once.",
        })
        _register(cls, "semaphore", size)
        _semaphores[size] = cls
    return cls


for _cls, _kind in ((Mutex, "mutex"), (Read, "read"), (Write, "write"),
                    (Upgradable, "upgradable"),
                    (IS, "IS"), (IX, "IX"), (S, "S"), (SIX, "SIX"), (X, "X")):
    _register(_cls, _kind)
del _cls, _kind
