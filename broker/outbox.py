"""Outgoing messages, batched per peer and flushed once per event-loop iteration.

Each ZeroMQ send wakes the library's I/O thread; on a 2-core machine that costs ~25 µs, while
encoding one more message into a frame costs under 1 µs. So everything bound for one peer
within an iteration of the loop goes out as one frame, at the end of that iteration: under
load, many messages share a send; at rest, a message waits only for the current callbacks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from broker.protocol import MAX_BATCH, Message, encode_batch
from broker.sockets import FramePump, SendFailed

__all__ = ["Outbox"]


class Outbox:
    """Messages for each route (a ROUTER peer's id, or ``None`` on a DEALER), sent in batches.

    ``on_failure(route, reason)`` is called when a batch could not be handed to ZeroMQ (the
    peer is gone or its queue is full); the messages of that batch are dropped.
    """

    def __init__(self, pump: FramePump, on_failure: Callable[[bytes | None, str], None]) -> None:
        self.pump = pump
        self.on_failure = on_failure
        self._pending: dict[bytes | None, list[Message]] = {}
        self._scheduled = False
        self.frames_sent = 0
        self.messages_sent = 0

    def put(self, route: bytes | None, msg: Message) -> None:
        batch = self._pending.get(route)
        if batch is None:
            self._pending[route] = [msg]
        else:
            batch.append(msg)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def discard(self, route: bytes | None) -> None:
        """Forget what is waiting for ``route`` (the peer left)."""
        self._pending.pop(route, None)

    def flush(self) -> None:
        self._scheduled = False
        if self.pump.closed:
            self._pending.clear()
            return
        pending, self._pending = self._pending, {}
        for route, msgs in pending.items():
            for i in range(0, len(msgs), MAX_BATCH):
                chunk = msgs[i : i + MAX_BATCH]
                frame = encode_batch(chunk)
                try:
                    self.pump.send([frame] if route is None else [route, frame])
                except SendFailed as exc:
                    self.on_failure(route, str(exc))
                    break
                self.frames_sent += 1
                self.messages_sent += len(chunk)
