"""`galileo bench pipeline --cell`: which matrix cells a pattern picks, and a pattern that picks none."""

from __future__ import annotations

import pytest

from galileo.bench.pipeline import FULL, select
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
    ]
    (name, (limit, latency, n, engine)), *_ = select(FULL, ["bucket-150ms-n16-multi"])
    assert (name, limit.name, latency, n, engine) == ("bucket-150ms-n16-multi", "bucket", 150, 16, "multi_leg")


def test_no_pattern_is_the_whole_matrix() -> None:
    assert len(select(FULL)) == len(FULL.cells()) == 64


def test_a_pattern_that_matches_nothing_is_refused_naming_the_cells() -> None:
    with pytest.raises(ValueError, match=r"no pipeline cell matches bucket-7ms-n16; cells: bucket-0ms-n4, "):
        select(FULL, ["bucket-150ms-n16", "bucket-7ms-n16"])


def test_the_cli_refuses_a_bad_cell_and_a_cell_without_the_pipeline() -> None:
    bad = run_galileo("bench", "pipeline", "--cell", "bucket-7ms-n16")
    assert bad.returncode == 2 and "no pipeline cell matches bucket-7ms-n16" in bad.stderr
    alone = run_galileo("bench", "landing", "--cell", "bucket-150ms-n16")
    assert alone.returncode == 2 and "--cell selects cells of the pipeline scenario" in alone.stderr
