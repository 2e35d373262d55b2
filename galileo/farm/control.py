"""The control socket: ``galileo farm stats`` and ``galileo farm scale`` talk to a running farm.

A ROUTER on an ipc path in the runtime directory, mode 0600 from birth (the file mode, and the
directory's, are the access control). Requests and replies are ``[b"GLC1", msgpack map]``; a
malformed request is answered with an error and counted, never a crash.

A client first connects with a plain unix socket: a socket file left by a coordinator that was
killed refuses that at once ("not running"), where ZeroMQ would keep retrying in silence.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import zmq

from broker.sockets import MAX_FRAME, FramePump, SendFailed, make_router
from galileo.farm.rundir import RuntimeDirError, check_socket, private_umask, probe_socket

if TYPE_CHECKING:
    from galileo.farm.coordinator import Farm

__all__ = ["ControlError", "ControlServer", "control_request"]

log = logging.getLogger("galileo.control")
HEADER = b"GLC1"


class ControlError(RuntimeError):
    """No coordinator answered, or it refused the request."""


class ControlServer:
    def __init__(self, farm: Farm, ctx: zmq.Context[zmq.Socket[bytes]], path: Path) -> None:
        self.farm = farm
        self.path = path
        self.sock = make_router(ctx)
        with private_umask():
            self.sock.bind(f"ipc://{path}")
        check_socket(path)
        self.bad_requests = 0
        self._pump: FramePump | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._pump = FramePump(self.sock, self._on_frames)

    def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self._pump:
            self._pump.close()

    def _on_frames(self, frames: list[bytes]) -> None:
        if len(frames) != 3 or frames[1] != HEADER:
            self.bad_requests += 1
            return
        route = frames[0]
        try:
            request = msgspec.msgpack.decode(frames[2])
            if not isinstance(request, dict):
                raise TypeError("not a map")
        except (ValueError, TypeError, RecursionError):  # bad UTF-8 is a ValueError; deep nesting recurses
            self.bad_requests += 1
            self._reply(route, {"error": "malformed request"})
            return
        task = asyncio.get_running_loop().create_task(self._handle(route, request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, route: bytes, request: dict[str, Any]) -> None:
        cmd = request.get("cmd")
        try:
            if cmd == "stats":
                reply: dict[str, Any] = self.farm.snapshot()
            elif cmd == "scale":
                add, remove = _addresses(request.get("add", [])), _addresses(request.get("remove", []))
                if add is None or remove is None:
                    self.bad_requests += 1
                    reply = {"error": "scale: add and remove must be lists of IP addresses"}
                else:
                    done = [await self.farm.scale_add(ip) for ip in add]
                    done += [await self.farm.scale_remove(ip) for ip in remove]
                    reply = {
                        "messages": [r.message for r in done],
                        "results": [{"ip": r.ip, "ok": r.ok, "message": r.message} for r in done],
                    }
            elif cmd == "rescan":
                reply = {"changes": await self.farm.rescan()}
            else:
                self.bad_requests += 1
                reply = {"error": f"unknown command {cmd!r}"}
        except Exception as exc:  # a bug in one command must not end the control socket
            log.exception("control command %r failed", cmd)
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        self._reply(route, reply)

    def _reply(self, route: bytes, reply: dict[str, Any]) -> None:
        if self._pump is None:
            return
        try:
            self._pump.send([route, HEADER, msgspec.msgpack.encode(reply)])
        except SendFailed:
            pass


def _addresses(value: Any) -> list[str] | None:
    """``value`` as a list of IP address strings, or None when it is anything else."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    try:
        return [str(ipaddress.ip_address(v)) for v in value]
    except ValueError:
        return None


def control_request(
    path: Path, request: dict[str, Any], timeout: float = 3.0, owner: int | None = None
) -> dict[str, Any]:
    """Send one request to the coordinator at ``path`` and return its reply (blocking).

    ``owner``: the uid the socket must belong to (default: us); a socket of anyone else is refused.
    """
    try:
        gone = probe_socket(path)
    except OSError as exc:
        raise ControlError(f"cannot reach the coordinator at {path}: {exc.strerror}") from None
    if gone is not None:
        raise ControlError(f"no coordinator is running ({gone})")
    try:
        check_socket(path, owner)
    except RuntimeDirError as exc:
        raise ControlError(f"refusing to talk to {path}: {exc}") from None
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME)  # whatever answers on that path cannot make us allocate more
    try:
        sock.connect(f"ipc://{path}")
        sock.send_multipart([HEADER, msgspec.msgpack.encode(request)])
        if not sock.poll(int(timeout * 1000)):
            raise ControlError(f"the coordinator at {path} did not answer within {timeout:.0f}s")
        frames = sock.recv_multipart()
    finally:
        sock.close()
        ctx.term()
    reply = msgspec.msgpack.decode(frames[-1])
    if not isinstance(reply, dict):
        raise ControlError("malformed reply")
    if "error" in reply:
        raise ControlError(str(reply["error"]))
    return reply
