"""Compressed bodies for tests: gzip and deflate bombs, built in well under a second.

A deflate stream of zeros flushed with Z_FULL_FLUSH repeats byte for byte, so 1 GiB of zeros is
one compressed MiB repeated: 1037 bytes per MiB, about 1 MiB on the wire for 1 GiB inflated.
"""

from __future__ import annotations

import functools
import struct
import zlib

__all__ = ["GZIP_HEADER", "deflate_bomb", "gzip_bomb"]

GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_MIB = 1 << 20


@functools.cache
def _raw_zeros(mib: int) -> tuple[bytes, int]:
    """A raw deflate stream of ``mib`` MiB of zeros, and the CRC-32 of those zeros."""
    zeros = bytes(_MIB)
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(zeros, crc)
    return block * mib + c.flush(zlib.Z_FINISH), crc


def gzip_bomb(mib: int) -> bytes:
    """A gzip member that inflates to ``mib`` MiB of zeros."""
    raw, crc = _raw_zeros(mib)
    return GZIP_HEADER + raw + struct.pack("<II", crc, (mib * _MIB) & 0xFFFFFFFF)


@functools.cache
def deflate_bomb(mib: int, wrapped: bool = True) -> bytes:
    """A deflate body (zlib-wrapped as RFC 9110 says, or raw as some servers send it) of ``mib`` MiB of zeros."""
    raw, _ = _raw_zeros(mib)
    if not wrapped:
        return raw
    adler = 1
    zeros = bytes(_MIB)
    for _ in range(mib):
        adler = zlib.adler32(zeros, adler)
    return b"\x78\xda" + raw + struct.pack(">I", adler)
