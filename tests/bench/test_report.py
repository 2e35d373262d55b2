"""The report's pure parts: targets, JSON safety, tables, and the optional plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from galileo.bench.plot import write_plot
from galileo.bench.report import evaluate, lookup, sanitize
from galileo.bench.tables import tables


def test_report_targets_read_dotted_paths_and_never_raise() -> None:
    result = {
        "runs": {"told": {"4": {"ok_ratio": 0.99, "share_429": None}}},
        "targets": [
            {"path": "runs.told.4.ok_ratio", "op": ">=", "limit": 0.98, "label": "a"},
            {"path": "runs.told.4.ok_ratio", "op": "<=", "limit": 0.5, "label": "b"},
            {"path": "runs.told.4.share_429", "op": "<=", "limit": 0.001, "label": "c"},
            {"path": "runs.learned.4.ok_ratio", "op": ">=", "limit": 0.95, "label": "d"},
        ],
    }
    assert lookup(result, "runs.told.4.ok_ratio") == 0.99
    assert [v["verdict"] for v in evaluate("ratelimit", result)] == ["PASS", "MISS", "N/A", "N/A"]
    assert sanitize({"a": (1.0, float("nan")), 2: float("inf")}) == {"a": [1.0, None], "2": None}


def _report() -> dict[str, Any]:
    run = {"ok_ratio": 0.98, "share_429": 0.0, "agree": True}
    return {
        "machine": {"cpu_model": "test cpu"},
        "scenarios": {
            "ratelimit": {
                "rate_per_ip": 20.0,
                "seconds": 20.0,
                "warmup_s": 5.0,
                "ips": [1, 2],
                "runs": {p: {"1": run, "2": run} for p in ("learned", "told", "original")},
            },
            "blind": {"error": "RuntimeError: no workers"},
        },
        "targets": [
            {"label": "(1b) told", "value": 0.98, "op": ">=", "limit": 0.98, "verdict": "PASS"},
            {"label": "(1a) learned", "value": None, "op": ">=", "limit": 0.95, "verdict": "N/A"},
        ],
    }


def test_tables_show_every_run_failures_and_verdicts() -> None:
    by_title = {t.title.split(":")[0]: t for t in tables(_report())}
    assert set(by_title) == {"ratelimit", "scenarios that failed to run", "targets"}
    assert [row[0] for row in by_title["ratelimit"].rows] == ["1", "2"]
    assert by_title["ratelimit"].rows[0][-1] == "yes"
    assert by_title["scenarios that failed to run"].rows == [("blind", "RuntimeError: no workers")]
    assert [row[-1] for row in by_title["targets"].rows] == ["PASS", "N/A"]


def test_the_pipeline_table_has_a_row_per_cell_and_the_worst_steal_of_its_runs() -> None:
    run = {"ok_ratio": 0.98, "share_429": 0.001, "penalties": 0, "landing_ratio": 1.0}
    cells = {
        "bucket-50ms-n4": {
            "binds": True,
            "learned": {**run, "steal_pct": 2.5},
            "told": {**run, "steal_pct": 11.0},
            "baseline": {**run, "steal_pct": None},  # not Linux: no steal counted
        },
        "concurrency-0ms-n4": {"binds": False},
    }
    report = {"scenarios": {"pipeline": {"cells": cells}}, "targets": []}
    (table,) = [t for t in tables(report) if t.title.startswith("pipeline")]
    bound, unbound = table.rows
    assert len(bound) == len(unbound) == len(table.columns) and table.columns[-1] == "steal %"
    assert bound[0] == "bucket-50ms-n4" and bound[-1] == "11.0" and bound[1] == "0.980"
    assert unbound[1] == "does not bind"


def test_plot_is_written_when_matplotlib_is_installed(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    assert write_plot(_report(), tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
