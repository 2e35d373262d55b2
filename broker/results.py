"""Decoded answers: what a worker sends back when a job's result is ``ok``."""

from __future__ import annotations

import msgspec

__all__ = ["HttpResponse", "ResultValue"]


class HttpResponse(msgspec.Struct, tag="http", kw_only=True, omit_defaults=True):
    """The answer to an :class:`~broker.jobs.HttpRequest`."""

    status: int
    headers: list[tuple[str, str]] = msgspec.field(default_factory=list)
    body: bytes = b""


ResultValue = HttpResponse
