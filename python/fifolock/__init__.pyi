import asyncio
from collections import defaultdict
from collections.abc import Awaitable, ItemsView, Iterator, KeysView, Mapping, ValuesView
from typing import Any, Protocol, TypeVar, final, overload

_T = TypeVar("_T")

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
    raised in the acquiring task."""
    def is_compatible(self, holds: Holds, /) -> Any: ...

@final
class LockContext:
    """lock(Mode): holds the lock in Mode; may be shared by several tasks."""
    @property
    def lock(self) -> FifoLock: ...
    @property
    def mode(self) -> type: ...
    def __aenter__(self) -> Awaitable[None]: ...
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
    def __call__(self, mode: type[_Mode], /) -> LockContext: ...
    @property
    def holds(self) -> defaultdict[type, int]:
        """A new defaultdict(int) {mode class: number of holders} of the modes
        held now: 0 for a mode not held, as in is_compatible's holds."""
    @property
    def waiting(self) -> int:
        """The number of requests waiting in the queue now."""

class Mutex(asyncio.Future[None]):
    @staticmethod
    def is_compatible(holds: Mapping[type, int]) -> bool: ...

class Read(asyncio.Future[None]):
    @staticmethod
    def is_compatible(holds: Mapping[type, int]) -> bool: ...

class Write(asyncio.Future[None]):
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
    """The semaphore mode of `size` places (the same class for the same size)."""

__all__ = [
    "FifoLock", "Holds",
    "Mutex", "Read", "Write", "Semaphore", "SemaphoreBase",
    "IS", "IX", "S", "SIX", "X",
]
