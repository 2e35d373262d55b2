"""One coordinator per runtime directory: an flock held for the coordinator's whole life.

ZeroMQ's ipc transport lets a second bind silently steal the first one's socket, so a second
``galileo farm start`` on the same directory must be refused before it binds anything.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["FarmLock", "LockHeld"]


class LockHeld(RuntimeError):
    """Another coordinator holds the lock."""


class FarmLock:
    def __init__(self, runtime_dir: Path) -> None:
        self.path = runtime_dir / "coordinator.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise LockHeld(
                f"another coordinator (pid {holder}) is running with runtime dir {self.path.parent}; "
                "stop it first or set farm.runtime_dir to another directory"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
