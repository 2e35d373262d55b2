"""`galileo bench pipeline`: which matrix cells a pattern picks (and a pattern that picks none); what told is told."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from galileo.bench.pipeline import BUCKET, FULL, KEYED, _config, _result, _Window, _with_ceiling, select
from tests.conftest import run_galileo


def test_patterns_pick_cells_by_name_in_the_plans_order() -> None:
    names = [name for name, _ in select(FULL, ["*-150ms-n16", "keyed60-*"])]
    assert names == [
        "bucket-150ms-n16",
        "fixed-150ms-n16",
        "sliding-150ms-n16",
        "penalty-150ms-n16",
        "concurrency-150ms-n16",
        "keyed-150ms-n16",
        "keyed60-50ms-n16",
        "rolling-150ms-n16",
        "fixed-noretry-150ms-n16",
        "penalty-noretry-150ms-n16",
        "bucket-deep-150ms-n16",
        "penalty10-noretry-150ms-n16",
    ]
    (name, (limit, latency, n, engine)), *_ = select(FULL, ["bucket-150ms-n16-multi"])
    assert (name, limit.name, latency, n, engine) == ("bucket-150ms-n16-multi", "bucket", 150, 16, "multi_leg")


def test_no_pattern_is_the_whole_matrix() -> None:
    assert len(select(FULL)) == len(FULL.cells()) == 75


def test_a_pattern_that_matches_nothing_is_refused_naming_the_cells() -> None:
    with pytest.raises(ValueError, match=r"no pipeline cell matches bucket-7ms-n16; cells: bucket-0ms-n4, "):
        select(FULL, ["bucket-150ms-n16", "bucket-7ms-n16"])


def test_the_cli_refuses_a_bad_cell_and_a_cell_without_the_pipeline() -> None:
    bad = run_galileo("bench", "pipeline", "--cell", "bucket-7ms-n16")
    assert bad.returncode == 2 and "no pipeline cell matches bucket-7ms-n16" in bad.stderr
    alone = run_galileo("bench", "landing", "--cell", "bucket-150ms-n16")
    assert alone.returncode == 2 and "--cell selects cells of the pipeline scenario" in alone.stderr


def test_told_is_told_a_keyed_limit_as_the_keys_budget_and_a_per_ip_one_per_ip(tmp_path: Path) -> None:
    assert KEYED.told(16, 150) == 30.0 and KEYED.per_ip(16, 150) == 30.0 / 16
    keyed = _config("http://127.0.0.1:9", tmp_path, ["127.0.0.2"], KEYED.told(16, 150), 5.0, False, keyed=True)
    for section in (keyed.upstreams.jupiter, keyed.upstreams.dflow):
        assert (section.rate_limit_per_key, section.rate_limit_per_ip) == (30.0, None)
        assert section.api_key_env is not None
    per_ip = _config("http://127.0.0.1:9", tmp_path, ["127.0.0.2"], BUCKET.told(16, 150), 5.0, False, keyed=False)
    assert (per_ip.upstreams.jupiter.rate_limit_per_key, per_ip.upstreams.jupiter.rate_limit_per_ip) == (None, 20.0)


def _stats(ok: int, held_seconds: float, admitted: int) -> dict[str, Any]:
    return {
        "requests": {"by_ip_service": {"127.0.0.2": {"jupiter": {"200": ok}}}},
        "limits": {"refused_by_ip": {}, "held": {"jupiter": {"seconds": held_seconds, "admitted": admitted}}},
        "sends": {},
    }


def test_under_a_cap_the_ceiling_is_k_over_the_mean_time_a_slot_was_held() -> None:
    """4 slots held 160 ms each on average allow 25/s, not the 26.7/s that 4 / 150 ms of added latency says."""
    w = _Window()
    w.mark(_stats(0, 10.0, 100), 0.0, 0.0)
    w.mark(_stats(240, 10.0 + 240 * 0.16, 340), 0.0, 0.0)
    w.cpu[1] = (0.0, 0.0, w.cpu[0][2] + 10.0)  # a 10 s window
    out = _with_ceiling(_result(w, ["127.0.0.2"], ("jupiter",), 4 / 0.15, math.inf), w, 1, ("jupiter",), 4)
    assert out["slot_held_ms"] == pytest.approx(160.0)
    assert out["ceiling_per_s"] == pytest.approx(25.0)
    assert out["ok_of_ceiling"] == pytest.approx(24.0 / 25.0)
    assert out["ok_ratio"] == pytest.approx(24.0 / (4 / 0.15), abs=1e-4)
    no_cap = _with_ceiling(_result(w, ["127.0.0.2"], ("jupiter",), 20.0, math.inf), w, 1, ("jupiter",), 0)
    assert "ceiling_per_s" not in no_cap
