"""Turning what happened to a request into one outcome name, with a line a person can act on.

Local-origin failures (our bind failed) are told apart from upstream ones (refused, reset,
timed out, answered 429): the coordinator suspends an IP for the first and cools one
(IP, upstream) pair for the second. An answer that is not HTTP at all (a garbage status line,
a header line over 8 KiB, bad framing) is ``protocol_error`` with status 0: aiohttp reports
those as a "400" that the upstream never sent.
"""

from __future__ import annotations

import asyncio
import email.utils
import errno
import re
import time
from collections.abc import Mapping

import aiohttp
from aiohttp.http_exceptions import BadHttpMessage, ContentLengthError, HttpProcessingError

from broker.protocol import Outcome

__all__ = ["classify_exception", "classify_status", "parse_retry_after", "retry_after_of", "said_when"]

_BIND_ERRNOS = {errno.EADDRNOTAVAIL, errno.EADDRINUSE, errno.EACCES, errno.EPERM}
MAX_RETRY_AFTER = 300.0  # Envoy discards larger values; a bogus header must not park an IP for hours


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: delay-seconds or an HTTP date. None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


_RESET_HEADERS = ("RateLimit-Reset", "X-RateLimit-Reset", "X-Rate-Limit-Reset")
_RATELIMIT_T = re.compile(r"(?:^|;)\s*t\s*=\s*(\d+(?:\.\d+)?)")
_EPOCH = 1e9  # a reset above this many seconds is a Unix time (GitHub's X-RateLimit-Reset), not a delay


def retry_after_of(headers: Mapping[str, str]) -> str | None:
    """When a refused request may be sent again, as a ``Retry-After`` value: that header, or where an
    upstream sends none, the reset of its rate-limit headers: ``RateLimit-Reset`` (seconds),
    ``X-RateLimit-Reset`` (seconds, or a Unix time in seconds or milliseconds) or the ``t=`` of a
    ``RateLimit`` field (draft-ietf-httpapi-ratelimit-headers). None when there is none of them."""
    value = headers.get("Retry-After")
    if value:
        return value
    for name in _RESET_HEADERS:
        value = headers.get(name)
        if value:
            try:
                seconds = float(value.strip())
            except ValueError:
                continue
            if seconds > 1000 * _EPOCH:  # milliseconds since the epoch
                seconds = seconds / 1000 - time.time()
            elif seconds > _EPOCH:
                seconds -= time.time()
            return f"{seconds:.3f}"
    field = headers.get("RateLimit")
    if field:
        found = _RATELIMIT_T.search(field)
        if found:
            return found.group(1)
    return None


def said_when(status: int, headers: Mapping[str, str]) -> str | None:
    """When the upstream said to come back, for the statuses that may say it: a 429 (``Retry-After``
    or its rate-limit headers' reset, :func:`retry_after_of`) and a 503 (``Retry-After``, which
    RFC 9110 gives it for how long the service is expected to be unavailable). None otherwise."""
    if status == 429:
        return retry_after_of(headers)
    if status == 503:
        return headers.get("Retry-After")
    return None


def classify_status(status: int, retry_after: str | None, latency: float, detail: str = "") -> Outcome | None:
    """The outcome for a non-2xx status, or None for success statuses."""
    if status < 400:
        return None
    tail = f": {detail}" if detail else ""
    if status == 429:
        return Outcome(
            result="rate_limited",
            status=status,
            latency=latency,
            retry_after=parse_retry_after(retry_after),
            error=f"HTTP 429{tail}",
        )
    if status in (408, 504):
        return Outcome(result="timeout", status=status, latency=latency, error=f"HTTP {status}{tail}")
    when = parse_retry_after(retry_after) if status == 503 else None  # unavailable, for this long
    return Outcome(result="http_error", status=status, latency=latency, retry_after=when, error=f"HTTP {status}{tail}")


def _not_http(exc: BaseException) -> str | None:
    """What was wrong with an answer our HTTP parser could not read, or None if that is not the failure."""
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        return None  # a real status the server sent (Titan handles it)
    cause = exc.__cause__ if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ClientPayloadError) else exc
    if not isinstance(cause, HttpProcessingError) or isinstance(cause, ContentLengthError):
        return None
    message = cause.message or type(cause).__name__
    if isinstance(cause, BadHttpMessage) and message.startswith("Not enough data"):
        return None  # a body cut short: the connection broke, the framing was fine
    return repr(message[:120])


def classify_exception(exc: BaseException, latency: float, local_ip: str | None) -> Outcome:
    """The outcome for an exception raised while sending or reading."""
    garbled = _not_http(exc)
    if garbled is not None:
        return Outcome(result="protocol_error", latency=latency, error=f"the answer is not valid HTTP: {garbled}")
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return Outcome(result="timeout", latency=latency, error="timed out")
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_err = exc.os_error
        if os_err.errno in _BIND_ERRNOS and "bind" in str(os_err):
            return Outcome(
                result="bind_error",
                latency=latency,
                error=f"cannot bind {local_ip}: {os_err.strerror or os_err}",
            )
        return Outcome(
            result="network_error",
            latency=latency,
            error=f"cannot connect to {exc.host}:{exc.port}: {os_err.strerror or os_err}",
        )
    if isinstance(exc, OSError) and exc.errno in _BIND_ERRNOS:
        return Outcome(result="bind_error", latency=latency, error=f"cannot bind {local_ip}: {exc.strerror}")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return Outcome(result="network_error", latency=latency, error="server closed the connection")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return Outcome(result="network_error", latency=latency, error=f"response body broken: {exc}")
    if isinstance(exc, aiohttp.ClientResponseError):
        return Outcome(result="http_error", status=exc.status, latency=latency, error=f"HTTP {exc.status}")
    if isinstance(exc, aiohttp.ClientError | OSError):
        return Outcome(result="network_error", latency=latency, error=f"{type(exc).__name__}: {exc}"[:300])
    return Outcome(result="network_error", latency=latency, error=f"unexpected {type(exc).__name__}: {exc}"[:300])
