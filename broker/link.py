"""The worker's end of the wire: one DEALER to the coordinator, heartbeats, reconnects.

Heartbeats are sent from the worker's own event loop, so a stuck loop stops them and the
coordinator notices (a side thread answering pings would hide it). A coordinator silent for
3 intervals is presumed gone: a local worker exits (no orphans); a worker joined from another
host opens a fresh socket and registers again, backing off from 1 s to 32 s, as the ZeroMQ
guide's Paranoid Pirate worker does. Two things overrule silence:

* the link's own stalls: time its loop was late is not the coordinator's silence;
* proof that the coordinator is alive though quiet (its loop is busy): the connection is up
  (libzmq's I/O threads keep it, and over tcp ping each other: a process that dies closes it
  at once, a host that vanishes within 10 s) and, for a local worker, its process runs
  (``peer_alive``, a pidfd). The link then waits, however long the stall.

Each worker process is one *incarnation* (random, in its Ready), and each socket it opens has
a fresh random routing id: a new process never takes over the route of the one before it.
A remote link whose key the coordinator refuses ends ``refused``, instead of retrying forever.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from typing import Literal

import msgspec
import zmq
from zmq.utils.monitor import parse_monitor_message

from broker.outbox import Outbox
from broker.protocol import (
    HEARTBEAT_INTERVAL,
    HEARTBEAT_LIVENESS,
    Bye,
    Disconnect,
    Dispatch,
    Drain,
    Event,
    Heartbeat,
    Message,
    Outcome,
    ProtocolError,
    Ready,
    Result,
    VersionError,
    decode_batch,
)
from broker.sockets import FramePump, curve_client, make_dealer

__all__ = ["CurveSettings", "Handshake", "LinkEnd", "WorkerLink", "try_handshake"]

log = logging.getLogger("broker.link")

LinkEnd = Literal["drained", "coordinator_lost", "stopped", "refused"]
RECONNECT_INITIAL = 1.0
RECONNECT_MAX = 32.0
_EVENTS = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_DISCONNECTED
)


class CurveSettings(msgspec.Struct, frozen=True):
    """A worker's CURVE identity for a tcp coordinator: its key file and the server's public key."""

    secret_key_path: str
    server_public_key: bytes


class WorkerLink:
    """Connects to the coordinator and turns its messages into calls on the worker.

    ``on_job(dispatch)`` runs a job (it must not block); ``on_drain()`` is called once when the
    coordinator asks the worker to retire; ``heartbeat()`` supplies the load report.
    ``peer_alive()``, when given, says whether the coordinator's process still exists: while it
    does, silence never ends the link.
    """

    def __init__(
        self,
        endpoint: str,
        ready: Ready,
        *,
        on_job: Callable[[Dispatch], None],
        on_drain: Callable[[str], None],
        heartbeat: Callable[[], Heartbeat],
        on_reconnect: Callable[[], None] | None = None,
        reconnect: bool = False,
        curve: CurveSettings | None = None,
        ctx: zmq.Context[zmq.Socket[bytes]] | None = None,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
        peer_alive: Callable[[], bool] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.ready = ready if ready.incarnation else msgspec.structs.replace(ready, incarnation=secrets.token_hex(8))
        self.on_job = on_job
        self.on_drain = on_drain
        self.heartbeat = heartbeat
        self.on_reconnect = on_reconnect
        self.reconnect = reconnect
        self.curve = curve
        self.ctx = ctx or zmq.Context.instance()
        self.hb_interval = heartbeat_interval
        self.peer_alive = peer_alive
        self.bad_frames = 0
        self._version_logged = False
        self.registrations = 0
        self.unsendable = 0
        self._pump: FramePump | None = None
        self._outbox: Outbox | None = None
        self._monitor: FramePump | None = None
        self._connected = False  # a connection with a finished handshake, as the monitor reports it
        self._last_seen = 0.0
        self._last_sent = 0.0
        self._last_beat = 0.0
        self._ended: asyncio.Future[LinkEnd] | None = None
        self._heard_once = False
        self._waiting_logged = False

    # --- public --------------------------------------------------------------------

    async def run(self) -> LinkEnd:
        """Serve until drained, stopped, refused, or (for a local worker) the coordinator is gone."""
        backoff = RECONNECT_INITIAL
        while True:
            self._ended = asyncio.get_running_loop().create_future()
            self._open()
            hb = asyncio.create_task(self._heartbeat_loop(), name="link-heartbeat")
            try:
                end = await self._ended
            finally:
                hb.cancel()
                await asyncio.gather(hb, return_exceptions=True)
            if end != "coordinator_lost" or not self.reconnect:
                if end == "drained":
                    self.send(Bye(reason="drained"))
                    await asyncio.sleep(0.05)  # let ZeroMQ flush Bye before the socket closes
                self._close()
                return end
            self._close()
            if self._heard_once:
                backoff = RECONNECT_INITIAL
            log.warning("coordinator lost; reconnecting in %.0fs", backoff, extra={"endpoint": self.endpoint})
            if self.on_reconnect:
                self.on_reconnect()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RECONNECT_MAX)

    def stop(self) -> None:
        self._end("stopped")

    def drained(self) -> None:
        """The worker finished its last job after a Drain: say Bye and end the link."""
        self._end("drained")

    def send_result(self, job_id: int, attempt: int, outcome: Outcome) -> None:
        self.send(Result(job_id=job_id, attempt=attempt, outcome=outcome))

    def send_event(self, event: Event) -> None:
        self.send(event)

    def send(self, msg: Ready | Heartbeat | Result | Bye | Event) -> None:
        if self._outbox is None:
            return  # between connections: the coordinator will re-dispatch what matters
        self._outbox.put(None, msg)
        self._last_sent = time.monotonic()

    def _on_send_failure(self, route: bytes | None, reason: str) -> None:
        log.warning("cannot send to coordinator: %s", reason)

    def _on_unsendable(self, route: bytes | None, msg: Message, why: str) -> None:
        """A result too large for the wire (or not encodable) still ends its job: as a decode_error."""
        self.unsendable += 1
        if isinstance(msg, Result) and msg.outcome.value is not None:
            log.error("the result of job %d cannot be sent (%s); sending a decode_error instead", msg.job_id, why)
            outcome = Outcome(
                result="decode_error",
                status=msg.outcome.status,
                latency=msg.outcome.latency,
                error=f"answer cannot travel to the coordinator: {why}",
            )
            self.send(Result(job_id=msg.job_id, attempt=msg.attempt, outcome=outcome))
        else:
            log.error("dropped a %s that cannot be sent: %s", type(msg).__name__, why)

    # --- internals -----------------------------------------------------------------

    def _open(self) -> None:
        # A fresh random routing id per socket: a later socket or process never takes over this one's route.
        route = self.ready.worker_id.encode()[:200] + b"#" + secrets.token_hex(8).encode()  # libzmq: at most 255 bytes
        sock = make_dealer(self.ctx, route)
        if self.curve is not None:
            curve_client(sock, self.curve.secret_key_path, self.curve.server_public_key)
        self._connected = False
        if not self.endpoint.startswith("inproc://"):  # inproc has no handshake to watch
            self._monitor = FramePump(sock.get_monitor_socket(_EVENTS), self._on_monitor)
        sock.connect(self.endpoint)
        self._pump = FramePump(sock, self._on_frames)
        self._outbox = Outbox(self._pump, self._on_send_failure, on_unsendable=self._on_unsendable)
        self._last_seen = time.monotonic()
        self._heard_once = False
        self.registrations += 1
        self.send(self.ready)

    def _close(self) -> None:
        if self._outbox is not None:
            self._outbox.flush()
            self._outbox = None
        if self._monitor is not None:
            if self._pump is not None:
                self._pump.sock.disable_monitor()
            self._monitor.close()
            self._monitor = None
        if self._pump is not None:
            self._pump.close()
            self._pump = None

    def _end(self, why: LinkEnd) -> None:
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(why)

    def _on_monitor(self, frames: list[bytes]) -> None:
        try:
            parsed = parse_monitor_message(frames)
            event, value = parsed["event"], parsed["value"]
        except Exception:  # libzmq's own messages: a surprise is no reason to die
            return
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self._connected = True
        elif event == zmq.EVENT_DISCONNECTED:
            self._connected = False
        elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH and value == 400:  # 300/500: temporary, try again
            self._connected = False
            log.error(
                "the coordinator at %s refused this host's key: add its public key to the coordinator's "
                "farm.authorized_keys_dir and send the coordinator SIGHUP",
                self.endpoint,
                extra={"endpoint": self.endpoint},
            )
            self._end("refused")
        else:
            self._connected = False  # a failed handshake: a wrong server key, or not a coordinator

    def _on_frames(self, frames: list[bytes]) -> None:
        if len(frames) != 1:
            self.bad_frames += 1
            return
        try:
            msgs = decode_batch(frames[0])
        except VersionError as exc:
            if not self._version_logged:  # a flood logs one line
                self._version_logged = True
                log.error("%s; the coordinator's frames are dropped", exc)
            self.bad_frames += 1
            return
        except ProtocolError:
            self.bad_frames += 1
            return
        self._last_seen = time.monotonic()
        self._heard_once = True
        self._waiting_logged = False
        for msg in msgs:
            self._on_message(msg)

    def _on_message(self, msg: Message) -> None:
        if isinstance(msg, Dispatch):
            self.on_job(msg)
        elif isinstance(msg, Heartbeat):
            # Answer the coordinator's round at once: its heartbeats to all workers go out
            # together, so the answers arrive together too and it wakes once for many of them.
            now = time.monotonic()
            if now - self._last_beat >= self.hb_interval / 2:
                self._beat(now)
        elif isinstance(msg, Drain):
            self.on_drain(msg.reason)
        elif isinstance(msg, Disconnect):
            log.info("coordinator does not know this worker; registering again")
            self.send(self.ready)
        else:
            self.bad_frames += 1

    def _coordinator_alive(self) -> bool:
        """Proof, other than its messages, that the coordinator is there: our connection to it is
        up (libzmq's I/O threads keep it, whatever the coordinator's loop does) and, when we can
        watch it, its process runs."""
        if self._monitor is None or not self._connected:
            return False
        return self.peer_alive() if self.peer_alive is not None else True

    async def _heartbeat_loop(self) -> None:
        limit = self.hb_interval * HEARTBEAT_LIVENESS
        period = self.hb_interval / 4
        last = time.monotonic()
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            lag = now - last - period
            last = now
            if lag > 0:  # our own loop was late: the coordinator's messages may be waiting unread
                self._last_seen = min(now, self._last_seen + lag)
            silent = now - self._last_seen
            if silent > limit:
                if not self._coordinator_alive():
                    self._end("coordinator_lost")
                    return
                if not self._waiting_logged:
                    self._waiting_logged = True
                    log.warning("coordinator silent for %.0fs but alive (a busy loop?); waiting for it", silent)
            if now - self._last_beat >= self.hb_interval * 1.25:
                # Normally the answer to the coordinator's round (about every interval, busy or
                # not: it carries the load report); this is for when its heartbeats are late.
                self._beat(now)

    def _beat(self, now: float) -> None:
        self._last_beat = now
        self.send(self.heartbeat())


Handshake = Literal["accepted", "refused", "failed", "no_answer"]


async def try_handshake(
    endpoint: str,
    curve: CurveSettings,
    timeout: float = 5.0,
    ctx: zmq.Context[zmq.Socket[bytes]] | None = None,
) -> Handshake:
    """Connect to the coordinator at ``endpoint`` with ``curve`` and say how the handshake went.

    ``accepted``: the key is authorised; ``refused``: the coordinator's ZAP handler turned it
    down; ``failed``: the handshake broke (a wrong server key, or not a coordinator);
    ``no_answer``: nothing within ``timeout`` seconds (down, or not reachable yet).
    """
    own = ctx is None  # a context of its own, gone afterwards: the caller may fork next
    ctx = ctx or zmq.Context()
    sock = make_dealer(ctx, f"probe#{secrets.token_hex(8)}".encode())
    monitor: zmq.Socket[bytes] | None = None
    try:
        curve_client(sock, curve.secret_key_path, curve.server_public_key)
        monitor = sock.get_monitor_socket(_EVENTS)
        sock.connect(endpoint)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            if not monitor.poll(0):
                await asyncio.sleep(min(0.02, left))
                continue
            parsed = parse_monitor_message(monitor.recv_multipart())
            event = parsed["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                return "accepted"
            if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH and parsed["value"] == 400:
                return "refused"
            if event in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
                return "failed"
        return "no_answer"
    finally:
        if monitor is not None:
            sock.disable_monitor()
            monitor.close(linger=0)
        sock.close(linger=0)
        if own:
            ctx.term()
