"""Titan's connections and streams as Prometheus series, read from the engines at scrape time.

An engine with a Titan buy leg registers a :data:`~galileo.client.TitanSource` (through
:meth:`galileo.metrics.FarmMetrics.titan_source`); :class:`TitanCollector` reads every source
when Prometheus asks. The ``token`` label is the env var that holds the token, never the
token. Like :class:`~galileo.metrics_state.FarmStateCollector`, :meth:`TitanCollector.freeze`
takes the reading in the event loop's thread, for a render in another.
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from galileo.client import TitanReport, TitanSource
from galileo.metrics_state import ReadingCollector, Series, family

__all__ = ["TITAN_SERIES", "TitanCollector"]

# name -> (type, help, labels). Counter names carry their `_total`, as exposed.
TITAN_SERIES: Series = {
    "galileo_titan_connections": (
        "gauge",
        "Titan connections by token (its env var name) and IP: 1 open, 0 down (on the IP it had last).",
        ("token", "ip"),
    ),
    "galileo_titan_streams": ("gauge", "Titan quote streams open, by token and IP.", ("token", "ip")),
    "galileo_titan_stream_limit": (
        "gauge",
        "Streams a token's connection may hold: GetInfo's concurrentStreams, or less once the server refused.",
        ("token",),
    ),
    "galileo_titan_refusals_total": (
        "counter",
        "Titan connections and streams refused, by token and reason (unauthorized, token_in_use, "
        "rate_limited, stream_limit, no_route, ...).",
        ("token", "reason"),
    ),
    "galileo_titan_disconnects_total": (
        "counter",
        "Open Titan connections lost, by token and reason (worker_lost, closed_by_server, token_expired, ...).",
        ("token", "reason"),
    ),
    "galileo_titan_quote_age_seconds": (
        "gauge",
        "Seconds since the freshest Titan quote of each streamed (pair, size).",
        ("pair", "size"),
    ),
}


def _family(name: str) -> CounterMetricFamily | GaugeMetricFamily:
    return family(TITAN_SERIES, name)


class TitanCollector(ReadingCollector):
    """A prometheus_client collector over the Titan streams of the running engines."""

    series = TITAN_SERIES

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[TitanSource] = []

    def read(self) -> list[Metric]:
        fams = {name: _family(name) for name in TITAN_SERIES}
        reports: list[TitanReport] = [source() for source in self.sources]
        for report in reports:
            for c in report.connections:
                ip = c.ip or "none"
                fams["galileo_titan_connections"].add_metric([c.token, ip], 1 if c.open else 0)
                fams["galileo_titan_streams"].add_metric([c.token, ip], c.streams if c.open else 0)
                fams["galileo_titan_stream_limit"].add_metric([c.token], c.limit)
            for (token, reason), n in sorted(report.refusals.items()):
                fams["galileo_titan_refusals_total"].add_metric([token, reason], n)
            for (token, reason), n in sorted(report.disconnects.items()):
                fams["galileo_titan_disconnects_total"].add_metric([token, reason], n)
            for (pair, size), age in sorted(report.quote_age.items()):
                fams["galileo_titan_quote_age_seconds"].add_metric([pair, size], age)
        return list(fams.values())
