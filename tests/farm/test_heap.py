"""The coordinator's process keeps start-up out of the collector's full passes (galileo/farm/heap.py)."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

from galileo.config import parse_config
from galileo.farm.heap import frozen_heap
from galileo.farm.runner import FarmRun, run_farm
from tests.fault.conftest import farm_yaml


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _tracked(obj: object) -> bool:
    """Whether the collector scans ``obj`` (frozen objects are in none of its generations)."""
    return any(o is obj for o in gc.get_objects())


def test_frozen_heap_collects_garbage_first_and_hands_the_rest_back_at_the_end() -> None:
    a, b = _Node(), _Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    dead = weakref.ref(a)
    del a, b
    kept = [_Node()]  # alive through the block
    with frozen_heap() as frozen:
        assert dead() is None  # collected before the freeze, not frozen for good
        assert frozen > 0 and gc.get_freeze_count() > 0
        assert not _tracked(kept)  # start-up's objects are out of the scans ...
        made = [_Node()]
        assert _tracked(made)  # ... what comes after is scanned as ever
    assert gc.get_freeze_count() == 0 and _tracked(kept)


async def test_run_farm_runs_with_start_up_frozen_and_unfreezes_when_it_stops(tmp_path: Path) -> None:
    rt = tmp_path / "rt"
    cfg = parse_config(farm_yaml(["127.0.11.6"], rt))
    seen: list[int] = []

    async def started(run: FarmRun) -> None:
        seen.append(gc.get_freeze_count())

    await run_farm(cfg, runtime_dir=rt, log_level="warning", duration=0.5, on_started=started)
    assert seen and seen[0] > 0
    assert gc.get_freeze_count() == 0
