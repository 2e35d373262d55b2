"""One coordinator per runtime directory: an flock held for the coordinator's whole life.

ZeroMQ's ipc transport lets a second bind silently steal the first one's socket, so a second
``galileo farm start`` on the same directory must be refused before it binds anything.

The lock file is opened with ``O_NOFOLLOW`` and must be a regular file of ours with one link:
a symlink or a hard link planted in its place is refused, never written through.
"""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path

from galileo.farm.rundir import RuntimeDirError, owner_name

__all__ = ["FarmLock", "LockHeld"]


class LockHeld(RuntimeError):
    """Another coordinator holds the lock."""


class FarmLock:
    def __init__(self, runtime_dir: Path) -> None:
        self.path = runtime_dir / "coordinator.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock (the directory must already be verified: see ``rundir.prepare``)."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o600)
        except OSError as exc:
            raise RuntimeDirError(f"{self.path}: cannot open the lock: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_uid != os.geteuid():
                raise RuntimeDirError(
                    f"{self.path} is not a lock file of ours (a regular file with one link, owned by "
                    f"{owner_name(os.geteuid())}; it is owned by {owner_name(st.st_uid)} with "
                    f"{st.st_nlink} link(s)): remove it"
                )
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise LockHeld(
                f"another coordinator (pid {holder}) is running with runtime dir {self.path.parent}; "
                "stop it first or set farm.runtime_dir to another directory"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
