"""What the coordinator knows of Titan: each token's connection, each (pair, size)'s stream and quote."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Literal

from broker.results import TitanConnectionSummary, TitanInfo, TitanQuote
from broker.types import JobOutcome
from galileo.strategy.titan_plan import Backoff, Key
from galileo.upstreams import QuoteRequest

__all__ = ["Link", "StreamSlot", "key_of"]


def key_of(req: QuoteRequest) -> Key:
    return (req.input_mint, req.output_mint, req.amount)


@dataclass(eq=False)
class Link:
    """One token's connection, as the coordinator sees it. ``token`` is the env var name."""

    token: str
    generation: int = 0
    lease: str = ""
    state: Literal["down", "connecting", "open", "closing"] = "down"
    ip: str | None = None  # where it runs (or ran last)
    healthy: bool = True  # whether that IP may take it again
    retry_at: float = 0.0
    backoff: Backoff = field(default_factory=Backoff)
    info: TitanInfo | None = None
    limit: int = 0
    cut: int | None = None  # a lower limit the server showed by refusing
    cut_until: float = -math.inf
    streams: dict[int, Key] = field(default_factory=dict)  # open stream id -> key
    pending: set[Key] = field(default_factory=set)  # keys whose subscribe is out
    unclaimed: dict[int, tuple[TitanQuote, str]] = field(default_factory=dict)
    closed: TitanConnectionSummary | None = None
    future: asyncio.Future[JobOutcome] | None = None
    connects: int = 0

    def capacity(self, now: float) -> int:
        return self.cut if self.cut is not None and now < self.cut_until else self.limit

    def free(self, now: float) -> int:
        return self.capacity(now) - len(self.streams) - len(self.pending)


@dataclass(eq=False)
class StreamSlot:
    """One (pair, size): its stream (if any) and its latest quote."""

    request: QuoteRequest
    link: Link | None = None
    stream_id: int | None = None
    busy: bool = False  # a subscribe for it is out
    ticket: int = 0  # which subscribe owns ``busy``
    since: float = 0.0  # when its stream opened
    latest: TitanQuote | None = None
    ip: str | None = None  # the IP its latest quote came through
    updated: float = -math.inf
    consumed: float = -math.inf
    updates: int = 0
    opened: int = 0  # streams opened for it so far
    fresh: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def serving_ip(self) -> str | None:
        return self.link.ip if self.link is not None and self.stream_id is not None else None
