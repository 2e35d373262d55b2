"""Log formatting for every galileo process (coordinator, workers, simulator).

``key=value`` lines for people, JSON lines for machines, secrets always redacted.

Structured fields travel in ``extra=`` (``local_ip``, ``ip_task_kind``, ``upstream``,
``result``, ``latency_ms`` …) and come out as fields in either format. Every secret the
process reads (API keys, tokens, key material) is registered with :func:`register_secret`
and replaced by ``***`` in anything logged, wherever it appears in a line.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any, Literal

import orjson

__all__ = ["LogFormat", "redact", "register_secret", "setup_logging"]

LogFormat = Literal["kv", "json"]

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Never let ``value`` appear in a log line. Short values (< 6 chars) are too ambiguous to mask."""
    if value and len(value) >= 6 and value not in _secrets:  # cheap for the caller that repeats itself
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _timestamp(record: logging.LogRecord) -> str:
    t = time.gmtime(record.created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z"


def _kv_value(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if text == "" or any(c in text for c in ' ="\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class KeyValueFormatter(logging.Formatter):
    """``ts=… level=info logger=galileo.farm msg="worker ready" local_ip=127.0.0.2``."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            f"ts={_timestamp(record)}",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={_kv_value(record.getMessage())}",
        ]
        parts += [f"{k}={_kv_value(v)}" for k, v in _fields(record).items()]
        line = " ".join(parts)
        if record.exc_info:
            line += " exc=" + _kv_value(self.formatException(record.exc_info))
        return redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line with the same fields as the key=value format."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data.update(_fields(record))
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return redact(orjson.dumps(data, default=str).decode())


def setup_logging(level: str = "info", fmt: LogFormat = "kv", stream: Any = None) -> None:
    """Configure the root logger once per process (the coordinator, each worker, the simulator)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiohttp's access log is per request: far too loud for a farm at thousands of requests/s.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
