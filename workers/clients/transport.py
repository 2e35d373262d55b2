"""What every upstream client shares: one job's call through the bound session, its secrets,
the decoding of answers and the mapping of failed answers to outcomes.

A client handler is ``async (call, payload) -> Outcome``, registered with :func:`upstream`.
:class:`Call` sends through ``ctx.http`` (so every connection leaves from the worker's IP),
remembers every secret value it read from the environment, and the wrapper scrubs those
values from whatever outcome the handler returns or raises, so no error line can leak one.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import msgspec
import orjson

from broker.jobs import SecretRef
from broker.logs import register_secret
from broker.protocol import Event, Outcome
from broker.results import ResultValue
from workers.body import MAX_BODY, BodyError, read_body
from workers.classify import classify_exception, classify_status, parse_retry_after, retry_after_of, said_when
from workers.executor import JobContext, client_timeout, handler, secret_headers
from workers.session import family_mismatch

__all__ = [
    "MAX_BODY",
    "Call",
    "Reply",
    "decode_json",
    "error_detail",
    "failed_reply",
    "json_body",
    "parse_retry_header",
    "query",
    "retry_after_in",
    "upstream",
]

P = TypeVar("P")
T = TypeVar("T")

_REDACTED = "<redacted>"
_RETRY_IN_TEXT = re.compile(r"retry after (\d+(?:\.\d+)?)\s*(ms|s)?", re.IGNORECASE)


@dataclass(slots=True)
class Reply:
    """An upstream's answer, read whole, with the latency of the call itself."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    latency: float


class Call:
    """One job's use of an upstream: the bound session, the budget, the secrets read so far."""

    def __init__(self, ctx: JobContext, budget: float) -> None:
        self.ctx = ctx
        self.budget = budget
        self.secrets: list[str] = []

    def auth(self, ref: SecretRef | None) -> dict[str, str]:
        """The header ``ref`` names, read from this worker's environment (and remembered for redaction)."""
        headers = secret_headers(ref)
        if ref is not None and headers:
            self.secrets.append(headers[ref.header][len(ref.prefix) :])
        return headers

    def env_url(self, name: str) -> str | None:
        """A URL with a key in it, from env var ``name``; it and its key-like parts are remembered for redaction."""
        value = os.environ.get(name) or None
        if value is not None:
            found = _url_secrets(value)
            self.secrets += found
            for secret in found:
                register_secret(secret)
        return value

    def emit(self, name: str, value: ResultValue | None = None, error: str = "") -> None:
        """Report an event of this job to the coordinator (never carrying a secret)."""
        self.ctx.emit(Event(job_id=self.ctx.dispatch.job_id, name=name, value=value, error=self.redact(error)))

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        limit: int = MAX_BODY,
    ) -> Reply | Outcome:
        """Send one request from the worker's address and read the whole answer."""
        mismatch = family_mismatch(url, self.ctx.ip)
        if mismatch:
            return Outcome(result="network_error", error=mismatch)
        sent = {"Accept": "application/json"}
        if body is not None:
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        start = time.perf_counter()
        async with self.ctx.http.request(
            method,
            url,
            params=params,
            data=body,
            headers=sent,
            timeout=client_timeout(self.budget),
            allow_redirects=False,
        ) as resp:
            try:
                data = await read_body(resp, limit)
            except BodyError as exc:
                return Outcome(
                    result="decode_error", status=resp.status, latency=time.perf_counter() - start, error=str(exc)
                )
            return Reply(resp.status, resp.headers, data, time.perf_counter() - start)

    def redact(self, text: str) -> str:
        """``text`` with every secret value this call read replaced."""
        for secret in self.secrets:
            if secret and secret in text:
                text = text.replace(secret, _REDACTED)
        return text

    def scrub(self, out: Outcome) -> Outcome:
        """``out`` with no secret in its error line."""
        if out.error and self.secrets:
            cleaned = self.redact(out.error)
            if cleaned != out.error:
                return msgspec.structs.replace(out, error=cleaned)
        return out


ClientFn = Callable[[Call, P], Awaitable[Outcome]]


def _url_secrets(url: str) -> list[str]:
    """The URL and every part of it an error line might quote alone: query values, password, long path segments."""
    parts = urlsplit(url)
    found = [url, *(v for _, v in parse_qsl(parts.query) if len(v) >= 6)]
    if parts.password:
        found.append(parts.password)
    found += [seg for seg in parts.path.split("/") if len(seg) >= 16]  # tokens in the path (Triton, QuickNode)
    return found


