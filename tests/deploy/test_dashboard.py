"""The Grafana dashboard and the monitoring stack agree with the metrics FarmMetrics registers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from galileo.config.schema import PrometheusConfig
from galileo.metrics import FarmMetrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "galileo-dashboard.json"
NAME = re.compile(r"\bgalileo_[a-z0-9_]+\b")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def registered() -> dict[str, str]:
    """Family name -> type, for every family FarmMetrics registers (scrape-time ones included)."""
    metrics = FarmMetrics()
    families = [*metrics.registry.collect(), *metrics.state.describe()]
    return {f.name: f.type for f in families}


def family_of(sample: str, families: dict[str, str]) -> tuple[str, str] | None:
    """The registered (family, type) a sample name belongs to, by the exposition's suffix rules."""
    if families.get(sample) == "gauge":  # gauges have no suffix: galileo_network_ip_inventory_total is one
        return sample, "gauge"
    for kind, suffixes in SUFFIXES.items():
        for suffix in suffixes:
            base = sample.removesuffix(suffix)
            if sample.endswith(suffix) and families.get(base) == kind:
                return base, kind
    return None


def panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def exprs(dash: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(dash) for t in p.get("targets", [])]


@pytest.fixture(scope="module")
def dash() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def test_suffix_rules() -> None:
    fams = registered()
    assert family_of("galileo_ip_requests_total", fams) == ("galileo_ip_requests", "counter")
    assert family_of("galileo_ip_latency_ms_bucket", fams) == ("galileo_ip_latency_ms", "histogram")
    assert family_of("galileo_network_ip_inventory_total", fams) == ("galileo_network_ip_inventory_total", "gauge")
    assert family_of("galileo_worker_restarts_total", fams) == ("galileo_worker_restarts", "counter")
    assert family_of("galileo_ip_requests", fams) is None  # a counter is only ever seen with _total
    assert family_of("galileo_ip_inflight_total", fams) is None
    assert family_of("galileo_ip_latency_ms", fams) is None  # a histogram only as _bucket/_sum/_count


def test_every_expression_names_a_registered_series(dash: dict[str, Any]) -> None:
    fams = registered()
    queries = exprs(dash) + [v["definition"] for v in dash["templating"]["list"] if v["type"] == "query"]
    assert len(queries) > 30
    used: set[str] = set()
    for expr in queries:
        names = NAME.findall(expr)
        assert names, f"no galileo_ series in {expr!r}"
        for name in names:
            found = family_of(name, fams)
            assert found is not None, f"{name} (in {expr!r}) is not a series FarmMetrics exposes"
            used.add(found[0])
    # Every series a per-IP dashboard needs is on it.
    for family in (
        "galileo_ip_requests",
        "galileo_ip_rate_limited",
        "galileo_ip_cooldown",
        "galileo_ip_cooldown_seconds",
        "galileo_ip_latency_ms",
        "galileo_ip_utilization_ratio",
        "galileo_ip_inflight",
        "galileo_worker_up",
        "galileo_worker_restarts",
        "galileo_queue_depth",
        "galileo_lander_landed",
        "galileo_opportunities",
        "galileo_opportunity_profit_sol",
        "galileo_lander_would_send",
        "galileo_lander_dry_run",
        "galileo_round_trip_realised_profit_sol",
        "galileo_round_trip_expected_profit_sol",
        "galileo_round_trips_on_chain",
        "galileo_opportunities_skipped",
        "galileo_titan_connections",
        "galileo_titan_streams",
        "galileo_titan_refusals",
        "galileo_titan_disconnects",
        "galileo_titan_quote_age_seconds",
        "galileo_pace_requests_per_second",
        "galileo_pace_inflight_limit",
        "galileo_pace_shared_requests_per_second",
    ):
        assert family in used, f"the dashboard has no panel for {family}"


def test_expressions_are_well_formed(dash: dict[str, Any]) -> None:
    fams = registered()
    quantiles = 0
    for expr in exprs(dash):
        for open_, close in ("()", "{}", "[]"):
            depth = 0
            for ch in expr:
                depth += (ch == open_) - (ch == close)
                assert depth >= 0, f"unbalanced {open_}{close} in {expr!r}"
            assert depth == 0, f"unbalanced {open_}{close} in {expr!r}"
        # rate()/increase() only over counters and histogram parts, never over a gauge.
        for fn, name in re.findall(r"\b(rate|increase)\(\s*(galileo_[a-z0-9_]+)", expr):
            found = family_of(name, fams)
            assert found is not None and found[1] in ("counter", "histogram"), f"{fn}({name}) in {expr!r}"
        # histogram_quantile() over _bucket series, aggregated by le.
        for inner in re.findall(r"histogram_quantile\(\s*0?\.\d+\s*,\s*(.*)\)", expr):
            quantiles += 1
            assert "_bucket{" in inner or "_bucket[" in inner, expr
            assert re.search(r"by \(le\b", inner), f"histogram_quantile without `by (le...)`: {expr!r}"
    assert quantiles >= 10  # p50/p95/p99 panels exist and were checked


def test_panels_are_templated_by_ip_and_task(dash: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert {"datasource", "ip", "task"} <= set(variables)
    for name in ("ip", "task"):
        assert variables[name]["includeAll"] and variables[name]["multi"]
        assert variables[name]["allValue"] == ".*"
    per_ip = [e for e in exprs(dash) if 'ip=~"$ip"' in e]
    per_task = [e for e in exprs(dash) if 'task=~"$task"' in e]
    assert len(per_ip) >= 15 and len(per_task) >= 8
    ids = [p["id"] for p in panels(dash)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in panels(dash):
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}"
            assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24


def test_monitoring_stack_files_agree(dash: dict[str, Any]) -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"] if v.startswith("./"))
    for service in compose["services"].values():
        for volume in service["volumes"]:
            if volume.startswith("./"):
                assert (DEPLOY / volume.split(":", 1)[0]).exists(), volume

    dashboards = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/galileo.yml").read_text())
    folder = dashboards["providers"][0]["options"]["path"]
    assert mounts["./grafana/galileo-dashboard.json"] == f"{folder}/galileo-dashboard.json"
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"

    datasources = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    ds_var = next(v for v in dash["templating"]["list"] if v["name"] == "datasource")
    assert source["uid"] == ds_var["current"]["value"] and source["type"] == "prometheus"
    prom_cmd = compose["services"]["prometheus"]["command"]
    assert f"--web.listen-address={source['url'].removeprefix('http://')}" in prom_cmd

    prometheus = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    (job,) = prometheus["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == [PrometheusConfig().listen]  # bot.prometheus.listen's default


def test_readme_explains_every_deploy_file() -> None:
    readme = (DEPLOY / "README.md").read_text()
    for path in sorted(DEPLOY.rglob("*")):
        if path.is_file() and path.name != "README.md":
            rel = path.relative_to(DEPLOY).as_posix()
            assert rel in readme, f"deploy/README.md does not mention {rel}"


def test_guide_lists_exactly_the_registered_series() -> None:
    guide = (DEPLOY.parent / "docs" / "networking" / "multi_ip.md").read_text()
    fams = registered()
    named = set(NAME.findall(guide))
    for name in named:
        known = family_of(name, fams) is not None or fams.get(name) == "histogram"  # the guide names histograms
        assert known, f"docs/networking/multi_ip.md names {name}, which is not exposed"
    for family, kind in fams.items():
        exposed = f"{family}_total" if kind == "counter" else family
        assert exposed in named, f"docs/networking/multi_ip.md does not list {exposed}"
