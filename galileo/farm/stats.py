"""The farm's state as plain data: what ``galileo farm stats`` prints and ``--json`` emits."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from broker.protocol import UpstreamStats
from galileo.policy.views import pair_paces, shared_paces

if TYPE_CHECKING:
    from galileo.farm.coordinator import Farm

__all__ = ["farm_snapshot"]

_ERRORS = ("http_error", "network_error", "bind_error", "decode_error", "protocol_error")


def _merge(stats: dict[str, UpstreamStats]) -> tuple[float, float, float]:
    """jobs/s over all upstreams; p50/p99 of the busiest one."""
    if not stats:
        return 0.0, 0.0, 0.0
    busiest = max(stats.values(), key=lambda s: s.rate)
    return round(sum(s.rate for s in stats.values()), 3), busiest.p50_ms, busiest.p99_ms


def farm_snapshot(farm: Farm) -> dict[str, Any]:
    now = time.monotonic()
    hub = farm.hub
    cooldowns = farm.policy.cooldowns
    active = cooldowns.active(now)
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    slots = {s.worker_id: s for s in farm.supervisor.slots.values()}
    paces: dict[str, list[dict[str, object]]] = {}  # by IP: what each of its pairs is paced at
    for pace in pair_paces(farm.policy.pacing):
        paces.setdefault(pace.ip, []).append(pace.as_dict())
    for wid in sorted(set(slots) | set(hub.workers)):
        slot = slots.get(wid)
        w = hub.workers.get(wid)
        ip = w.ip if w else slot.ip if slot else "?"
        seen.add(ip)
        cools = [
            {"upstream": up, "reason": cd.reason, "left_s": round(cd.until - now, 3)}
            for (cip, up), cd in sorted(active.items())
            if cip == ip
        ]
        if ip in cooldowns.suspended:
            state = "suspended"
        elif w is None:
            state = "dead" if slot is None or slot.state in ("failed", "stopped") else slot.state
            if slot is not None and slot.state == "ready":
                state = "dead"
        elif w.state == "draining" or (slot is not None and slot.state == "retiring"):
            state = "draining"
        elif cools:
            state = "cooling"
        else:
            state = "ready"
        results = farm.counters.by_result(ip)
        rate, p50, p99 = _merge(w.stats if w else {})
        rows.append(
            {
                "id": wid,
                "ip": ip,
                "host": w.host if w else os.uname().nodename,
                "pid": w.pid if w else (slot.pid if slot else None),
                "state": state,
                "inflight": len(w.inflight) if w else 0,
                "capacity": w.capacity if w else 0,
                "jobs_per_s": rate,
                "ok": results.get("ok", 0),
                "rate_limited": results.get("rate_limited", 0),
                "timeouts": results.get("timeout", 0),
                "errors": sum(results.get(k, 0) for k in _ERRORS),
                "p50_ms": p50,
                "p99_ms": p99,
                "cooldowns": cools,
                "uptime_s": round(now - w.registered, 1) if w else 0.0,
                "restarts": slot.restarts if slot else 0,
                "loop_lag_ms": w.loop_lag_ms if w else 0.0,
                "rss": w.rss if w else 0,
                "bad_frames": w.bad_frames if w else 0,
                "upstreams": farm.counters.by_upstream(ip),
                "pacing": paces.get(ip, []),
                "remote": slot is None,
            }
        )
    return {
        "farm": {
            "pid": os.getpid(),
            "uptime_s": round(now - farm.started_at, 1),
            "workers": len(rows),
            "ready": sum(1 for r in rows if r["state"] in ("ready", "cooling")),
            "queued": hub.queued,
            "queued_by_upstream": hub.queued_by_upstream(),
            "results": dict(hub.counts),
            "bad_frames": dict(hub.bad_frames),
            "late_results": hub.late_results,
            "suspended": dict(cooldowns.suspended),
            "held_out": [{"ip": ip, "reason": h.reason, "since": h.since} for ip, h in sorted(farm.held_out.items())],
            "shared_pacing": [
                {"upstream": g.upstream, "phase": g.phase, "rate_per_s": g.rate, "told": g.told}
                for g in shared_paces(farm.policy.pacing)
            ],
        },
        "workers": rows,
        # Round trips on chain per strategy and base mint: expected next to realised, in SOL.
        "round_trips": [
            {
                "strategy": strategy,
                "mint": mint,
                "on_chain": rt.on_chain,
                "expected_sol": rt.expected_lamports / 1e9,
                "realised_sol": rt.realised_lamports / 1e9,
            }
            for (strategy, mint), rt in sorted(farm.metrics.round_trips.items())
        ],
    }
