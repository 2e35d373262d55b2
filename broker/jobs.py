"""Job payloads: what a worker is asked to do. One Struct per job kind, a tagged union on the wire.

A payload never carries a secret. Where an upstream needs one, the payload names the
environment variable that holds it (:class:`SecretRef`) and the worker reads it from its own
environment: local workers inherit the coordinator's, workers on other hosts use their own.
"""

from __future__ import annotations

import msgspec

__all__ = ["HttpRequest", "JobPayload", "SecretRef"]


class SecretRef(msgspec.Struct, frozen=True, array_like=True):
    """Put the value of env var ``env`` into header ``header`` (with ``prefix``, e.g. "Bearer ")."""

    header: str
    env: str
    prefix: str = ""


class HttpRequest(msgspec.Struct, tag="http", kw_only=True, omit_defaults=True):
    """A generic HTTP request from the worker's address. The ``ok`` value is an HttpResponse."""

    url: str
    method: str = "GET"
    headers: list[tuple[str, str]] = msgspec.field(default_factory=list)
    body: bytes | None = None
    connect_timeout: float | None = None  # seconds; the job's budget bounds the whole call anyway
    read_timeout: float | None = None
    secret: SecretRef | None = None
    max_body: int = 4 << 20  # larger bodies are a decode_error, not a worker out of memory


JobPayload = HttpRequest
