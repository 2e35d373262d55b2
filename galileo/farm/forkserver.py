"""A fork server for workers: one fresh interpreter with the worker's modules loaded, forked per IP.

Starting a fresh interpreter per worker costs ~4 s for 16 workers and ~24 MB each; forking a
process that already imported aiohttp, pyzmq, uvloop and msgspec costs a few milliseconds
and shares those pages copy-on-write (``gc.freeze`` keeps the collector from touching them).
multiprocessing's own forkserver re-imports ``__main__`` in every child, which is both slow and
fragile under console scripts and test runners, so this one is ours and small.

Protocol over a socketpair, one msgpack message per length-prefixed frame:
coordinator -> server ``{"op": "spawn", "args": WorkerArgs}``; server -> coordinator
``{"op": "spawned", "id": …, "pid": …}`` and ``{"op": "exited", "pid": …, "code": …}``
(``code`` negative for a signal, as ``subprocess`` reports it). The server exits when the
coordinator's end closes; its workers watch the coordinator's pid and exit by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import msgspec

from workers.main import WorkerArgs

__all__ = ["ForkServer", "ForkServerError"]

_LEN = struct.Struct("!I")


class ForkServerError(RuntimeError):
    """The fork server could not start or died."""


class _Spawn(msgspec.Struct, tag="spawn"):
    id: int
    args: WorkerArgs


class _Spawned(msgspec.Struct, tag="spawned"):
    id: int
    pid: int


class _SpawnFailed(msgspec.Struct, tag="failed"):
    id: int
    error: str


class _Exited(msgspec.Struct, tag="exited"):
    pid: int
    code: int


_ToServer = _Spawn
_FromServer = _Spawned | _SpawnFailed | _Exited
_enc = msgspec.msgpack.Encoder()


def _frame(msg: msgspec.Struct) -> bytes:
    body = _enc.encode(msg)
    return _LEN.pack(len(body)) + body


class ForkServer:
    """The coordinator's handle on the fork server process."""

    def __init__(self, on_exit: Callable[[int, int], None]) -> None:
        self.on_exit = on_exit
        self.proc: subprocess.Popen[bytes] | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[int]] = {}
        self._next = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 20.0) -> None:
        ours, theirs = socket.socketpair()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "galileo.farm.forkserver", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self._reader, self._writer = await asyncio.open_unix_connection(sock=ours)
        self._task = asyncio.create_task(self._read_forever(), name="forkserver-reader")
        # The server answers a no-op spawn id -1 once its imports are done: wait for readiness.
        ready = asyncio.get_running_loop().create_future()
        self._pending[-1] = ready
        try:
            await asyncio.wait_for(ready, timeout)
        except TimeoutError:
            raise ForkServerError(f"fork server not ready within {timeout:.0f}s") from None

    async def spawn(self, args: WorkerArgs) -> int:
        """Fork a worker running ``args``; returns its pid."""
        if self._writer is None or self._task is None or self._task.done():
            raise ForkServerError("fork server is not running")
        self._next += 1
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending[self._next] = fut
        self._writer.write(_frame(_Spawn(id=self._next, args=args)))
        return await fut

    async def _read_forever(self) -> None:
        assert self._reader is not None
        dec = msgspec.msgpack.Decoder(_FromServer)
        try:
            while True:
                head = await self._reader.readexactly(_LEN.size)
                msg = dec.decode(await self._reader.readexactly(_LEN.unpack(head)[0]))
                if isinstance(msg, _Exited):
                    # After the spawn() that may still be waking up for this pid has recorded it.
                    asyncio.get_running_loop().call_soon(self.on_exit, msg.pid, msg.code)
                    continue
                fut = self._pending.pop(msg.id, None)
                if fut is None or fut.done():
                    continue
                if isinstance(msg, _Spawned):
                    fut.set_result(msg.pid)
                else:
                    fut.set_exception(ForkServerError(msg.error))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ForkServerError("fork server exited"))
            self._pending.clear()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        if self.proc is not None:
            try:
                await asyncio.wait_for(asyncio.to_thread(self.proc.wait), 5)
            except TimeoutError:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait)


# --- the server process ----------------------------------------------------------------------


def die_with_parent() -> None:
    """Get SIGTERM when the process that started this one dies, however it dies (Linux only)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _serve(fd: int) -> None:
    import gc
    import selectors

    # Preload everything a worker imports, then freeze: forked children share these pages.
    import aiohttp  # noqa: F401
    import uvloop  # noqa: F401
    import zmq  # noqa: F401

    import workers.clients  # noqa: F401  (registers the upstream handlers)
    from workers.main import worker_entry

    die_with_parent()  # the coordinator

    sock = socket.socket(fileno=fd)
    sock.setblocking(True)
    rpipe, wpipe = os.pipe()
    os.set_blocking(wpipe, False)
    signal.set_wakeup_fd(wpipe)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the coordinator, which drains us
    dec = msgspec.msgpack.Decoder(_ToServer)
    gc.freeze()
    sock.sendall(_frame(_Spawned(id=-1, pid=os.getpid())))
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, "cmd")
    sel.register(rpipe, selectors.EVENT_READ, "sig")
    buf = b""
    while True:
        for key, _ in sel.select():
            if key.data == "sig":
                os.read(rpipe, 4096)
                _reap(sock)
                continue
            data = sock.recv(65536)
            if not data:
                return
            buf += data
            while len(buf) >= _LEN.size and len(buf) >= _LEN.size + _LEN.unpack_from(buf)[0]:
                n = _LEN.unpack_from(buf)[0]
                msg = dec.decode(buf[_LEN.size : _LEN.size + n])
                buf = buf[_LEN.size + n :]
                _fork(sock, msg, worker_entry, [rpipe, wpipe, fd])


def _fork(sock: socket.socket, msg: _Spawn, entry: Callable[[WorkerArgs], Any], close_fds: list[int]) -> None:
    try:
        pid = os.fork()
    except OSError as exc:
        sock.sendall(_frame(_SpawnFailed(id=msg.id, error=f"fork failed: {exc}")))
        return
    if pid == 0:  # the worker
        try:
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_DFL)
            for f in close_fds:
                with contextlib.suppress(OSError):
                    os.close(f)
            entry(msg.args)
        finally:
            os._exit(70)
    sock.sendall(_frame(_Spawned(id=msg.id, pid=pid)))


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        with contextlib.suppress(OSError):
            sock.sendall(_frame(_Exited(pid=pid, code=code)))


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
