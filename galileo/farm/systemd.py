"""systemd's notify protocol without libsystemd: one datagram to ``$NOTIFY_SOCKET`` per message.

With ``Type=notify`` the coordinator says ``READY=1`` once its workers are up, ``STOPPING=1``
when it begins to drain, ``RELOADING=1`` around a SIGHUP rescan and ``STATUS=...`` lines for
``systemctl status``. With ``WatchdogSec=`` systemd sets ``$WATCHDOG_USEC`` and expects
``WATCHDOG=1`` at least that often; :func:`watchdog_loop` sends it every half interval from
the coordinator's own event loop, so a stuck loop stops feeding it and systemd restarts us.

Not under systemd (no ``$NOTIFY_SOCKET``), every call is a no-op that returns False.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

__all__ = [
    "notify",
    "ready",
    "reloading",
    "status",
    "stopping",
    "watchdog_interval",
    "watchdog_loop",
]

log = logging.getLogger("galileo.systemd")


def _socket_address(env: Mapping[str, str]) -> str | None:
    path = env.get("NOTIFY_SOCKET", "")
    if path.startswith("@"):  # Linux abstract namespace
        return "\0" + path[1:]
    if path.startswith("/"):
        return path
    return None  # unset, or a transport we do not speak (vsock:)


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())


def notify(state: str, *, env: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (``KEY=VALUE`` lines) to systemd. True when it was sent."""
    address = _socket_address(os.environ if env is None else env)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode(), address)
    except OSError as exc:
        log.debug("sd_notify to %r failed: %s", address, exc)
        return False
    return True


def ready(status_text: str | None = None) -> bool:
    """Start-up is complete: systemd marks the unit active (``Type=notify``)."""
    return notify("READY=1" + (f"\nSTATUS={_one_line(status_text)}" if status_text else ""))


def stopping(status_text: str | None = None) -> bool:
    """Shutdown has begun (draining workers)."""
    return notify("STOPPING=1" + (f"\nSTATUS={_one_line(status_text)}" if status_text else ""))


def reloading() -> bool:
    """A reload (SIGHUP) has begun; send :func:`ready` when it is done."""
    return notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")


def status(text: str) -> bool:
    """A one-line status shown by ``systemctl status``."""
    return notify(f"STATUS={_one_line(text)}")


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """``WatchdogSec=`` in seconds when systemd expects this process to feed it, else None."""
    env = os.environ if env is None else env
    pid = env.get("WATCHDOG_PID")
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None  # set for another process (we are a child that inherited the environment)
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1_000_000 if usec > 0 else None


async def watchdog_loop(interval: float | None = None, *, healthy: Callable[[], bool] | None = None) -> None:
    """Send ``WATCHDOG=1`` every half ``interval`` (default: :func:`watchdog_interval`) until cancelled.

    Returns at once when there is no watchdog to feed. ``healthy``, when given, is asked
    before each ping; while it says False no ping is sent, so systemd restarts the service.
    """
    period = watchdog_interval() if interval is None else interval
    if period is None or _socket_address(os.environ) is None:
        return
    while True:
        if healthy is None or healthy():
            notify("WATCHDOG=1")
        await asyncio.sleep(period / 2)
