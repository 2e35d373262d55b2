"""sd_notify against a real datagram socket, the watchdog interval, and the watchdog loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from galileo.farm import systemd


@contextlib.contextmanager
def notify_socket(address: str) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(address)
        sock.settimeout(5)
        yield sock
    finally:
        sock.close()


def test_messages_reach_a_filesystem_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "notify.sock")
    with notify_socket(path) as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert systemd.ready("3/3 workers ready")
        assert sock.recv(4096) == b"READY=1\nSTATUS=3/3 workers ready"
        assert systemd.status("draining\n2 jobs left")
        assert sock.recv(4096) == b"STATUS=draining 2 jobs left"  # one line: a newline would start a new key
        assert systemd.stopping()
        assert sock.recv(4096) == b"STOPPING=1"
        assert systemd.reloading()
        reload_msg = sock.recv(4096).decode()
        assert reload_msg.startswith("RELOADING=1\nMONOTONIC_USEC=")
        assert int(reload_msg.rsplit("=", 1)[1]) > 0


def test_messages_reach_an_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"galileo-test-notify-{os.getpid()}"
    with notify_socket("\0" + name) as sock:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.notify("WATCHDOG=1")
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_not_under_systemd_everything_is_a_no_op(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.ready() is False
    assert systemd.notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens.sock"))
    assert systemd.notify("READY=1") is False  # a socket that is gone is not an error
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert systemd.notify("READY=1") is False


def test_watchdog_interval() -> None:
    me = str(os.getpid())
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": me}) == 30.0
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None  # not for us
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert systemd.watchdog_interval({}) is None


async def test_watchdog_loop_feeds_every_half_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "wd.sock")
    with notify_socket(path) as sock:
        sock.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        monkeypatch.setenv("WATCHDOG_USEC", "100000")
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(systemd.watchdog_loop())
        try:
            for _ in range(3):
                assert await asyncio.wait_for(loop.sock_recv(sock, 64), 5) == b"WATCHDOG=1"
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_watchdog_loop_stays_silent_while_unhealthy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "wd.sock")
    healthy = [False]
    asked = asyncio.Event()

    def check() -> bool:
        asked.set()
        return healthy[0]

    with notify_socket(path) as sock:
        sock.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        task = asyncio.create_task(systemd.watchdog_loop(0.02, healthy=check))
        try:
            await asyncio.wait_for(asked.wait(), 5)
            with pytest.raises(BlockingIOError):
                sock.recv(64)
            healthy[0] = True
            loop = asyncio.get_running_loop()
            assert await asyncio.wait_for(loop.sock_recv(sock, 64), 5) == b"WATCHDOG=1"
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_watchdog_loop_returns_when_there_is_no_watchdog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    await asyncio.wait_for(systemd.watchdog_loop(), 1)
