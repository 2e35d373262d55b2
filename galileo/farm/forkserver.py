"""A fork server for workers: one fresh interpreter with the worker's modules loaded, forked per IP.

Starting a fresh interpreter per worker costs ~4 s for 16 workers and ~24 MB each; forking a
process that already imported aiohttp, pyzmq, uvloop and msgspec costs a few milliseconds
and shares those pages copy-on-write (``gc.freeze`` keeps the collector from touching them).
multiprocessing's own forkserver re-imports ``__main__`` in every child, which is both slow and
fragile under console scripts and test runners, so this one is ours and small.

Protocol over a socketpair, one msgpack message per length-prefixed frame:
coordinator -> server ``{"op": "spawn", "args": [WorkerArgs, …]}`` (the workers one process
serves); server -> coordinator ``{"op": "spawned", "id": …, "pid": …}`` and ``{"op": "exited", "pid": …, "code": …}``
(``code`` negative for a signal, as ``subprocess`` reports it). The server exits when the
coordinator's end closes; its workers watch the coordinator's pid and exit by themselves.

The handle keeps the server running (it is restarted when it dies) and holds a pidfd on every
worker, so a worker's exit is reported even when no server is left to report it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from workers.main import WorkerArgs

__all__ = ["ForkServer", "ForkServerError"]

_LEN = struct.Struct("!I")
log = logging.getLogger("galileo.forkserver")

RESTART_START = 0.1  # seconds before restarting a dead fork server, doubling while it keeps dying
RESTART_MAX = 10.0
HEALTHY_RESET = 60.0  # a server that lived this long starts the backoff over
UNREPORTED_GRACE = 1.0  # a child's pidfd fired but the server has not said how it exited: wait this long


class ForkServerError(RuntimeError):
    """The fork server could not start or died."""


class _Spawn(msgspec.Struct, tag="spawn"):
    id: int
    args: list[WorkerArgs]


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
    """The coordinator's handle on the fork server process, which it keeps running.

    Every pid :meth:`spawn` returns gets exactly one ``on_exit(pid, code)``: from the server's
    ``waitpid`` while it lives, else from a pidfd this handle holds on each child (``code`` is
    then None: only a parent learns it). A server that dies (killed, out of memory) is started
    again after 0.1 s, doubling to 10 s while it keeps dying; a spawn meanwhile waits for it.
    Its workers are not its children in any way that matters: they keep serving meanwhile.
    """

    def __init__(self, on_exit: Callable[[int, int | None], None]) -> None:
        self.on_exit = on_exit
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[int]] = {}
        self._next = 0
        self._task: asyncio.Task[None] | None = None
        self._up: asyncio.Event | None = None
        self._closing = False
        self._backoff = RESTART_START
        self._started = 0.0
        self._live: dict[int, int | None] = {}  # pid -> its pidfd, until its exit is reported
        self._late: dict[int, asyncio.TimerHandle] = {}
        self._restart: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._up is not None and self._up.is_set()

    async def start(self, timeout: float = 20.0) -> None:
        self._up = asyncio.Event()
        await self._launch(timeout)

    async def _launch(self, timeout: float) -> None:
        ours, theirs = socket.socketpair()
        proc = subprocess.Popen(
            [sys.executable, "-m", "galileo.farm.forkserver", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self.proc = proc
        reader, self._writer = await asyncio.open_unix_connection(sock=ours)
        # The server answers a no-op spawn id -1 once its imports are done: wait for readiness.
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending[-1] = ready
        self._task = asyncio.create_task(self._read_forever(reader, proc), name="forkserver-reader")
        try:
            await asyncio.wait_for(ready, timeout)
        except (TimeoutError, ForkServerError):
            self.proc = None  # not a server that died under us: the caller decides what comes next
            proc.kill()
            await asyncio.to_thread(proc.wait)
            raise ForkServerError(f"fork server not ready within {timeout:.0f}s") from None
        self._started = time.monotonic()
        assert self._up is not None
        self._up.set()

    async def spawn(self, args: WorkerArgs | Sequence[WorkerArgs], wait: float = 30.0) -> int:
        """Fork a worker process serving ``args`` (one worker, or several on one loop); returns its
        pid. Waits up to ``wait`` s for a restarting server."""
        group = [args] if isinstance(args, WorkerArgs) else list(args)
        if self._closing or self._up is None:
            raise ForkServerError("fork server is not running")
        if not self._up.is_set():
            try:
                await asyncio.wait_for(self._up.wait(), wait)
            except TimeoutError:
                raise ForkServerError(f"fork server did not come back within {wait:.0f}s") from None
        assert self._writer is not None
        self._next += 1
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending[self._next] = fut
        self._writer.write(_frame(_Spawn(id=self._next, args=group)))
        pid = await fut
        self._watch(pid)
        return pid

    def _watch(self, pid: int) -> None:
        fd: int | None = None
        with contextlib.suppress(OSError, AttributeError):  # gone already (its exit is on the way), or no pidfd
            fd = os.pidfd_open(pid)
            asyncio.get_running_loop().add_reader(fd, self._on_pidfd, pid)
        self._live[pid] = fd

    def _on_pidfd(self, pid: int) -> None:
        fd = self._live.get(pid)
        if fd is not None:
            asyncio.get_running_loop().remove_reader(fd)
        # The server's report carries the exit code; without a server (or a wedged one), ours stands in.
        delay = UNREPORTED_GRACE if self.running else 0.0
        self._late[pid] = asyncio.get_running_loop().call_later(delay, self._report, pid, None)

    def _report(self, pid: int, code: int | None) -> None:
        if pid not in self._live:
            return
        fd = self._live.pop(pid)
        late = self._late.pop(pid, None)
        if late is not None:
            late.cancel()
        if fd is not None:
            asyncio.get_running_loop().remove_reader(fd)
            os.close(fd)
        self.on_exit(pid, code)

    async def _read_forever(self, reader: asyncio.StreamReader, proc: subprocess.Popen[bytes]) -> None:
        dec = msgspec.msgpack.Decoder(_FromServer)
        loop = asyncio.get_running_loop()
        try:
            while True:
                head = await reader.readexactly(_LEN.size)
                msg = dec.decode(await reader.readexactly(_LEN.unpack(head)[0]))
                if isinstance(msg, _Exited):
                    # After the spawn() that may still be waking up for this pid has recorded it.
                    loop.call_soon(self._report, msg.pid, msg.code)
                    continue
                fut = self._pending.pop(msg.id, None)
                if fut is None or fut.done():
                    continue
                if isinstance(msg, _Spawned):
                    fut.set_result(msg.pid)
                else:
                    fut.set_exception(ForkServerError(msg.error))
        except (asyncio.IncompleteReadError, ConnectionError, msgspec.DecodeError):
            pass
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ForkServerError("fork server exited"))
            self._pending.clear()
        if not self._closing:
            loop.call_soon(self._lost, proc)

    def _lost(self, proc: subprocess.Popen[bytes]) -> None:
        """The server died under us: report what only it could have, and start another."""
        if self._closing or proc is not self.proc:
            return
        assert self._up is not None
        self._up.clear()
        if self._writer is not None:
            self._writer.close()
        code = proc.poll()
        log.error("the fork server died (exit %s); starting another", code if code is not None else "?")
        for pid, fd in list(self._live.items()):
            if fd is None:  # never watched: nobody can tell us about it any more
                self._report(pid, None)
            elif pid in self._late:  # exited already; its report was waiting for the server
                self._late[pid].cancel()
                self._report(pid, None)
        if time.monotonic() - self._started > HEALTHY_RESET:
            self._backoff = RESTART_START
        self._restart = asyncio.get_running_loop().create_task(self._relaunch(proc), name="forkserver-restart")

    async def _relaunch(self, dead: subprocess.Popen[bytes]) -> None:
        await asyncio.to_thread(dead.wait)  # reap it
        while True:  # close() cancels this task
            delay, self._backoff = self._backoff, min(RESTART_MAX, self._backoff * 2)
            await asyncio.sleep(delay)
            if self._closing:
                return
            try:
                await self._launch(20.0)
            except (ForkServerError, OSError) as exc:
                log.error("cannot restart the fork server: %s", exc)
                continue
            self.restarts += 1
            log.warning("fork server restarted (pid %d)", self.proc.pid if self.proc else 0)
            return

    async def close(self) -> None:
        self._closing = True
        if self._restart is not None:
            self._restart.cancel()
            await asyncio.gather(self._restart, return_exceptions=True)
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        for late in self._late.values():
            late.cancel()
        loop = asyncio.get_running_loop()
        for fd in self._live.values():
            if fd is not None:
                loop.remove_reader(fd)
                os.close(fd)
        self._live.clear()
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


def _fork(sock: socket.socket, msg: _Spawn, entry: Callable[[list[WorkerArgs]], Any], close_fds: list[int]) -> None:
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
