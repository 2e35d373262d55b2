"""What /sim/stats reports: every HTTP request once with its final status, per-second series,
limiter refusals by reason, sends, Titan streams."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from galileo.sim.series import SeriesTable

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
    token: str = ""  # a fingerprint of the token's jti, never the token
    closed_at: float | None = None
    close_reason: str = ""
    streams_opened: int = 0
    active_streams: int = 0

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this connection."""
        return {
            "id": self.id,
            "ip": self.ip,
            "protocol": self.protocol,
            "token": self.token,
            "opened_at": self.opened_at,
            "closed_at": self.closed_at,
            "close_reason": self.close_reason,
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
    pair: str = ""  # input mint -> output mint, and the amount asked
    amount: int = 0

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
            "pair": self.pair,
            "amount": self.amount,
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
    seconds: int = OK_WINDOW_SECONDS
    series: SeriesTable[tuple[str, str, str]] = field(init=False)
    refused: dict[str, dict[str, Counter[str]]] = field(default_factory=dict)
    held: dict[str, list[float]] = field(default_factory=dict)  # bucket -> [seconds served, requests]
    sends: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: Counter[str] = field(default_factory=Counter)
    titan_connections: list[TitanConnection] = field(default_factory=list)
    titan_streams: list[TitanStream] = field(default_factory=list)
    titan_streams_opened: int = 0
    titan_streams_closed: int = 0
    titan_refused: Counter[str] = field(default_factory=Counter)
    titan_connections_total: int = 0
    next_titan_id: int = 1
    requests: deque[tuple[float, str, str, str, str]] = field(default_factory=lambda: deque(maxlen=REQUEST_LOG))

    def __post_init__(self) -> None:
        self.series = SeriesTable(self.seconds)

    def fresh(self, now_wall: float, seconds: int | None = None) -> SimStats:
        """Zeroed stats that still list the open Titan connections (for reset_stats)."""
        fresh = SimStats(started_wall=now_wall, seconds=seconds or self.seconds)
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
        self.series.add((ip, bucket, status), int(now_wall))

    def refusal(self, ip: str, bucket: str, reason: str) -> None:
        """Count one limiter refusal by ``reason`` (``limit``, ``penalty``, ``boxed``, ``concurrency``, ``shed``)."""
        self.refused.setdefault(ip, {}).setdefault(bucket, Counter())[reason] += 1

    def served(self, bucket: str, seconds: float) -> None:
        """One request a limiter admitted was served for ``seconds`` (admission to answer): a slot's hold."""
        entry = self.held.setdefault(bucket, [0.0, 0])
        entry[0] += seconds
        entry[1] += 1

    def send(self, kind: str, accepted: bool, reason: str | None = None) -> None:
        """Count one transaction or bundle received on door ``kind`` (``jito_bundle``, ``rpc`` ...)."""
        entry = self.sends.setdefault(kind, _sends())
        entry["received"] += 1
        if accepted:
            entry["accepted"] += 1
        else:
            entry["rejected"][reason or "unknown"] += 1

    def _limits(self) -> dict[str, Any]:
        by_bucket: dict[str, Counter[str]] = {}
        for buckets in self.refused.values():
            for bucket, reasons in buckets.items():
                by_bucket.setdefault(bucket, Counter()).update(reasons)
        return {
            "refused": {b: dict(c) for b, c in by_bucket.items()},
            "refused_by_ip": {ip: {b: dict(c) for b, c in v.items()} for ip, v in self.refused.items()},
            "penalty_box_entries": {b: c["penalty"] for b, c in by_bucket.items() if c["penalty"]},
            "concurrency_refusals": {b: c["concurrency"] for b, c in by_bucket.items() if c["concurrency"]},
            "held": {b: {"seconds": round(v[0], 6), "admitted": int(v[1])} for b, v in self.held.items()},
        }

    def titan_open(self, ip: str, protocol: str, now_wall: float, token: str = "") -> TitanConnection:
        """Register a new Titan connection (``token``: a fingerprint of its jti)."""
        conn = TitanConnection(self.next_titan_id, ip, protocol, now_wall, token)
        self.next_titan_id += 1
        self.titan_connections_total += 1
        self.titan_connections.append(conn)
        if len(self.titan_connections) > 2000:  # bounded like the streams: open ones and the latest 1000
            old, recent = self.titan_connections[:-1000], self.titan_connections[-1000:]
            self.titan_connections = [c for c in old if c.closed_at is None] + recent
        return conn

    def titan_refusal(self, reason: str) -> None:
        """Count a refused Titan connection or stream (``token_in_use``, ``stream_limit`` ...)."""
        self.titan_refused[reason] += 1

    def titan_stream(
        self, conn: TitanConnection, stream_id: int, now_wall: float, pair: str = "", amount: int = 0
    ) -> TitanStream:
        """Register a stream opened on ``conn``."""
        stream = TitanStream(conn.id, stream_id, conn.ip, now_wall, pair=pair, amount=amount)
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
        end = int(now_wall)
        ok: dict[str, dict[str, dict[str, int]]] = {}
        per_ip: dict[str, dict[str, dict[str, list[int]]]] = {}
        per_service: dict[str, dict[str, list[int]]] = {}
        for key, values in self.series.items(end):
            ip, bucket, status = key
            per_ip.setdefault(ip, {}).setdefault(bucket, {})[status] = values
            summed = per_service.setdefault(bucket, {}).setdefault(status, [0] * len(values))
            summed[:] = [a + b for a, b in zip(summed, values, strict=True)]
            if status in ("200", "101"):
                secs = ok.setdefault(ip, {}).setdefault(bucket, {})
                for i, n in enumerate(values):
                    if n:
                        sec = str(end - len(values) + 1 + i)
                        secs[sec] = secs.get(sec, 0) + n
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
            "per_second": {
                "seconds": self.seconds,
                "end": end,
                "by_ip_service": per_ip,
                "by_service": per_service,
                "dropped_series": self.series.dropped,
            },
            "limits": self._limits(),
            "faults": dict(self.faults),
            "sends": sends,
            "titan": {
                "connections_total": self.titan_connections_total,
                "connections_open": sum(1 for c in self.titan_connections if c.closed_at is None),
                "connections": [c.to_json() for c in self.titan_connections[-200:]],
                "streams": [st.to_json() for st in self.titan_streams[-200:]],
                "streams_opened": self.titan_streams_opened,
                "streams_closed": self.titan_streams_closed,
                "active_streams": sum(active.values()),
                "active_streams_by_ip": dict(active),
                "refused": dict(self.titan_refused),
            },
        }
