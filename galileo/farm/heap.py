"""Keeping the cyclic garbage collector's full passes short in the coordinator's process.

The coordinator paces every address from one event loop, and a full collection (generation 2)
walks every object the collector tracks, start-up's included: the modules, the config, the farm
and its strategies, which live as long as the process. Over them, at 64 addresses and 300 ms
(told, a 20/s bucket), a full pass stalled the loop for 55-68 ms every 4 s or so: all 64 pairs
sent late at once, their schedules restarted (0.6 % of the pairs' time) and the late arrivals
set off the arrival guard's holds (0.25 % more): 0.972 of N·R. With start-up frozen out of the
scans (``gc.freeze``), the same passes took 20-26 ms and the run read 0.979 (the pace is 0.98),
with 0.05 % of the time lost to both; over nine such runs, passes of 20-48 ms and eight runs at
0.976-0.980.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["frozen_heap"]


@contextlib.contextmanager
def frozen_heap() -> Iterator[int]:
    """Collect what is garbage now, then freeze every object left out of the collector's scans until
    the block ends; yields how many were frozen.

    Objects freed by their reference counts are freed as ever; only cycles among frozen objects wait
    for the block's end, when they are handed back to the oldest generation (so a process that runs
    one farm after another, as the bench does, does not keep each one's cycles).
    """
    gc.collect()
    gc.freeze()
    try:
        yield gc.get_freeze_count()
    finally:
        gc.unfreeze()
