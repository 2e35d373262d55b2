"""Who may connect over CURVE: the authorised public keys, answered to libzmq's ZAP requests.

libzmq asks a ZAP handler (RFC 27, ``inproc://zeromq.zap.01`` in the socket's context) about
every CURVE handshake on a server socket. :class:`KeyRing` is that handler, in a thread of its
own (the handshake must not wait for our event loop). It answers from the set of keys read
from a directory of ``NAME.key`` files (``galileo keys gen``), which :meth:`KeyRing.load`
replaces at once on a reload. The User-Id it answers with is the client's z85 public key:
libzmq attaches it to each message, and the hub judges every message by it.

A refused key is logged as a WARNING with its fingerprint and address, once a minute per key
and at most 10 times a minute in all (the rest are counted): an unknown host retrying, or a
stranger scanning the port, cannot flood the log.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import stat
import threading
import time
from pathlib import Path

import zmq
import zmq.auth
from zmq.utils import z85

__all__ = ["KeyRing", "fingerprint", "load_public_keys"]

log = logging.getLogger("broker.auth")

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
WARN_EVERY = 60.0  # seconds between two warnings about the same key
WARN_BURST = 10  # refusals logged per minute in all
_MAX_KEY_FILE = 64 << 10
_MAX_KEYS = 10_000


def fingerprint(public_key: bytes) -> str:
    """``SHA256:`` and the base64 of the key's hash, first 16 characters (the raw 32-byte key or its z85 text)."""
    raw = z85.decode(public_key) if len(public_key) == 40 else public_key
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode()[:16]


def load_public_keys(directory: str | os.PathLike[str]) -> dict[bytes, str]:
    """The public keys (z85) of every ``*.key`` file in ``directory``, with the file each came from.

    A file that is not a regular file, too large or not a key is skipped with a warning naming it.
    Raises OSError when the directory cannot be read.
    """
    keys: dict[bytes, str] = {}
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        if not entry.name.endswith(".key") or len(keys) >= _MAX_KEYS:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_KEY_FILE:
                raise ValueError("not a regular file of a key's size")
            public, _ = zmq.auth.load_certificate(entry.path)
        except (OSError, ValueError) as exc:
            log.warning("%s: not a usable public key file, skipped: %s", entry.path, exc)
            continue
        keys[public] = entry.name
    return keys


class KeyRing:
    """The ZAP handler of one ZeroMQ context: allows exactly the keys of the last :meth:`load`."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]]) -> None:
        self.ctx = ctx
        self._allowed: dict[bytes, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._zap: zmq.Socket[bytes] | None = None
        self._warned: dict[bytes, float] = {}
        self._window_start = 0.0
        self._window_logged = 0
        self.refused = 0  # handshakes refused since start
        self.suppressed = 0  # refusals not logged since the last one that was

    @property
    def allowed(self) -> frozenset[bytes]:
        return frozenset(self._allowed)

    def load(self, directory: str | os.PathLike[str]) -> tuple[set[bytes], set[bytes]]:
        """Allow exactly the keys in ``directory`` from now on. Returns (added, removed) keys."""
        fresh = load_public_keys(directory)
        old = self._allowed
        self._allowed = fresh  # one reference swap: the ZAP thread sees the old set or the new one
        added, removed = set(fresh) - set(old), set(old) - set(fresh)
        if added or removed:
            log.info(
                "authorised keys from %s: %d (+%d, -%d)",
                Path(directory),
                len(fresh),
                len(added),
                len(removed),
                extra={
                    "added": sorted(fingerprint(k) for k in added),
                    "removed": sorted(fingerprint(k) for k in removed),
                },
            )
        return added, removed

    def start(self) -> None:
        """Answer ZAP requests from now on. Call before a CURVE server socket of ``ctx`` binds."""
        self._zap = self.ctx.socket(zmq.REP)
        self._zap.setsockopt(zmq.LINGER, 0)
        self._zap.setsockopt(zmq.MAXMSGSIZE, 64 << 10)  # inproc, from libzmq itself: a request is ~200 bytes
        self._zap.bind(ZAP_ENDPOINT)
        self._thread = threading.Thread(target=self._serve, name="zap", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    def _serve(self) -> None:
        zap = self._zap
        assert zap is not None
        try:
            while not self._stop.is_set():
                if not zap.poll(100):  # wake now and then to notice stop(): sockets are not thread-safe
                    continue
                self._answer(zap, zap.recv_multipart())
        except zmq.ZMQError:  # the context is being destroyed
            pass
        finally:
            zap.close(linger=0)

    def _answer(self, zap: zmq.Socket[bytes], request: list[bytes]) -> None:
        if len(request) < 6:
            if len(request) >= 2:
                zap.send_multipart([b"1.0", request[1], b"400", b"malformed request", b"", b""])
            else:
                zap.send_multipart([b"1.0", b"", b"400", b"malformed request", b"", b""])
            return
        _version, request_id, _domain, address, _identity, mechanism, *credentials = request
        if mechanism == b"CURVE" and len(credentials) == 1 and len(credentials[0]) == 32:
            key = z85.encode(credentials[0])
            if key in self._allowed:
                zap.send_multipart([b"1.0", request_id, b"200", b"OK", key, b""])
                return
            self._refused(key, address.decode(errors="replace"))
        zap.send_multipart([b"1.0", request_id, b"400", b"key not authorised", b"", b""])

    def _refused(self, key: bytes, address: str) -> None:
        self.refused += 1
        now = time.monotonic()
        if now - self._window_start >= WARN_EVERY:
            self._window_start, self._window_logged = now, 0
        if now - self._warned.get(key, float("-inf")) < WARN_EVERY or self._window_logged >= WARN_BURST:
            self.suppressed += 1
            return
        if len(self._warned) >= 4096:
            self._warned.clear()
        self._warned[key] = now
        self._window_logged += 1
        extra: dict[str, object] = {"fingerprint": fingerprint(key), "public_key": key.decode(), "peer": address}
        if self.suppressed:
            extra["not_logged_before"] = self.suppressed
            self.suppressed = 0
        log.warning(
            "refused a CURVE key that is not in farm.authorized_keys_dir: %s from %s "
            "(to allow it, copy that host's public .key file there and send the coordinator SIGHUP)",
            fingerprint(key),
            address,
            extra=extra,
        )
