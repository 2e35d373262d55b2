"""Issue 16.3: memory spent on a peer before it authenticates (or at all) is bounded.

A raw client speaks just enough ZMTP to reach the frame decoder (a greeting, then a frame
header declaring 1 GiB) and streams bytes after it, at the coordinator's CURVE listen socket,
its local worker socket and its control socket. Every socket has ZMQ_MAXMSGSIZE, so libzmq
drops the connection at the header and the coordinator's RSS does not follow. A peer that
stays under the limit can hold at most one frame, and only until its handshake times out.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from pathlib import Path

import psutil
import pytest
import zmq.auth

from broker.sockets import HANDSHAKE_MS, MAX_FRAME
from tests.fault.conftest import StartCli, free_port, ips, wait_stats

pytestmark = [pytest.mark.fault, pytest.mark.slow]

MiB = 1 << 20


def greeting(mechanism: bytes) -> bytes:
    """A ZMTP 3.0 greeting: signature, version, mechanism, as-server, filler (RFC 23)."""
    return b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + mechanism.ljust(20, b"\x00") + b"\x00" + b"\x00" * 31


def connect(endpoint: str) -> socket.socket:
    if endpoint.startswith("tcp://"):
        host, port = endpoint[len("tcp://") :].rsplit(":", 1)
        return socket.create_connection((host, int(port)), timeout=5)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(endpoint[len("ipc://") :])
    return s


def flood(endpoint: str, mechanism: bytes, declared: int, upto: int) -> int:
    """Declare a ``declared``-byte command frame and send up to ``upto`` bytes of it; bytes accepted."""
    s = connect(endpoint)
    sent = 0
    try:
        s.sendall(greeting(mechanism) + b"\x06" + struct.pack(">Q", declared))
        chunk = b"\xaa" * MiB
        while sent < upto:
            s.sendall(chunk[: min(MiB, upto - sent)])
            sent += min(MiB, upto - sent)
    except OSError:
        pass  # dropped by the coordinator: what we want
    finally:
        s.close()
    return sent


def hold(endpoint: str, size: int) -> socket.socket:
    """A CURVE peer that declares a frame just under the limit and sends all of it but one byte."""
    s = connect(endpoint)
    s.sendall(greeting(b"CURVE") + b"\x06" + struct.pack(">Q", size))
    s.sendall(b"\xaa" * (size - 1))
    return s


def closed_by_peer(s: socket.socket, timeout: float) -> bool:
    s.settimeout(timeout)
    try:
        data = s.recv(4096)
        while data:  # the server's greeting, before it hangs up
            data = s.recv(4096)
        return True
    except TimeoutError:
        return False
    except OSError:
        return True


@pytest.mark.fault
async def test_declared_huge_frames_cost_the_coordinator_no_memory(tmp_path: Path, galileo_cli: StartCli) -> None:
    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    keys.mkdir()
    allowed.mkdir()
    zmq.auth.create_certificates(keys, "coordinator")
    port = free_port()
    rt = tmp_path / "rt"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"bot: {{network: {{enable_multiple_ip: true, manual_ips: ['{ips(1, start=120)[0]}']}}, "
        f"prometheus: {{enable: false}}}}\n"
        f"farm: {{runtime_dir: '{rt}', listen: 'tcp://127.0.0.1:{port}', "
        f"server_secret_key_path: '{keys / 'coordinator.key_secret'}', authorized_keys_dir: '{allowed}'}}\n"
    )
    coordinator = await galileo_cli("--log-level", "warning", "farm", "start", "-c", str(cfg), name="coordinator")
    await wait_stats(rt, lambda s: s["farm"]["ready"] == 1, 30, "the farm")
    proc = psutil.Process(coordinator.pid)
    before = proc.memory_info().rss

    for endpoint, mechanism in (
        (f"tcp://127.0.0.1:{port}", b"CURVE"),  # farm.listen, before any authentication
        (f"ipc://{rt / 'workers.sock'}", b"NULL"),  # the local workers' socket
        (f"ipc://{rt / 'control.sock'}", b"NULL"),  # `galileo farm stats`'s socket
    ):
        sent = await asyncio.to_thread(flood, endpoint, mechanism, 1 << 30, 96 * MiB)
        grown = proc.memory_info().rss - before
        assert grown < 32 * MiB, f"{endpoint}: the coordinator grew {grown / MiB:.0f} MiB after {sent / MiB:.0f} MiB"

    # Under the limit: held only until the handshake times out, one frame per peer.
    peers = [await asyncio.to_thread(hold, f"tcp://127.0.0.1:{port}", MAX_FRAME - 64) for _ in range(3)]
    grown = proc.memory_info().rss - before
    assert grown < 3 * MAX_FRAME + 32 * MiB, f"{grown / MiB:.0f} MiB for 3 unauthenticated peers"
    for s in peers:
        assert await asyncio.to_thread(closed_by_peer, s, HANDSHAKE_MS / 1000 + 10), "an unauthenticated peer stayed"
        s.close()

    snap = await wait_stats(rt, lambda s: s["farm"]["ready"] == 1, 10, "the farm, still serving")
    assert snap["workers"][0]["restarts"] == 0
    assert await coordinator.stop() == 0
