"""An asyncio loop whose clock jumps to the next timer instead of waiting for it.

``run_virtual(main())`` runs a coroutine whose sleeps, timeouts and ``loop.time()`` are all
virtual: an hour of pacing and latency passes in milliseconds, and the same run gives the
same numbers every time. Only for in-memory code: real sockets would not be waited for.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run_virtual"]

T = TypeVar("T")


class _Selector(selectors.DefaultSelector):
    """Never blocks: a wait of ``timeout`` seconds moves the loop's clock instead."""

    loop: _VirtualLoop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise RuntimeError("virtual time: nothing is scheduled and nothing is ready (a deadlock)")
        if timeout > 0:
            self.loop.virtual_now += timeout
        return super().select(0)


class _VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        selector = _Selector()
        super().__init__(selector)
        selector.loop = self
        self.virtual_now = 0.0

    def time(self) -> float:
        return self.virtual_now


def run_virtual(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a fresh loop with a virtual clock starting at 0."""
    loop = _VirtualLoop()
    try:
        return loop.run_until_complete(main)
    finally:
        loop.close()
