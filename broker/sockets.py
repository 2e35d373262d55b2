"""ZeroMQ sockets for the farm, and a reader that feeds an asyncio loop without per-message futures.

``zmq.asyncio`` creates a future per receive; at tens of thousands of messages a second that
is most of the coordinator's CPU. :class:`FramePump` instead registers the socket's FD with
the loop and drains every ready message in one callback. The FD is edge-triggered: after any
send the socket may already hold input that will never raise the FD again, so every send is
followed (once per loop iteration) by a look at ``ZMQ_EVENTS``.

Every socket refuses a frame over :data:`MAX_FRAME` (``ZMQ_MAXMSGSIZE``): libzmq reads a
frame's declared size before its body and drops the connection at once, so no peer, not even
one still in its CURVE handshake, makes us allocate what it merely claims. A CURVE server also
gives a peer :data:`HANDSHAKE_MS` to finish its handshake, so what an unauthenticated peer can
hold is at most one frame, for a few seconds.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import zmq

__all__ = [
    "MAX_FRAME",
    "FramePump",
    "SendFailed",
    "UserIdFramePump",
    "curve_client",
    "curve_server",
    "make_dealer",
    "make_router",
]

MAX_FRAME = 8 << 20  # bytes per frame, either way: a 4 MiB answer and its envelope fit with room
HANDSHAKE_MS = 5_000  # a CURVE peer that has not authenticated by then is dropped (libzmq: 30 s)
ZMTP_HEARTBEAT_MS = 1_000  # tcp only: libzmq's own I/O thread pings, whatever our event loop is doing
# A peer that answers no ping for this long is gone. Long enough to wait out a stopped or swapped
# process or a brief network stall; a peer that dies outright closes its connection at once anyway.
ZMTP_TIMEOUT_MS = 10_000
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


def make_router(ctx: zmq.Context[zmq.Socket[bytes]], *, max_frame: int = MAX_FRAME) -> zmq.Socket[bytes]:
    """The coordinator's socket: errors instead of silent drops, frames over ``max_frame`` refused.

    Routing ids are the peers' own (a worker picks a fresh random one per socket), and a
    reconnecting socket takes over its id.
    """
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
    sock.setsockopt(zmq.LINGER, LINGER_MS)
    sock.setsockopt(zmq.SNDHWM, HWM)
    sock.setsockopt(zmq.RCVHWM, HWM)
    sock.setsockopt(zmq.MAXMSGSIZE, max_frame)
    return sock


def make_dealer(
    ctx: zmq.Context[zmq.Socket[bytes]], routing_id: bytes, *, max_frame: int = MAX_FRAME
) -> zmq.Socket[bytes]:
    """A worker's socket, with an explicit routing id and exponential reconnect backoff."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.ROUTING_ID, routing_id)
    sock.setsockopt(zmq.LINGER, LINGER_MS)
    sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
    sock.setsockopt(zmq.SNDHWM, HWM)
    sock.setsockopt(zmq.RCVHWM, HWM)
    sock.setsockopt(zmq.MAXMSGSIZE, max_frame)
    return sock


def zmtp_heartbeats(sock: zmq.Socket[bytes]) -> None:
    """Let libzmq ping the peer from its I/O thread: a dead or unreachable peer closes the
    connection within :data:`ZMTP_TIMEOUT_MS`, while a peer whose event loop is merely slow
    (its I/O thread still answers) keeps it."""
    sock.setsockopt(zmq.HEARTBEAT_IVL, ZMTP_HEARTBEAT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, ZMTP_TIMEOUT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TTL, ZMTP_TIMEOUT_MS)


def curve_server(sock: zmq.Socket[bytes], secret_key_path: str | os.PathLike[str]) -> None:
    """Make ``sock`` a CURVE server with the secret key file written by ``galileo keys gen``.

    A ZAP handler (:class:`broker.auth.KeyRing`) must be running in the socket's context before
    it binds: without one, libzmq lets any key in.
    """
    public, secret = _load_keypair(secret_key_path)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True
    sock.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_MS)
    zmtp_heartbeats(sock)


def curve_client(sock: zmq.Socket[bytes], secret_key_path: str | os.PathLike[str], server_public_key: bytes) -> None:
    """Make ``sock`` a CURVE client with its own key pair, trusting ``server_public_key``."""
    public, secret = _load_keypair(secret_key_path)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_serverkey = server_public_key
    sock.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_MS)
    zmtp_heartbeats(sock)


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


class UserIdFramePump(FramePump):
    """A :class:`FramePump` for a CURVE socket: ``on_message(frames, user_id)`` also says who sent it.

    ``user_id`` is what the ZAP handler answered for the peer's key (its z85 public key), read
    from every message, so a message is always judged by the key that sent it, never by the
    routing id the peer chose. Reading it costs a zero-copy receive of the first frame (~10 µs),
    which only sockets of remote workers pay.
    """

    def __init__(
        self,
        sock: zmq.Socket[bytes],
        on_message: Callable[[list[bytes], bytes], None],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.on_message = on_message
        super().__init__(sock, self._unused, loop)

    @staticmethod
    def _unused(frames: list[bytes]) -> None:  # pragma: no cover - _drain below calls on_message
        raise AssertionError(frames)

    def _drain(self) -> None:
        self._check_scheduled = False
        if self._closed:
            return
        sock = self.sock
        for _ in range(self.BUDGET):
            try:
                if not sock.getsockopt(_EVENTS) & _POLLIN:  # type: ignore[operator]
                    return
                first = sock.recv(_NOBLOCK, copy=False)
                try:
                    user = first.get("User-Id")
                except zmq.ZMQError:
                    user = ""
                frames = [first.bytes]
                while sock.getsockopt(_RCVMORE):
                    frames.append(sock.recv(_NOBLOCK))
            except zmq.Again:
                return
            except zmq.ZMQError:
                if self.closed:
                    return
                raise
            self.on_message(frames, user.encode() if isinstance(user, str) else bytes(user))
            if self.closed:
                return
        self._schedule_check()
