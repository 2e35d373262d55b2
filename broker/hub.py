"""The hub: the coordinator's end of the wire. One ROUTER per security, every worker, every job.

:class:`Hub` is :class:`broker.core.HubCore` (the registry, the queues, liveness and the
exactly-once promise: read its docstring) behind ZeroMQ sockets and the asyncio loop: it
decodes frames into the core, sends the core's messages in per-peer batches
(:mod:`broker.outbox`), pumps the queues once per loop iteration, wakes for cooldowns and
deadlines, and ticks four times a heartbeat.

On a CURVE socket every message carries the key it was sent with (the ZAP handler's User-Id,
see :mod:`broker.auth`), and the core judges it by that key.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable

import zmq

from broker.core import LOCAL, HubCore, Peer
from broker.outbox import Outbox
from broker.protocol import HEARTBEAT_INTERVAL, Message, ProtocolError, VersionError, decode_batch
from broker.sockets import FramePump, UserIdFramePump, curve_server, make_router
from broker.types import Policy, WorkerInfo

__all__ = ["Hub"]

log = logging.getLogger("broker.hub")


class Hub(HubCore):
    """Coordinator side of the farm's wire. Create, :meth:`bind`, :meth:`start`, then :meth:`submit`."""

    def __init__(
        self,
        policy: Policy,
        *,
        ctx: zmq.Context[zmq.Socket[bytes]] | None = None,
        max_queued: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
    ) -> None:
        super().__init__(policy, self, clock=clock, heartbeat_interval=heartbeat_interval, max_queued=max_queued)
        self.ctx = ctx or zmq.Context.instance()
        self._socks: list[zmq.Socket[bytes]] = []
        self._curve: list[str | None] = []
        self._pumps: list[FramePump] = []
        self._outboxes: list[Outbox] = []
        self._pump_scheduled = False
        self._wake: asyncio.TimerHandle | None = None
        self._wake_at = float("inf")
        self._ticker: asyncio.Task[None] | None = None
        self.on_pump_due = self.schedule_pump

    # --- lifecycle -------------------------------------------------------------------

    def bind(self, endpoint: str, *, curve_secret_key_path: str | None = None) -> None:
        """Listen on ``endpoint``. Endpoints with the same security share one ROUTER socket.

        With ``curve_secret_key_path`` the socket is a CURVE server: only clients whose public
        key a running ZAP handler allows can connect (see :class:`broker.auth.KeyRing`).
        """
        if curve_secret_key_path in self._curve:
            self._socks[self._curve.index(curve_secret_key_path)].bind(endpoint)
            return
        sock = make_router(self.ctx)
        if curve_secret_key_path is not None:
            curve_server(sock, curve_secret_key_path)
        sock.bind(endpoint)
        self._socks.append(sock)
        self._curve.append(curve_secret_key_path)

    async def start(self) -> None:
        for i, sock in enumerate(self._socks):
            pump: FramePump
            if self._curve[i] is None:
                pump = FramePump(sock, functools.partial(self._on_frames, via=i))
            else:
                pump = UserIdFramePump(sock, functools.partial(self._on_frames_from, via=i))
            self._pumps.append(pump)
            self._outboxes.append(
                Outbox(
                    pump,
                    functools.partial(self._on_send_failure, via=i),
                    on_unsendable=functools.partial(self._on_unsendable, via=i),
                )
            )
        self._ticker = asyncio.create_task(self._tick_forever(), name="hub-ticker")

    async def close(self, grace: float = 5.0) -> None:
        """Cancel queued jobs, drain workers for up to ``grace`` s, cancel what is still in flight."""
        if self._closing:
            return
        self.begin_close()
        deadline = self.clock() + grace
        while self.inflight_total and self.clock() < deadline:
            await asyncio.sleep(0.02)
        self.end_close()
        if self._ticker:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        if self._wake:
            self._wake.cancel()
        for outbox in self._outboxes:
            outbox.flush()
        for pump in self._pumps:
            pump.close()
        if not self._pumps:
            for sock in self._socks:
                sock.close(linger=0)

    # --- the transport ---------------------------------------------------------------

    def send(self, peer: Peer, msg: Message) -> None:
        """Queue ``msg``; it leaves with the rest of this loop iteration's batch for ``peer``."""
        self._outboxes[peer[0]].put(peer[1], msg)

    def forget(self, peer: Peer) -> None:
        self._outboxes[peer[0]].discard(peer[1])

    def _on_send_failure(self, route: bytes | None, reason: str, via: int) -> None:
        self.unreachable((via, route or b""), reason)

    def _on_unsendable(self, route: bytes | None, msg: Message, why: str, via: int) -> None:
        self.too_large((via, route or b""), msg, why)

    def _send(self, worker: WorkerInfo, msg: Message, now: float) -> None:
        # The hot path, a call shorter than HubCore's (which goes through send() for any transport).
        self._outboxes[worker.via].put(worker.routing_id, msg)
        worker.last_sent = now

    def _on_frames(self, frames: list[bytes], via: int = 0) -> None:
        """A frame from a local socket: :meth:`receive` for ``LOCAL``, inlined (it runs per frame)."""
        msgs = self._decode(frames)
        if msgs is None:
            return
        if LOCAL in self._revoked:
            self.bad_frames["revoked_key"] += len(msgs)
            return
        peer = (via, frames[0])
        now = self.clock()
        for msg in msgs:
            self._on_message(peer, LOCAL, msg, now)

    def _on_frames_from(self, frames: list[bytes], principal: bytes, via: int = 0) -> None:
        msgs = self._decode(frames)
        if msgs is not None:
            self.receive((via, frames[0]), msgs, principal)

    def _decode(self, frames: list[bytes]) -> list[Message] | None:
        """A frame's messages, or None when it has none to give (counted by why)."""
        if len(frames) != 2:
            self.bad_frames["framing"] += 1
            return None
        try:
            return decode_batch(frames[1])
        except VersionError as exc:  # another release's protocol: said once (a flood logs one line)
            if not self.bad_frames["other_version"]:
                log.error("%s; its frames are dropped", exc)
            self.bad_frames["other_version"] += 1
        except ProtocolError:
            self.bad_frames["undecodable"] += 1
        return None

    # --- the loop ----------------------------------------------------------------------

    def schedule_pump(self) -> None:
        """Dispatch what can be dispatched, once, at the next loop iteration."""
        if not self._pump_scheduled and not self._closing:
            self._pump_scheduled = True
            asyncio.get_running_loop().call_soon(self._pump_queues)

    def _pump_queues(self) -> None:
        self._pump_scheduled = False
        self._arm_wake(self.pump())

    def _arm_wake(self, at: float) -> None:
        if at == float("inf") or at >= self._wake_at:
            return
        if self._wake:
            self._wake.cancel()
        self._wake_at = at
        delay = max(0.0, at - self.clock())
        self._wake = asyncio.get_running_loop().call_later(delay, self._on_wake)

    def _on_wake(self) -> None:
        self._wake = None
        self._wake_at = float("inf")
        self.schedule_pump()

    async def _tick_forever(self) -> None:
        period = self.hb_interval / 4
        while True:
            await asyncio.sleep(period)
            self.tick()
