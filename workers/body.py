"""Reading an answer's body with bounded memory, decompression included.

The session reads raw bytes (``auto_decompress=False``) and inflates them here, a chunk at a
time with ``max_length``: the cap applies to what the body becomes, not to what crossed the
wire, so 250 KiB of gzip that would inflate to 1 GB costs at most the cap before it is refused.
We ask for ``gzip, deflate`` only; a body in another coding (``br``, ``zstd``) is refused, not
decoded. Every body being read in this process also counts against one budget, so a burst of
such answers cannot add up to more than :data:`PROCESS_BUDGET` either.
"""

from __future__ import annotations

import zlib

import aiohttp

__all__ = ["ACCEPT_ENCODING", "MAX_BODY", "PROCESS_BUDGET", "BodyError", "read_body"]

MAX_BODY = 4 << 20  # the largest answer we keep, after decompression
PROCESS_BUDGET = 64 << 20  # bytes all bodies being read at once may hold in one worker
ACCEPT_ENCODING = "gzip, deflate"
_CHUNK = 64 << 10


class BodyError(ValueError):
    """The body is too large, in a coding we did not ask for, or does not decompress."""


class _Zlib:
    """gzip (also concatenated members) or deflate (zlib-wrapped, or raw as some servers send it)."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._obj: zlib._Decompress | None = None
        self._tail = b""  # input that max_length stopped short of
        self._members = 0  # complete gzip members before the current one
        self._ignoring = False  # junk after a complete body: dropped, as browsers do

    def _new(self, first: bytes) -> zlib._Decompress:
        if self.encoding == "deflate":
            return zlib.decompressobj(zlib.MAX_WBITS if first[0] & 0x0F == 8 else -zlib.MAX_WBITS)
        return zlib.decompressobj(16 + zlib.MAX_WBITS)

    def feed(self, data: bytes, room: int) -> bytes:
        """Up to ``room + 1`` bytes inflated from what came so far; the rest waits for the next call."""
        data = self._tail + data
        self._tail = b""
        out = bytearray()
        while data and not self._ignoring and len(out) <= room:
            if self._obj is not None and self._obj.eof:
                if self.encoding != "gzip":
                    self._ignoring = True
                    break
                self._members += 1  # another gzip member follows (RFC 1952 allows several)
                self._obj = None
            if self._obj is None:
                self._obj = self._new(data)
            try:
                out += self._obj.decompress(data, room + 1 - len(out))
            except zlib.error as exc:
                if self._members:
                    self._ignoring = True
                    break
                raise BodyError(f"{self.encoding} body does not decompress: {exc}") from None
            data = self._obj.unused_data if self._obj.eof else self._obj.unconsumed_tail
        if not self._ignoring:
            self._tail = data
        return bytes(out)

    def done(self) -> bool:
        """The compressed stream ended (a truncated one did not)."""
        return self._ignoring or self._obj is None or (self._obj.eof and not self._tail)


def _inflater(resp: aiohttp.ClientResponse) -> _Zlib | None:
    coding = resp.headers.get("Content-Encoding", "").strip().lower()
    if coding in ("", "identity"):
        return None
    if coding in ("gzip", "x-gzip", "deflate"):
        return _Zlib("deflate" if coding == "deflate" else "gzip")
    raise BodyError(f"the answer is in content-encoding {coding[:40]!r}; we asked for {ACCEPT_ENCODING} only")


class _Budget:
    held = 0


async def read_body(resp: aiohttp.ClientResponse, limit: int = MAX_BODY) -> bytes:
    """The (decompressed) body, refusing more than ``limit`` bytes; it is never read whole first."""
    limit = min(limit, MAX_BODY)
    if resp.content_length is not None and resp.content_length > limit and "Content-Encoding" not in resp.headers:
        raise BodyError(f"response body of {resp.content_length} bytes exceeds {limit}")
    inflater = _inflater(resp)
    raw_limit = limit + limit // 64 + _CHUNK  # gzip of incompressible data is a little larger than the data
    body = bytearray()
    raw = 0
    try:
        async for chunk in resp.content.iter_chunked(_CHUNK):
            raw += len(chunk)
            if raw > raw_limit:
                raise BodyError(f"response body exceeds {limit} bytes")
            piece = chunk if inflater is None else inflater.feed(chunk, limit - len(body))
            if len(body) + len(piece) > limit:
                raise BodyError(f"response body exceeds {limit} bytes after decompression")
            if _Budget.held + len(piece) > PROCESS_BUDGET:
                raise BodyError(
                    f"this worker is already reading {_Budget.held} bytes of answers (budget {PROCESS_BUDGET})"
                )
            _Budget.held += len(piece)
            body += piece
        if inflater is not None and not inflater.done():
            tail = inflater.feed(b"", limit - len(body))
            if tail or not inflater.done():
                raise BodyError(f"{inflater.encoding} body ends before its compressed stream does")
    finally:
        _Budget.held -= len(body)
    return bytes(body)
