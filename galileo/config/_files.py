"""Reading a file someone else may have put there: regular files only, never blocking, size-capped."""

from __future__ import annotations

import os
import stat

__all__ = ["FileTooLarge", "NotRegularFile", "read_regular_file"]

# O_NONBLOCK: opening a FIFO for reading would wait for a writer forever; this way it opens at
# once and fstat says what it is. O_NOCTTY: a terminal device never becomes our controlling one.
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class NotRegularFile(OSError):
    """The path is a directory, a FIFO, a socket or a device: nothing is read from it."""


class FileTooLarge(OSError):
    """The file is larger than the caller's limit."""

    def __init__(self, size: int) -> None:
        super().__init__(f"{size} bytes")
        self.size = size


def kind_of(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def read_regular_file(path: str, limit: int) -> bytes:
    """The bytes of the regular file at ``path``, at most ``limit`` of them.

    Raises FileNotFoundError, PermissionError (and other OSErrors), :class:`NotRegularFile`
    or :class:`FileTooLarge`. A file that grows while it is read is cut off at ``limit + 1``
    bytes and refused, so memory stays bounded whatever happens to it.
    """
    fd = os.open(path, _OPEN_FLAGS)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(f"is {kind_of(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            raise FileTooLarge(info.st_size)
        chunks: list[bytes] = []
        total = 0
        while chunk := os.read(fd, min(65536, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise FileTooLarge(total)
        return b"".join(chunks)
    finally:
        os.close(fd)
