"""What /sim/stats reports: every HTTP request once with its final status, sends, Titan streams."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["OK_WINDOW_SECONDS", "SimStats", "TitanConnection", "TitanStream"]

REQUEST_LOG = 50_000  # the most recent requests, for /sim/requests
OK_WINDOW_SECONDS = 120


@dataclass
class TitanConnection:
    """One Titan WebSocket connection as /sim/stats lists it."""

    id: int
    ip: str
    protocol: str
    opened_at: float
    closed_at: float | None = None
    streams_opened: int = 0
    active_streams: int = 0

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this connection."""
        return {
            "id": self.id,
            "ip": self.ip,
            "protocol": self.protocol,
            "opened_at": self.opened_at,
            "closed_at": self.closed_at,
            "open": self.closed_at is None,
            "streams_opened": self.streams_opened,
            "active_streams": self.active_streams,
        }


@dataclass
class TitanStream:
    """One Titan quote stream as /sim/stats lists it."""

    connection: int
    id: int
    ip: str
    opened_at: float
    closed_at: float | None = None
    frames: int = 0

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this stream."""
        return {
            "connection": self.connection,
            "id": self.id,
            "ip": self.ip,
            "opened_at": self.opened_at,
            "closed_at": self.closed_at,
            "active": self.closed_at is None,
            "frames": self.frames,
        }


def _sends() -> dict[str, Any]:
    return {"received": 0, "accepted": 0, "rejected": Counter()}


@dataclass
class SimStats:
    """Counters behind /sim/stats. ``reset`` clears them (the chain and Titan sockets live on)."""

    started_wall: float
    total: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_service: dict[str, Counter[str]] = field(default_factory=dict)
    by_ip: dict[str, Counter[str]] = field(default_factory=dict)
    by_ip_service: dict[str, dict[str, Counter[str]]] = field(default_factory=dict)
    ok_per_second: dict[tuple[str, str], dict[int, int]] = field(default_factory=dict)
    sends: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: Counter[str] = field(default_factory=Counter)
    titan_connections: list[TitanConnection] = field(default_factory=list)
    titan_streams: list[TitanStream] = field(default_factory=list)
    titan_streams_opened: int = 0
    titan_streams_closed: int = 0
    next_titan_id: int = 1
    requests: deque[tuple[float, str, str, str, str]] = field(default_factory=lambda: deque(maxlen=REQUEST_LOG))

    def fresh(self, now_wall: float) -> SimStats:
        """Zeroed stats that still list the open Titan connections (for reset_stats)."""
        fresh = SimStats(started_wall=now_wall)
        fresh.titan_connections = [c for c in self.titan_connections if c.closed_at is None]
        fresh.titan_streams = [s for s in self.titan_streams if s.closed_at is None]
        fresh.next_titan_id = self.next_titan_id
        return fresh

    def record(self, ip: str, bucket: str, status: str, now_wall: float, path_qs: str = "") -> None:
        """Count one finished HTTP request (``status`` is ``"200"``, ``"429"``, ``"reset"`` ...)."""
        self.requests.append((now_wall, ip, bucket, path_qs, status))
        self.total += 1
        self.by_status[status] += 1
        self.by_service.setdefault(bucket, Counter())[status] += 1
        self.by_ip.setdefault(ip, Counter())[status] += 1
        self.by_ip_service.setdefault(ip, {}).setdefault(bucket, Counter())[status] += 1
        if status in ("200", "101"):
            per_sec = self.ok_per_second.setdefault((ip, bucket), {})
            sec = int(now_wall)
            per_sec[sec] = per_sec.get(sec, 0) + 1
            oldest = next(iter(per_sec))
            while oldest < sec - OK_WINDOW_SECONDS:
                del per_sec[oldest]
                oldest = next(iter(per_sec))

    def send(self, kind: str, accepted: bool, reason: str | None = None) -> None:
        """Count one transaction or bundle received on door ``kind`` (``jito_bundle``, ``rpc`` ...)."""
        entry = self.sends.setdefault(kind, _sends())
        entry["received"] += 1
        if accepted:
            entry["accepted"] += 1
        else:
            entry["rejected"][reason or "unknown"] += 1

    def titan_open(self, ip: str, protocol: str, now_wall: float) -> TitanConnection:
        """Register a new Titan connection."""
        conn = TitanConnection(self.next_titan_id, ip, protocol, now_wall)
        self.next_titan_id += 1
        self.titan_connections.append(conn)
        return conn

    def titan_stream(self, conn: TitanConnection, stream_id: int, now_wall: float) -> TitanStream:
        """Register a stream opened on ``conn``."""
        stream = TitanStream(conn.id, stream_id, conn.ip, now_wall)
        self.titan_streams.append(stream)
        if len(self.titan_streams) > 2000:  # keep the list bounded for long runs; totals stay exact
            old, recent = self.titan_streams[:-1000], self.titan_streams[-1000:]
            self.titan_streams = [s for s in old if s.closed_at is None] + recent
        self.titan_streams_opened += 1
        conn.streams_opened += 1
        conn.active_streams += 1
        return stream

    def titan_stream_closed(self, conn: TitanConnection, stream: TitanStream, now_wall: float) -> None:
        """Mark ``stream`` closed."""
        stream.closed_at = now_wall
        self.titan_streams_closed += 1
        conn.active_streams -= 1

    def snapshot(self, landed: dict[str, int], now_wall: float) -> dict[str, Any]:
        """The /sim/stats JSON (without chain fields, which the caller adds)."""
        cutoff = int(now_wall) - OK_WINDOW_SECONDS
        ok: dict[str, dict[str, dict[str, int]]] = {}
        for (ip, bucket), per_sec in self.ok_per_second.items():
            secs = {str(s): n for s, n in per_sec.items() if s >= cutoff}
            if secs:
                ok.setdefault(ip, {})[bucket] = secs
        sends = {
            kind: {**v, "rejected": dict(v["rejected"]), "landed": landed.get(kind, 0)}
            for kind, v in self.sends.items()
        }
        active: Counter[str] = Counter()
        for c in self.titan_connections:
            if c.closed_at is None and c.active_streams:
                active[c.ip] += c.active_streams
        return {
            "since": self.started_wall,
            "requests": {
                "total": self.total,
                "by_status": dict(self.by_status),
                "by_service": {k: dict(v) for k, v in self.by_service.items()},
                "by_ip": {k: dict(v) for k, v in self.by_ip.items()},
                "by_ip_service": {ip: {b: dict(c) for b, c in v.items()} for ip, v in self.by_ip_service.items()},
            },
            "ok_per_second": ok,
            "faults": dict(self.faults),
            "sends": sends,
            "titan": {
                "connections_total": len(self.titan_connections),
                "connections_open": sum(1 for c in self.titan_connections if c.closed_at is None),
                "connections": [c.to_json() for c in self.titan_connections[-200:]],
                "streams": [st.to_json() for st in self.titan_streams[-200:]],
                "streams_opened": self.titan_streams_opened,
                "streams_closed": self.titan_streams_closed,
                "active_streams": sum(active.values()),
                "active_streams_by_ip": dict(active),
            },
        }
