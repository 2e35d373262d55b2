"""``galileo probe``: a temporary farm sends N GETs of a URL from every IP and reports each IP.

The operator's "which of my addresses are banned?" tool: every request is pinned to its IP
(``require_ip``), so each line is that address's own answer.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from broker.jobs import HttpRequest
from broker.types import JobOutcome, JobSpec
from galileo.config import GalileoConfig
from galileo.farm.coordinator import Farm

__all__ = ["ProbeRow", "probe"]


@dataclass
class ProbeRow:
    ip: str
    sent: int = 0
    ok: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    def verdict(self) -> str:
        if self.sent and self.ok == self.sent:
            return "ok"
        if self.statuses.get("429") or self.statuses.get("403"):
            return "limited or banned"
        if self.ok:
            return "partly failing"
        return "failing"

    def to_json(self) -> dict[str, object]:
        lat = sorted(self.latencies_ms)
        return {
            "ip": self.ip,
            "sent": self.sent,
            "ok": self.ok,
            "statuses": dict(self.statuses),
            "p50_ms": round(statistics.median(lat), 3) if lat else None,
            "max_ms": round(lat[-1], 3) if lat else None,
            "errors": dict(self.errors),
            "verdict": self.verdict(),
        }


async def probe(cfg: GalileoConfig, url: str, count: int, timeout: float) -> list[ProbeRow]:
    """Run the probe on a temporary farm built from ``cfg``'s network section."""
    with tempfile.TemporaryDirectory(prefix="galileo-probe-") as tmp:
        async with Farm(cfg, runtime_dir=Path(tmp), log_level="warning") as farm:
            assert farm.inventory is not None
            await farm.wait_ready(timeout=15)
            ips = [r.ip for r in farm.inventory.usable]
            rows = {ip: ProbeRow(ip) for ip in ips}
            jobs: list[asyncio.Future[JobOutcome]] = []
            for ip in ips:
                for _ in range(count):
                    spec = JobSpec(
                        HttpRequest(url=url),
                        upstream=f"probe:{ip}",
                        timeout=timeout,
                        require_ip=ip,
                        task="probe",
                    )
                    jobs.append(farm.submit(spec))
                    rows[ip].sent += 1
            for out in await asyncio.gather(*jobs):
                row = rows[out.ip or ""] if out.ip in rows else None
                if row is None:
                    continue
                if out.status:
                    row.statuses[str(out.status)] += 1
                if out.ok:
                    row.ok += 1
                    row.latencies_ms.append(out.latency * 1000)
                else:
                    row.errors[f"{out.result}: {out.error}"[:120]] += 1
    return [rows[ip] for ip in ips]
