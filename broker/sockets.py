"""ZeroMQ sockets for the farm, and a reader that feeds an asyncio loop without per-message futures.

``zmq.asyncio`` creates a future per receive; at tens of thousands of messages a second that
is most of the coordinator's CPU. :class:`FramePump` instead registers the socket's FD with
the loop and drains every ready message in one callback. The FD is edge-triggered: after any
send the socket may already hold input that will never raise the FD again, so every send is
followed (once per loop iteration) by a look at ``ZMQ_EVENTS``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import zmq

__all__ = [
    "FramePump",
    "SendFailed",
    "curve_client",
    "curve_server",
    "make_dealer",
    "make_router",
]

RECONNECT_IVL_MS = 100
RECONNECT_IVL_MAX_MS = 5_000  # libzmq's default of 0 means no backoff at all
LINGER_MS = 200
HWM = 10_000  # well above any credit we grant, so HWM is never how flow is controlled
# Plain ints: pyzmq's constants are IntFlag enums, and every `&` or `|` on one builds a new enum.
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_NOBLOCK = int(zmq.NOBLOCK)
_RCVMORE = int(zmq.RCVMORE)
_MORE = int(zmq.SNDMORE) | _NOBLOCK


class SendFailed(Exception):
    """A message could not be handed to ZeroMQ (peer unknown or its queue is full)."""


def make_router(ctx: zmq.Context[zmq.Socket[bytes]]) -> zmq.Socket[bytes]:
    """The coordinator's socket: errors instead of silent drops, reconnects take over their id."""
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
    sock.setsockopt(zmq.LINGER, LINGER_MS)
    sock.setsockopt(zmq.SNDHWM, HWM)
    sock.setsockopt(zmq.RCVHWM, HWM)
    return sock


def make_dealer(ctx: zmq.Context[zmq.Socket[bytes]], routing_id: bytes) -> zmq.Socket[bytes]:
    """A worker's socket, with an explicit routing id and exponential reconnect backoff."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.ROUTING_ID, routing_id)
    sock.setsockopt(zmq.LINGER, LINGER_MS)
    sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
    sock.setsockopt(zmq.SNDHWM, HWM)
    sock.setsockopt(zmq.RCVHWM, HWM)
    return sock


def curve_server(sock: zmq.Socket[bytes], secret_key_path: str | os.PathLike[str]) -> None:
    """Make ``sock`` a CURVE server with the secret key file written by ``galileo keys gen``."""
    public, secret = _load_keypair(secret_key_path)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True


def curve_client(sock: zmq.Socket[bytes], secret_key_path: str | os.PathLike[str], server_public_key: bytes) -> None:
    """Make ``sock`` a CURVE client with its own key pair, trusting ``server_public_key``."""
    public, secret = _load_keypair(secret_key_path)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_serverkey = server_public_key


def _load_keypair(path: str | os.PathLike[str]) -> tuple[bytes, bytes]:
    import zmq.auth

    public, secret = zmq.auth.load_certificate(str(Path(path)))
    if secret is None:
        raise ValueError(f"{path} holds no secret key (it is a public key file)")
    return public, secret


class FramePump:
    """Deliver every multipart message arriving on ``sock`` to ``on_frames``, from the loop."""

    BUDGET = 512  # messages per callback before yielding to other loop work

    def __init__(
        self,
        sock: zmq.Socket[bytes],
        on_frames: Callable[[list[bytes]], None],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.sock = sock
        self.on_frames = on_frames
        self.loop = loop or asyncio.get_running_loop()
        self._fd = int(sock.getsockopt(zmq.FD))
        self._check_scheduled = False
        self._closed = False
        self.loop.add_reader(self._fd, self._drain)
        self.loop.call_soon(self._drain)  # messages may have arrived before registration

    def _drain(self) -> None:
        self._check_scheduled = False
        if self._closed:
            return
        sock = self.sock
        for _ in range(self.BUDGET):
            # Ask first: a recv that finds nothing raises zmq.Again, and building that costs ~30 µs.
            try:
                if not sock.getsockopt(_EVENTS) & _POLLIN:  # type: ignore[operator]
                    return
                frames = [sock.recv(_NOBLOCK)]
                while sock.getsockopt(_RCVMORE):
                    frames.append(sock.recv(_NOBLOCK))
            except zmq.Again:
                return
            except zmq.ZMQError:
                if self.closed:
                    return
                raise
            self.on_frames(frames)
            if self.closed:  # the callback may close the pump
                return
        self._schedule_check()  # more may be waiting; let other callbacks run first

    def _schedule_check(self) -> None:
        if not self._check_scheduled:
            self._check_scheduled = True
            self.loop.call_soon(self._check)

    def _check(self) -> None:
        if self._closed:
            return
        if self.sock.getsockopt(_EVENTS) & _POLLIN:  # type: ignore[operator]
            self._drain()
        else:
            self._check_scheduled = False

    def send(self, frames: list[bytes]) -> None:
        """Hand ``frames`` to ZeroMQ now. Raises :class:`SendFailed` instead of blocking or dropping."""
        sock = self.sock
        try:
            for frame in frames[:-1]:  # a ROUTER's route: ZeroMQ takes or refuses the message here
                sock.send(frame, _MORE)
            sock.send(frames[-1], _NOBLOCK)
        except zmq.Again:
            raise SendFailed("peer queue full") from None
        except zmq.ZMQError as exc:
            raise SendFailed(exc.strerror) from None
        finally:
            self._schedule_check()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.loop.remove_reader(self._fd)
        self.sock.close(linger=LINGER_MS)
