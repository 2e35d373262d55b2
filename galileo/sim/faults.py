"""Seeded fault draws: which HTTP request gets a latency spike, a timeout, a reset, a 503 ..."""

from __future__ import annotations

import random
import socket
import struct
from typing import NamedTuple

from aiohttp import web

from galileo.sim.config import FAULT_KINDS

__all__ = ["SLOW_BODY_SECONDS", "TIMEOUT_HOLD_SECONDS", "Fault", "FaultPlan", "reset_connection"]

TIMEOUT_HOLD_SECONDS = 30.0
SLOW_BODY_SECONDS = 2.0


class Fault(NamedTuple):
    """A drawn fault: its kind and a uniform ``param`` in [0, 1) for its size (spike length ...)."""

    kind: str
    param: float

    @property
    def spike_seconds(self) -> float:
        """For ``latency_spike``: 200–1000 ms."""
        return 0.2 + 0.8 * self.param


class FaultPlan:
    """Draws at most one fault per request; the same seed and request order give the same faults."""

    def __init__(self, faults: dict[str, float], seed: int) -> None:
        self.faults = dict(faults)
        self._rng = random.Random(seed * 7919 + 17)

    def draw(self) -> Fault | None:
        """The fault for the next request, or None."""
        if not self.faults:
            return None
        u, param = self._rng.random(), self._rng.random()  # always two draws: order-stable
        edge = 0.0
        for kind in FAULT_KINDS:
            edge += self.faults.get(kind, 0.0)
            if u < edge:
                return Fault(kind, param)
        return None


def reset_connection(request: web.BaseRequest) -> None:
    """Abort the request's TCP connection with an RST (SO_LINGER 0), sending no response."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass  # still closes, only without the RST
    transport.abort()
