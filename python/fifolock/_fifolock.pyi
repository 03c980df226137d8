from . import (DeadlockError as DeadlockError, FifoLock as FifoLock, Holds as Holds,
               LockContext as LockContext)

ENGINE_VERSION: str

def _register(cls: type, kind: str, size: int = ..., /) -> None: ...
def _wake(fut: object, /) -> None: ...
