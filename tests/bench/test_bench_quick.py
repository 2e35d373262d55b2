"""``galileo bench --quick`` as an operator runs it: a real subprocess, a real simulator, real workers.

It checks the report's shape and that its numbers are sane (finite, positive where they count
something, ratios in range, the simulator's counts equal to the farm's), never timings or
targets: a shared machine decides those, and a benchmark reports them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_galileo

SCENARIOS = ["ratelimit", "overhead", "saturation", "scale", "blind", "landing", "sim", "titan", "pipeline"]


def numbers(data: Any, path: str = "") -> list[tuple[str, float]]:
    """Every number in ``data`` with its dotted path."""
    if isinstance(data, dict):
        return [item for k, v in data.items() for item in numbers(v, f"{path}.{k}" if path else str(k))]
    if isinstance(data, list):
        return [item for i, v in enumerate(data) for item in numbers(v, f"{path}[{i}]")]
    if isinstance(data, int | float) and not isinstance(data, bool):
        return [(path, float(data))]
    return []


# The module's first test also runs `galileo bench --quick` (about a minute idle, longer on a loaded
# CI box): the suite's 120 s per test would cut it short.
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "report.json"
    proc = run_galileo("bench", "--quick", "--json", str(out), timeout=280, cwd=out.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "targets" in proc.stdout and ("PASS" in proc.stdout or "MISS" in proc.stdout)
    assert not Path(out.parent / "bench-report.json").exists()  # --json was honoured
    loaded: dict[str, Any] = json.loads(out.read_text())
    return loaded


def test_every_scenario_ran_and_the_report_says_where_and_how(report: dict[str, Any]) -> None:
    assert report["schema"] == "galileo-bench/1"
    assert list(report["scenarios"]) == SCENARIOS
    assert report["summary"]["errors"] == []
    m = report["machine"]
    assert m["cpu_count"] >= 1 and m["cpu_model"] and m["python"] and m["kernel"] and m["date"]
    assert report["reproduce"]["command"].startswith("galileo bench --quick --json ")
    assert report["reproduce"]["quick"] is True
    assert report["targets"], "no target was evaluated"
    assert {t["verdict"] for t in report["targets"]} <= {"PASS", "MISS", "N/A"}
    for t in report["targets"]:
        assert t["scenario"] in SCENARIOS and t["label"] and t["op"] in ("<=", ">=")


def test_numbers_are_finite_and_non_negative(report: dict[str, Any]) -> None:
    for path, value in numbers(report["scenarios"]):
        assert math.isfinite(value) and value >= 0, (path, value)


def test_rate_limited_scaling_counts_agree_between_simulator_and_farm(report: dict[str, Any]) -> None:
    r = report["scenarios"]["ratelimit"]
    assert set(r["runs"]) == {"learned", "told", "original"}
    assert r["agree"] is True
    for policy, by_n in r["runs"].items():
        assert set(by_n) == {str(n) for n in r["ips"]}, policy
        for n, run in by_n.items():
            where = f"{policy} N={n}"
            assert run["ok_per_s"] > 0, where
            assert 0 <= run["ok_ratio"] <= 1.5 and 0 <= run["farm"]["ok_ratio"] <= 1.5, where
            assert 0 <= run["share_429"] <= 1, where
            totals = run["totals"]
            assert totals["sim_ok"] == totals["farm_ok"] > 0, where
            assert totals["sim_429"] == totals["farm_429"], where
            # In the window, the two counts differ by at most what was in flight at its edges.
            assert abs(run["sim"]["ok"] - run["farm"]["ok"]) <= max(8, 0.02 * run["sim"]["ok"]), where
            assert run["sim"]["ok_per_second"], where


def test_farm_scenarios_report_positive_measurements(report: dict[str, Any]) -> None:
    sc = report["scenarios"]
    o = sc["overhead"]
    assert o["jobs"] > 0 and 0 < o["overhead_p50_us"] <= o["overhead_p99_us"]
    s = sc["saturation"]
    assert s["farm_jobs_per_s"] > 0 and s["single_process_req_per_s"] > 0 and s["farm_failed"] == 0
    # The ratio of two throughputs on a shared 2-core machine: checked as arithmetic, not as a speed.
    assert s["ratio"] == pytest.approx(s["farm_jobs_per_s"] / s["single_process_req_per_s"], rel=0.01)
    rows = sc["scale"]["by_workers"]
    assert len(rows) >= 2
    for row in rows.values():
        assert row["ready"] is True and row["ready_s"] > 0 and row["pss_per_worker_mb"] > 0
    assert any("idle_coordinator_cpu_pct" in row for row in rows.values())


def test_blind_strategy_completed_batches(report: dict[str, Any]) -> None:
    b = report["scenarios"]["blind"]
    assert b["batches_per_s"] > 0 and b["sim_jupiter_ok_per_s"] > 0
    assert 0 < b["batches_vs_ideal"] <= 1.5
    assert b["totals"]["batches"] > 0


def test_landing_sent_bundles_from_every_ip_the_simulator_accepted(report: dict[str, Any]) -> None:
    (cell,) = report["scenarios"]["landing"]["runs"].values()
    assert cell["accepted_sends_per_s"] > 0 and 0 < cell["accepted_vs_capacity"] <= 1.05
    assert cell["capacity_sends_per_s"] == cell["ips"] * cell["regions"] * cell["rate_per_ip_region"]


def test_the_simulator_executes_bundles_only_with_execution_on(report: dict[str, Any]) -> None:
    s = report["scenarios"]["sim"]
    on, off = s["execution_on"], s["execution_off"]
    for side in (on, off):
        assert side["quotes_per_s"] > 0 and side["mixed_quotes_per_s"] > 0
        assert side["bundles_accepted_per_s"] > 0 and side["bundles_landed_per_s"] > 0
        assert side["sim_cpu_us_per_quote"] > 0 and side["sim_cpu_us_per_bundle"] > 0
    # On, every accepted bundle ran in the VM (contention 0) and nearly all landed; off, none ran.
    assert on["bundles_executed_per_s"] > 0 and on["mixed_bundles_executed_per_s"] > 0
    assert on["bundles_landed_per_s"] <= on["bundles_executed_per_s"]
    assert off["bundles_executed_per_s"] == off["mixed_bundles_executed_per_s"] == 0
    assert set(on["failures"]) <= {"jupiter: 6001 SlippageToleranceExceeded"}, on["failures"]
    assert {t["label"] for t in report["targets"] if t["scenario"] == "sim"} >= {
        "(13) sim, execution on: quotes/s",
        "(13) sim: executed bundles/s",
    }


def test_titan_streams_quoted_on_one_connection_within_the_limits(report: dict[str, Any]) -> None:
    t = report["scenarios"]["titan"]
    assert t["tokens"] == 1 and t["streams"] == 4 and t["keys"] == 8 and t["samples"] > 0
    assert 0 <= t["quote_age_p50_s"] <= t["quote_age_p99_s"] <= t["quote_age_max_s"]
    assert t["quotes_per_s_min"] > 0 and t["connections_opened_sim"] == t["reconnects"]
    assert t["streams_opened"] >= 1  # renewals: quick renews every 1.5 s
    assert t["titan_ip_http_ok_per_s"] > 0  # the IP holding Titan kept serving HTTP


def test_the_pipeline_ran_the_engine_its_told_twin_and_the_baseline_against_one_limiter(report: dict[str, Any]) -> None:
    (cell,) = report["scenarios"]["pipeline"]["cells"].values()
    assert cell["binds"] and cell["budget"] == cell["ips"] * cell["rate_per_ip"]
    # how the simulator was scheduled against the clients (tests/bench/test_simproc.py checks the OS agrees)
    assert report["scenarios"]["pipeline"]["simulator_scheduling"] in ("realtime", "nice", "shared")
    for policy in ("learned", "told", "baseline"):
        run = cell[policy]
        assert run["ok_per_s"] > 0 and 0 < run["ok_ratio"] <= 1.5 and 0 <= run["share_429"] <= 1, policy
        assert run["window_s"] > 0 and run["sim_cpu_pct"] >= 0 and run["client_cpu_pct"] > 0, policy
        assert 0 <= run["steal_pct"] <= 100, policy  # the host's share of the CPU time (Linux's steal)
        assert run["client_cpu_ms_per_answer"] > 0, policy
    for policy in ("learned", "told"):  # the engine's own count of the window, beside the simulator's
        engine = cell[policy]["engine"]
        assert 0 < cell[policy]["coordinator_cpu_pct"] <= cell[policy]["client_cpu_pct"] + 0.2, policy
        assert engine["batches_started"] > 0 and engine["quotes"].get("buy:jupiter:ok", 0) > 0, (policy, engine)
    assert "engine" not in cell["baseline"]
    assert cell["told"]["landing_offered_per_s"] > 0  # the engine found opportunities and landed them
    assert 0 < cell["told"]["landing_ratio"] <= 1.5 and "landing_ratio" not in cell["baseline"]


def test_unknown_scenarios_are_refused_naming_the_known_ones_and_groups(tmp_path: Path) -> None:
    proc = run_galileo("bench", "--quick", "farm", "nope", "--json", str(tmp_path / "r.json"), timeout=30)
    assert proc.returncode == 2 and "unknown scenario nope;" in proc.stderr  # not "farm, nope"
    assert "ratelimit" in proc.stderr and "farm" in proc.stderr  # "farm" itself was accepted
    assert not (tmp_path / "r.json").exists()
