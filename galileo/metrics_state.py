"""The farm's state as Prometheus series, read at scrape time rather than kept up to date.

In-flight counts, worker liveness, queue depths and the like change on every job; counting
them in hooks would put work on the hot path and leave stale series behind when a worker
goes. Instead :class:`FarmStateCollector` reads the hub, the supervisor, the policy and the
inventory when Prometheus asks. :meth:`FarmStateCollector.freeze` takes that reading in the
event loop's thread, so the text can then be rendered in another thread without touching
the farm's dicts while the loop changes them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from galileo.policy.views import pair_paces, shared_paces

if TYPE_CHECKING:
    from broker.types import WorkerInfo
    from galileo.farm.coordinator import Farm

__all__ = ["BAD_FRAME_REASONS", "STATE_SERIES", "FarmStateCollector"]

# name -> (type, help, labels). Counter names carry their `_total`, as exposed.
Series = dict[str, tuple[str, str, tuple[str, ...]]]  # name -> (kind, help, label names)

STATE_SERIES: Series = {
    "galileo_ip_inflight": ("gauge", "Jobs in flight on the IP's worker(s), at scrape time.", ("ip",)),
    "galileo_ip_utilization_ratio": (
        "gauge",
        "In-flight jobs / worker capacity of the IP (0..1), at scrape time.",
        ("ip",),
    ),
    "galileo_ip_cooldown_active": (
        "gauge",
        "1 for each (IP, upstream) pair cooling down at scrape time, 0 for the other pairs seen.",
        ("ip", "upstream"),
    ),
    "galileo_ip_suspended": (
        "gauge",
        "1 for an IP suspended after a bind error (until a rescan finds it bindable), else 0.",
        ("ip",),
    ),
    "galileo_network_ip_inventory_total": (
        "gauge",
        "1 per usable address of the last IP inventory scan (auto-detected or bot.network.manual_ips).",
        ("ip",),
    ),
    "galileo_worker_up": ("gauge", "Registered, ready workers sending from the IP (0 when none).", ("ip",)),
    "galileo_worker_restarts_total": (
        "counter",
        "Restarts of the IP's local worker (as `galileo farm stats` shows), plus re-registrations of remote ones.",
        ("ip",),
    ),
    "galileo_worker_loop_lag_seconds": ("gauge", "Event-loop lag the IP's worker reported last, seconds.", ("ip",)),
    "galileo_worker_rss_bytes": ("gauge", "Resident memory the IP's worker reported last, bytes.", ("ip",)),
    "galileo_queue_depth": ("gauge", "Jobs waiting in the coordinator for an IP, by upstream.", ("upstream",)),
    "galileo_bad_frames_total": ("counter", "Malformed or unexpected frames the hub dropped, by reason.", ("reason",)),
    "galileo_late_results_total": ("counter", "Results that arrived after their job had ended, dropped.", ()),
    "galileo_pace_requests_per_second": (
        "gauge",
        "Requests/s the (IP, upstream) pair is paced at: told (rate_limit_per_ip, at its 98 %) or learnt from "
        "its 429s. Absent while it has met no limit, is still measuring one, or a shared budget paces it.",
        ("ip", "upstream", "source"),
    ),
    "galileo_pace_inflight_limit": (
        "gauge",
        "Requests in flight the (IP, upstream) pair may have, where its 429s showed a concurrency cap: the cap "
        "found, or fewer where the upstream queues at it.",
        ("ip", "upstream"),
    ),
    "galileo_pace_shared_requests_per_second": (
        "gauge",
        "Requests/s over every IP an upstream's one budget (an API key's, told or learnt) is paced at.",
        ("upstream", "source"),
    ),
    "galileo_lander_dry_run": (
        "gauge",
        "1 while lander.mode is dry_run (transactions are built and signed, none is sent), 0 when live.",
        (),
    ),
}
# The hub's reasons for dropping a frame (broker/hub.py), exported at 0 until one happens.
BAD_FRAME_REASONS = ("framing", "undecodable", "other_version", "wrong_direction", "unknown_worker", "bad_ready")


def family(series: Series, name: str) -> CounterMetricFamily | GaugeMetricFamily:
    """An empty family for ``name`` as ``series`` declares it (kind, help, label names)."""
    kind, doc, labels = series[name]
    if kind == "counter":
        return CounterMetricFamily(name, doc, labels=list(labels))
    return GaugeMetricFamily(name, doc, labels=list(labels))


def _family(name: str) -> CounterMetricFamily | GaugeMetricFamily:
    return family(STATE_SERIES, name)


class ReadingCollector:
    """A prometheus_client collector that reads live state (:meth:`read`) in the loop's thread.

    A render in another thread is served the reading :meth:`freeze` took in the loop's thread
    just before (and :meth:`thaw` drops); a collect in the loop's own thread reads afresh.
    """

    series: ClassVar[Series]

    def __init__(self) -> None:
        self._frozen: list[Metric] | None = None
        self._frozen_by: int | None = None

    def describe(self) -> Iterable[Metric]:
        return [family(self.series, name) for name in self.series]

    def collect(self) -> Iterable[Metric]:
        if self._frozen is not None and self._frozen_by != threading.get_ident():
            return self._frozen
        return self.read()

    def freeze(self) -> None:
        """Take a reading now (in the loop's thread) for a render in another thread."""
        self._frozen = self.read()
        self._frozen_by = threading.get_ident()

    def thaw(self) -> None:
        self._frozen = None
        self._frozen_by = None

    def read(self) -> list[Metric]:
        raise NotImplementedError


class FarmStateCollector(ReadingCollector):
    """A prometheus_client collector over a :class:`~galileo.farm.coordinator.Farm`'s live state."""

    series = STATE_SERIES

    def __init__(self) -> None:
        super().__init__()
        self.farm: Farm | None = None
        # Restart counts must only grow, while supervisor slots come and go (scale, rescan).
        self._restarts: dict[str, int] = {}  # ip -> total so far
        self._slot_seen: dict[str, int] = {}  # local worker id -> slot.restarts already counted
        self._upstreams: set[str] = set()  # every upstream ever queued: an emptied queue reads 0
        self.known_upstreams: set[str] = set()  # every upstream a job named (FarmMetrics keeps it)

    def worker_registered_again(self, ip: str) -> None:
        """A remote worker registered again (restarted or reconnected)."""
        self._restarts[ip] = self._restarts.get(ip, 0) + 1

    # --- reading the farm ------------------------------------------------------------

    def read(self) -> list[Metric]:
        farm = self.farm
        if farm is None:
            return []
        fams = {name: _family(name) for name in STATE_SERIES}
        hub = farm.hub
        by_ip: dict[str, list[WorkerInfo]] = {}
        for w in hub.workers.values():
            by_ip.setdefault(w.ip, []).append(w)
        inventory = [r.ip for r in farm.inventory.usable] if farm.inventory is not None else []
        slots = list(farm.supervisor.slots.values())
        ips = sorted({*inventory, *(s.ip for s in slots), *by_ip})

        self._count_restarts(farm)
        for ip in ips:
            ws = by_ip.get(ip, [])
            inflight = sum(len(w.inflight) for w in ws)
            capacity = sum(w.capacity for w in ws)
            fams["galileo_ip_inflight"].add_metric([ip], inflight)
            fams["galileo_ip_utilization_ratio"].add_metric([ip], inflight / capacity if capacity else 0.0)
            fams["galileo_worker_up"].add_metric([ip], sum(1 for w in ws if w.state == "ready"))
            if ws:
                fams["galileo_worker_loop_lag_seconds"].add_metric([ip], max(w.loop_lag_ms for w in ws) / 1000.0)
                fams["galileo_worker_rss_bytes"].add_metric([ip], sum(w.rss for w in ws))
        for ip in sorted({*ips, *self._restarts}):  # a retired address keeps its count
            fams["galileo_worker_restarts_total"].add_metric([ip], self._restarts.get(ip, 0))
        for ip in inventory:
            fams["galileo_network_ip_inventory_total"].add_metric([ip], 1)

        cooldowns = farm.policy.cooldowns
        active = cooldowns.active(hub.clock())
        upstreams = sorted({*self.known_upstreams, *(u for _, u in active)})
        for ip in sorted({*ips, *(i for i, _ in active)}):
            for upstream in upstreams:
                fams["galileo_ip_cooldown_active"].add_metric([ip, upstream], 1 if (ip, upstream) in active else 0)
        for ip in sorted({*ips, *cooldowns.suspended}):
            fams["galileo_ip_suspended"].add_metric([ip], 1 if ip in cooldowns.suspended else 0)

        queued = hub.queued_by_upstream()
        self._upstreams.update(queued)
        for upstream in sorted(self._upstreams):
            fams["galileo_queue_depth"].add_metric([upstream], queued.get(upstream, 0))
        bad = {reason: 0 for reason in BAD_FRAME_REASONS} | dict(hub.bad_frames)
        for reason, n in sorted(bad.items()):
            fams["galileo_bad_frames_total"].add_metric([reason], n)
        fams["galileo_late_results_total"].add_metric([], hub.late_results)
        fams["galileo_lander_dry_run"].add_metric([], 1 if farm.cfg.lander.mode != "live" else 0)
        self._read_pacing(farm, fams)
        return list(fams.values())

    @staticmethod
    def _read_pacing(farm: Farm, fams: dict[str, CounterMetricFamily | GaugeMetricFamily]) -> None:
        for pair in pair_paces(farm.policy.pacing):
            source = "told" if pair.told else "learned"
            if pair.rate is not None and pair.phase == "hold":
                fams["galileo_pace_requests_per_second"].add_metric([pair.ip, pair.upstream, source], pair.rate)
            if pair.cap is not None:
                fams["galileo_pace_inflight_limit"].add_metric([pair.ip, pair.upstream], pair.cap)
        for budget in shared_paces(farm.policy.pacing):
            if budget.rate is not None and budget.phase == "hold":
                source = "told" if budget.told else "learned"
                fams["galileo_pace_shared_requests_per_second"].add_metric([budget.upstream, source], budget.rate)

    def _count_restarts(self, farm: Farm) -> None:
        live: set[str] = set()
        for slot in farm.supervisor.slots.values():
            live.add(slot.worker_id)
            seen = self._slot_seen.get(slot.worker_id, 0)
            if slot.restarts < seen:  # a new slot for the same address starts from 0
                seen = 0
            if slot.restarts > seen:
                self._restarts[slot.ip] = self._restarts.get(slot.ip, 0) + slot.restarts - seen
            self._slot_seen[slot.worker_id] = slot.restarts
        for wid in [w for w in self._slot_seen if w not in live]:
            del self._slot_seen[wid]
