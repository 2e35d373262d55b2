"""Wallet keypairs: Solana CLI JSON files (a JSON array of 64 byte values) in and out.

Errors name the file and what is wrong with it, never its content: a keypair file holds the
secret key, and error messages end up in logs. Exceptions are raised ``from None`` so no
underlying parser message (which could quote the file) rides along as ``__context__``.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import msgspec
from solders.keypair import Keypair

from galileo.tx.errors import WalletError

__all__ = ["KEYPAIR_LENGTH", "ephemeral_keypair", "load_keypair", "write_keypair"]

log = logging.getLogger("galileo.wallet")

KEYPAIR_LENGTH = 64
# A CLI keypair file is ~250 bytes; anything much larger is the wrong file.
_MAX_FILE_BYTES = 64 * 1024
_DECODER = msgspec.json.Decoder(list[int])

StrPath = str | os.PathLike[str]


def load_keypair(path: StrPath) -> Keypair:
    """Read a Solana CLI keypair file (``solana-keygen new -o path``).

    Raises :class:`WalletError` naming the path when the file is missing, unreadable, not a
    regular file (a FIFO is refused, never waited on), not JSON, not 64 byte values, or when
    its public half does not match its secret half. Logs a warning on ``galileo.wallet`` when
    group or others may read or write the file.
    """
    where = os.fspath(path)
    try:
        # O_NONBLOCK: a FIFO opens at once (instead of waiting for a writer) and is refused below.
        fd = os.open(where, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise WalletError(where, "file not found; create one with `solana-keygen new -o PATH`") from None
    except IsADirectoryError:
        raise WalletError(where, "is a directory, not a keypair file") from None
    except PermissionError:
        raise WalletError(where, "permission denied; the file must be readable by this user") from None
    except OSError as exc:
        raise WalletError(where, f"cannot open ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise WalletError(where, "is a directory, not a keypair file")
        if not stat.S_ISREG(info.st_mode):
            raise WalletError(where, "is not a regular file (a FIFO, socket or device); give the keypair file")
        _warn_if_loose(where, info.st_mode)
        raw = _read_capped(fd, where)
    finally:
        os.close(fd)
    return _keypair_from_json(where, raw)


def write_keypair(path: StrPath, keypair: Keypair) -> None:
    """Write ``keypair`` as a Solana CLI JSON file with mode 0600; never overwrite.

    Raises :class:`WalletError` when the file already exists or cannot be created.
    """
    where = os.fspath(path)
    payload = msgspec.json.encode(list(bytes(keypair)))
    try:
        fd = os.open(where, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise WalletError(where, "already exists; refusing to overwrite a keypair file") from None
    except OSError as exc:
        raise WalletError(where, f"cannot create ({exc.strerror})") from None
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode is filtered by umask; make it exact
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        Path(where).unlink(missing_ok=True)
        raise WalletError(where, f"cannot write ({exc.strerror})") from None
    os.close(fd)


def ephemeral_keypair() -> Keypair:
    """A fresh random keypair that lives only in memory (demos, tests, throw-away tip wallets)."""
    return Keypair()


def _warn_if_loose(where: str, mode: int) -> None:
    if mode & 0o077:
        log.warning(
            "wallet keypair %s is accessible by group or others (mode %04o); "
            "anyone who can read it can spend from it: run `chmod 600 %s`",
            where,
            stat.S_IMODE(mode),
            where,
        )


def _read_capped(fd: int, where: str) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while chunk := os.read(fd, 8192):
        chunks.append(chunk)
        total += len(chunk)
        if total > _MAX_FILE_BYTES:
            raise WalletError(where, f"larger than {_MAX_FILE_BYTES} bytes; not a keypair file")
    return b"".join(chunks)


def _keypair_from_json(where: str, raw: bytes) -> Keypair:
    if not raw.strip():
        raise WalletError(where, "file is empty")
    try:
        values = _DECODER.decode(raw)
    except msgspec.ValidationError:
        raise WalletError(where, "not a JSON array of integers (expected 64 byte values)") from None
    except msgspec.DecodeError:
        raise WalletError(where, "not valid JSON (expected a JSON array of 64 byte values)") from None
    if len(values) != KEYPAIR_LENGTH:
        raise WalletError(where, f"has {len(values)} values, expected {KEYPAIR_LENGTH}")
    if any(not 0 <= v <= 255 for v in values):
        raise WalletError(where, "has values outside 0..255; not a keypair file")
    try:
        return Keypair.from_bytes(bytes(values))
    except ValueError:
        raise WalletError(
            where, "public key half does not match the secret key half (corrupt or edited file)"
        ) from None
