"""The worker's end of the wire: one DEALER to the coordinator, heartbeats, reconnects.

Heartbeats are sent from the worker's own event loop, so a stuck loop stops them and the
coordinator notices (a side thread answering pings would hide it). A coordinator silent for
3 intervals is gone: a local worker exits (no orphans); a worker joined from another host
opens a fresh socket and registers again, backing off from 1 s to 32 s, as the ZeroMQ guide's
Paranoid Pirate worker does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Literal

import msgspec
import zmq

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
    decode_batch,
)
from broker.sockets import FramePump, curve_client, make_dealer

__all__ = ["CurveSettings", "LinkEnd", "WorkerLink"]

log = logging.getLogger("broker.link")

LinkEnd = Literal["drained", "coordinator_lost", "stopped"]
RECONNECT_INITIAL = 1.0
RECONNECT_MAX = 32.0


class CurveSettings(msgspec.Struct, frozen=True):
    """A worker's CURVE identity for a tcp coordinator: its key file and the server's public key."""

    secret_key_path: str
    server_public_key: bytes


class WorkerLink:
    """Connects to the coordinator and turns its messages into calls on the worker.

    ``on_job(dispatch)`` runs a job (it must not block); ``on_drain()`` is called once when the
    coordinator asks the worker to retire; ``heartbeat()`` supplies the load report.
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
    ) -> None:
        self.endpoint = endpoint
        self.ready = ready
        self.on_job = on_job
        self.on_drain = on_drain
        self.heartbeat = heartbeat
        self.on_reconnect = on_reconnect
        self.reconnect = reconnect
        self.curve = curve
        self.ctx = ctx or zmq.Context.instance()
        self.hb_interval = heartbeat_interval
        self.bad_frames = 0
        self.registrations = 0
        self._pump: FramePump | None = None
        self._outbox: Outbox | None = None
        self._last_seen = 0.0
        self._last_sent = 0.0
        self._last_beat = 0.0
        self._ended: asyncio.Future[LinkEnd] | None = None
        self._heard_once = False

    # --- public --------------------------------------------------------------------

    async def run(self) -> LinkEnd:
        """Serve until drained, stopped, or (for a local worker) the coordinator is gone."""
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

    # --- internals -----------------------------------------------------------------

    def _open(self) -> None:
        sock = make_dealer(self.ctx, self.ready.worker_id.encode())
        if self.curve is not None:
            curve_client(sock, self.curve.secret_key_path, self.curve.server_public_key)
        sock.connect(self.endpoint)
        self._pump = FramePump(sock, self._on_frames)
        self._outbox = Outbox(self._pump, self._on_send_failure)
        self._last_seen = time.monotonic()
        self._heard_once = False
        self.registrations += 1
        self.send(self.ready)

    def _close(self) -> None:
        if self._outbox is not None:
            self._outbox.flush()
            self._outbox = None
        if self._pump is not None:
            self._pump.close()
            self._pump = None

    def _end(self, why: LinkEnd) -> None:
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(why)

    def _on_frames(self, frames: list[bytes]) -> None:
        if len(frames) != 1:
            self.bad_frames += 1
            return
        try:
            msgs = decode_batch(frames[0])
        except ProtocolError:
            self.bad_frames += 1
            return
        self._last_seen = time.monotonic()
        self._heard_once = True
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

    async def _heartbeat_loop(self) -> None:
        limit = self.hb_interval * HEARTBEAT_LIVENESS
        while True:
            await asyncio.sleep(self.hb_interval / 4)
            now = time.monotonic()
            if now - self._last_seen > limit:
                self._end("coordinator_lost")
                return
            if now - self._last_beat >= self.hb_interval * 1.25:
                # Normally the answer to the coordinator's round (about every interval, busy or
                # not: it carries the load report); this is for when its heartbeats are late.
                self._beat(now)

    def _beat(self, now: float) -> None:
        self._last_beat = now
        self.send(self.heartbeat())
