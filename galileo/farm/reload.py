"""Reading the config for a reload (SIGHUP) in a child process, bounded in time and memory.

YAML parsing is pure Python: on the coordinator's event loop, a 15 MB file held the loop for
4.8 s, long enough for every worker to decide its coordinator was gone. A thread would still
contend for the GIL and could not be stopped; a child process can be killed. The child reads the
file with the same code as ``galileo farm start`` (so the same size and alias limits), under an
address-space limit, and answers with the validated config as msgpack. The coordinator waits at
most :data:`RELOAD_TIMEOUT` seconds and otherwise keeps the config it has.

``python -m galileo.farm.reload PATH`` is the child.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import msgspec

from galileo.config import ConfigError, ConfigIssue, GalileoConfig

__all__ = ["MAX_REPLY", "MEMORY_LIMIT", "RELOAD_TIMEOUT", "ReloadError", "load_config_isolated"]

RELOAD_TIMEOUT = 10.0  # seconds; a config takes milliseconds to read, and the old one stays meanwhile
MEMORY_LIMIT = 1 << 30  # the child's address space: a YAML alias bomb ends in MemoryError there
MAX_REPLY = 16 << 20  # bytes of validated config we accept back


class ReloadError(RuntimeError):
    """The config could not be read in time or within memory; the one in use stays."""


async def load_config_isolated(path: Path, timeout: float = RELOAD_TIMEOUT) -> GalileoConfig:
    """``load_config(path)``, run in a child process. Raises ConfigError or ReloadError."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "galileo.farm.reload",
        str(path),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    try:
        out = await asyncio.wait_for(_read_capped(proc.stdout, MAX_REPLY + 1), timeout)
        await asyncio.wait_for(proc.wait(), max(1.0, timeout / 10))
    except TimeoutError:
        raise ReloadError(f"{path}: reading it took more than {timeout:g}s; keeping the config in use") from None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if len(out) > MAX_REPLY:
        raise ReloadError(f"{path}: the validated config is over {MAX_REPLY >> 20} MiB; keeping the config in use")
    try:
        reply = msgspec.msgpack.decode(out)
        if "config" in reply:
            return msgspec.convert(reply["config"], GalileoConfig)
        if "issues" in reply:
            issues = [ConfigIssue(i["path"], i["message"], i.get("line")) for i in reply["issues"]]
            raise ConfigError(str(reply["source"]), issues)
        problem = str(reply["error"])
    except (msgspec.DecodeError, msgspec.ValidationError, KeyError, TypeError):
        problem = f"the config reader exited with {proc.returncode} without an answer"
    raise ReloadError(f"{path}: {problem}; keeping the config in use")


async def _read_capped(stream: asyncio.StreamReader, limit: int) -> bytes:
    out = bytearray()
    while len(out) < limit:
        data = await stream.read(min(1 << 20, limit - len(out)))
        if not data:
            break
        out += data
    return bytes(out)


def _read(path: str) -> dict[str, Any]:
    import resource

    from galileo.config import load_config

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    try:
        return {"config": msgspec.to_builtins(load_config(path))}
    except ConfigError as exc:
        issues = [{"path": i.path, "message": i.message, "line": i.line} for i in exc.issues]
        return {"source": exc.source, "issues": issues}
    except MemoryError:
        return {"error": f"reading it needs more than {MEMORY_LIMIT >> 20} MiB of memory"}
    except Exception as exc:  # the parent turns this into one log line; no traceback, no crash
        return {"error": f"{type(exc).__name__}: {exc}"[:500]}


if __name__ == "__main__":
    sys.stdout.buffer.write(msgspec.msgpack.encode(_read(sys.argv[1])))