def upstream(payload_type: type[P]) -> Callable[[ClientFn[P]], ClientFn[P]]:
    """Register a client function as the executor's handler for ``payload_type`` jobs.

    Exceptions are classified here (not only in the executor) so their text is scrubbed too;
    cancellation, and the executor's own timeout, pass through.
    """

    def register(fn: ClientFn[P]) -> ClientFn[P]:
        async def run(ctx: JobContext, payload: P, budget: float) -> Outcome:
            call = Call(ctx, budget)
            start = time.perf_counter()
            try:
                out = await fn(call, payload)
            except Exception as exc:
                out = classify_exception(exc, time.perf_counter() - start, ctx.ip)
            return call.scrub(out)

        handler(payload_type)(run)
        return fn

    return register


def query(**params: str | int | float | bool | list[str] | None) -> dict[str, str]:
    """Query parameters as upstreams read them: None left out, bools lower-case, lists comma-joined."""
    out: dict[str, str] = {}
    for name, value in params.items():
        if value is None or (isinstance(value, list) and not value):
            continue
        if isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif isinstance(value, list):
            out[name] = ",".join(value)
        else:
            out[name] = str(value)
    return out


def json_body(fields: Mapping[str, Any], **raw: bytes) -> bytes:
    """A JSON object of ``fields`` (None left out) plus ``raw`` members spliced in verbatim."""
    obj: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
    for name, value in raw.items():
        obj[name] = orjson.Fragment(value)
    return orjson.dumps(obj)


def _snippet(body: bytes) -> str:
    return " ".join(body[:300].decode("utf-8", "replace").split())[:200]


def error_detail(body: bytes) -> str:
    """One line from an upstream's error body, whichever of the documented shapes it has.

    Jupiter ``{"error", "errorCode"}``, DFlow ``{"code", "msg"}``, Ultra ``{"error", "code"}``,
    JSON-RPC ``{"error": {"code", "message"}}``; anything else is quoted, trimmed.
    """
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _snippet(body)
    if not isinstance(obj, dict):
        return _snippet(body)
    err = obj.get("error")
    if isinstance(err, dict):
        return f"{err.get('code')}: {err.get('message', '')}"[:300]
    code = obj.get("errorCode", obj.get("code"))
    message = err if isinstance(err, str) else obj.get("msg")
    parts = [str(x) for x in (code, message) if x is not None and x != ""]
    return ": ".join(parts)[:300] if parts else _snippet(body)


def retry_after_in(text: str) -> float | None:
    """Seconds from a "Retry after 500ms" style message (Jito sends these), if there is one."""
    m = _RETRY_IN_TEXT.search(text)
    if m is None:
        return None
    value = float(m.group(1))
    return value / 1000.0 if (m.group(2) or "").lower() == "ms" else value


def failed_reply(reply: Reply) -> Outcome | None:
    """The outcome of a non-2xx answer (429 rate_limited, 408/504 timeout, else http_error), or None."""
    if reply.status < 300:
        return None
    if reply.status < 400:  # redirects are not followed: an upstream's API does not move silently
        where = reply.headers.get("Location", "?")
        return Outcome(
            result="http_error",
            status=reply.status,
            latency=reply.latency,
            error=f"HTTP {reply.status}: redirect to {where[:200]} not followed",
        )
    detail = error_detail(reply.body)
    out = classify_status(reply.status, said_when(reply.status, reply.headers), reply.latency, detail)
    assert out is not None  # status >= 400
    if out.result == "rate_limited" and out.retry_after is None:
        out.retry_after = retry_after_in(detail)
    return out


def decode_json(decoder: msgspec.json.Decoder[T], reply: Reply, what: str) -> T | Outcome:
    """Decode a 2xx body; missing or mistyped fields become a decode_error naming the field."""
    try:
        return decoder.decode(reply.body)
    except msgspec.DecodeError as exc:  # ValidationError included
        return Outcome(result="decode_error", status=reply.status, latency=reply.latency, error=f"{what}: {exc}")


def parse_retry_header(reply: Reply) -> float | None:
    """Retry-After of ``reply`` in seconds (or its rate-limit headers' reset: see ``retry_after_of``)."""
    return parse_retry_after(retry_after_of(reply.headers))
