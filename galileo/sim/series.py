"""Per-second counts over the last N seconds: a ring per series, and a bounded table of rings.

/sim/stats reports, per (source IP, service bucket, status), how many answers each of the last
``stats_seconds`` whole wall-clock seconds saw. Memory is one list of N ints per series; a
series with nothing in its window is dropped on the next sweep, and past ``MAX_SERIES`` new
series are not started (counted in ``dropped``).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

__all__ = ["MAX_SERIES", "SecondRing", "SeriesTable"]

MAX_SERIES = 20_000
_FIRST_SWEEP = 512
K = TypeVar("K", bound=Hashable)


class SecondRing:
    """Counts for the seconds ``last - size + 1 .. last``; older counts fall off as time moves."""

    __slots__ = ("counts", "last")

    def __init__(self, size: int, now_sec: int) -> None:
        self.counts = [0] * size
        self.last = now_sec

    def add(self, sec: int, n: int = 1) -> None:
        """Count ``n`` in second ``sec`` (a second older than the window is ignored)."""
        counts, size = self.counts, len(self.counts)
        if sec > self.last:
            if sec - self.last >= size:
                counts[:] = [0] * size
            else:
                for s in range(self.last + 1, sec + 1):
                    counts[s % size] = 0
            self.last = sec
        elif sec <= self.last - size:
            return
        counts[sec % size] += n

    def window(self, end: int) -> list[int]:
        """The counts of seconds ``end - size + 1 .. end``, oldest first (0 where nothing was counted)."""
        size = len(self.counts)
        return [
            self.counts[s % size] if self.last - size < s <= self.last else 0 for s in range(end - size + 1, end + 1)
        ]

    def total(self, end: int) -> int:
        """The sum of ``window(end)``."""
        return sum(self.window(end))


class SeriesTable(Generic[K]):
    """Rings by key, bounded: idle rings are swept when the table doubles, at most MAX_SERIES."""

    def __init__(self, seconds: int, max_series: int = MAX_SERIES) -> None:
        self.seconds = seconds
        self.max_series = max_series
        self.dropped = 0
        self._rings: dict[K, SecondRing] = {}
        self._next_sweep = _FIRST_SWEEP
        self._swept_at: int | None = None

    def add(self, key: K, sec: int) -> None:
        """Count one event of ``key`` in second ``sec``."""
        ring = self._rings.get(key)
        if ring is None:
            if len(self._rings) >= self._next_sweep and self._swept_at != sec:  # full: once a second at most
                self.sweep(sec)
                self._swept_at = sec
                self._next_sweep = min(self.max_series, max(_FIRST_SWEEP, 2 * len(self._rings)))
            if len(self._rings) >= self.max_series:
                self.dropped += 1
                return
            ring = self._rings[key] = SecondRing(self.seconds, sec)
        ring.add(sec)

    def sweep(self, now_sec: int) -> None:
        """Drop every ring whose window holds nothing any more."""
        for key in [k for k, r in self._rings.items() if r.last <= now_sec - self.seconds]:
            del self._rings[key]

    def items(self, end: int) -> Iterator[tuple[K, list[int]]]:
        """(key, window(end)) for every ring with something in its window."""
        for key, ring in self._rings.items():
            if ring.last > end - self.seconds:
                values = ring.window(end)
                if any(values):
                    yield key, values

    def __len__(self) -> int:
        return len(self._rings)
