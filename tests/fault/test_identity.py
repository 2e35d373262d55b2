"""Issue 16.4 and 16.5 with real processes: who a worker is, and who may claim to be it.

* An IP removed (its worker drains its jobs) and added back at once. The draining process is not
  evicted: each job it finishes is delivered once, none ends ``worker_lost`` or runs twice, and
  the supervisor keeps the new slot (``farm stats`` shows it local and ready, never "failed to
  boot"). A new process registering while an old one of the same slot still runs is the hub's
  business (tests/broker/test_hub.py, tests/broker/test_core.py).
* An authorised remote host claims a local worker's id, or another key's worker id: it is
  refused, the local worker is not killed, and the impostor gets no job.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import zmq
import zmq.auth
from aiohttp import web

from broker.jobs import HttpRequest
from broker.protocol import Dispatch, Heartbeat, Ready, decode_batch, encode
from broker.sockets import curve_client, make_dealer
from broker.types import JobSpec
from galileo.config import parse_config
from galileo.farm.control import control_request
from galileo.farm.coordinator import Farm
from tests.fault.conftest import FarmFactory, free_port, ips, running, wait_for

pytestmark = [pytest.mark.fault, pytest.mark.slow]


class SlowServer:
    """Answers each request after ``delay`` seconds and counts requests per path."""

    def __init__(self) -> None:
        self.url = ""
        self.hits: Counter[str] = Counter()
        self.delay = 4.0  # long enough for the new process to register while the old one works


@pytest.fixture
async def slow() -> AsyncIterator[SlowServer]:
    server = SlowServer()

    async def handle(request: web.Request) -> web.Response:
        server.hits[request.path] += 1
        await asyncio.sleep(server.delay)
        return web.json_response({"remote": request.remote})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield server
    await runner.cleanup()


def job(url: str, path: str, idempotent: bool, ip: str | None = None) -> JobSpec:
    # An upstream per job: pacing would hold a new (IP, upstream) pair to a few jobs in flight at first.
    upstream = f"slow{path}"
    return JobSpec(
        HttpRequest(url=f"{url}{path}"), upstream=upstream, timeout=15.0, idempotent=idempotent, require_ip=ip
    )


async def control(farm: Farm, request: dict[str, object]) -> dict[str, object]:
    return await asyncio.to_thread(control_request, farm.runtime_dir / "control.sock", request, 10.0)


@pytest.mark.fault
async def test_an_ip_removed_and_added_back_while_its_worker_drains(
    farm_factory: FarmFactory, slow: SlowServer
) -> None:
    (ip,) = ips(1, start=80)
    wid = f"local/{ip}"
    farm = await farm_factory([ip])
    first = farm.hub.workers[wid].pid
    once = [farm.submit(job(slow.url, f"/once/{i}", idempotent=False)) for i in range(20)]
    twice = [farm.submit(job(slow.url, f"/twice/{i}", idempotent=True)) for i in range(20)]
    await wait_for(lambda: sum(slow.hits.values()) == 40, 15, "all 40 jobs at the upstream")

    await control(farm, {"cmd": "scale", "remove": [ip]})  # `galileo farm scale --remove`, then --add
    await control(farm, {"cmd": "scale", "add": [ip]})
    assert not any(f.done() for f in once + twice)  # re-added while the old process still has every job

    outs = await asyncio.gather(*once, *twice)
    assert Counter(o.result for o in outs) == {"ok": 40}, [o.error for o in outs if not o.ok]
    assert Counter(o.attempts for o in outs) == {1: 40}
    assert set(slow.hits.values()) == {1}  # no job ran twice
    await wait_for(lambda: wid in farm.hub.workers and farm.hub.workers[wid].pid != first, 15, "the new process")
    await wait_for(lambda: not running(first), 15, "the drained process to exit")

    slow.delay = 0.0
    await asyncio.sleep(0.5)  # the old process's exit is handled; the new one stays
    second = farm.hub.workers[wid].pid
    slot = farm.supervisor.slots[wid]
    assert slot.pid == second and slot.state == "ready" and slot.boot_failures == 0
    (row,) = [w for w in farm.snapshot()["workers"] if w["ip"] == ip]
    assert row["remote"] is False and row["state"] == "ready" and row["pid"] == second
    again = await farm.submit(job(slow.url, "/after", idempotent=False))
    assert again.ok and again.worker_id == wid
    assert farm.hub.workers[wid].pid == second and running(second)


def curve_keys(tmp_path: Path, *names: str) -> tuple[Path, Path]:
    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    keys.mkdir()
    allowed.mkdir()
    zmq.auth.create_certificates(keys, "coordinator")
    for name in names:
        zmq.auth.create_certificates(keys, name)
        (allowed / f"{name}.key").write_bytes((keys / f"{name}.key").read_bytes())
    return keys, allowed


class RemotePeer:
    """An authorised remote host played by the test: a CURVE DEALER sending what it likes."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str, keys: Path, name: str) -> None:
        self.sock = make_dealer(ctx, f"{name}#{os.urandom(4).hex()}".encode())
        server_public, _ = zmq.auth.load_certificate(str(keys / "coordinator.key"))
        curve_client(self.sock, keys / f"{name}.key_secret", server_public)
        self.sock.connect(endpoint)
        self.jobs = 0

    def send(self, msg: Ready | Heartbeat) -> None:
        self.sock.send_multipart(encode(msg))

    def drain(self) -> None:
        while self.sock.poll(0):
            self.jobs += sum(isinstance(m, Dispatch) for m in decode_batch(self.sock.recv_multipart()[0]))

    def close(self) -> None:
        self.sock.close(0)


def ready(worker_id: str, ip: str) -> Ready:
    return Ready(worker_id=worker_id, ip=ip, family="ipv4", bind=True, host="evil", pid=4242, capacity=64)


@pytest.mark.fault
async def test_an_authorised_remote_host_cannot_take_a_local_or_another_keys_worker_id(
    tmp_path: Path, slow: SlowServer
) -> None:
    slow.delay = 0.0
    (local_ip,) = ips(1, start=84)
    wid = f"local/{local_ip}"
    keys, allowed = curve_keys(tmp_path, "hosta", "hostb")
    port = free_port()
    rt = tmp_path / "rt"
    cfg = parse_config(
        f"bot: {{network: {{enable_multiple_ip: true, manual_ips: ['{local_ip}']}}, prometheus: {{enable: false}}}}\n"
        f"farm: {{runtime_dir: '{rt}', listen: 'tcp://127.0.0.1:{port}', "
        f"server_secret_key_path: '{keys / 'coordinator.key_secret'}', authorized_keys_dir: '{allowed}'}}\n"
    )
    farm = Farm(cfg, runtime_dir=rt, log_level="warning")
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    peers: list[RemotePeer] = []
    try:
        await farm.start()
        assert await farm.wait_ready(timeout=30)
        local_pid = farm.hub.workers[wid].pid
        a = RemotePeer(ctx, f"tcp://127.0.0.1:{port}", keys, "hosta")
        b = RemotePeer(ctx, f"tcp://127.0.0.1:{port}", keys, "hostb")
        peers += [a, b]
        a.send(ready(wid, local_ip))  # the local worker's id, from an authorised remote key
        a.send(ready("hosta/10.77.0.1", "10.77.0.1"))
        await wait_for(lambda: "hosta/10.77.0.1" in farm.hub.workers, 10, "host a's own worker")
        b.send(ready("hosta/10.77.0.1", "10.77.0.1"))  # host a's id, from host b's key
        for _ in range(12):  # 3 s of both impostors heartbeating and asking again
            for p in peers:
                p.send(Heartbeat())
                p.drain()
            a.send(ready(wid, local_ip))
            await asyncio.sleep(0.25)
        outs = await asyncio.gather(
            *(farm.submit(job(slow.url, f"/l/{i}", idempotent=False, ip=local_ip)) for i in range(20))
        )
        for p in peers:
            p.drain()

        assert all(o.ok and o.worker_id == wid for o in outs), Counter(o.result for o in outs)
        assert a.jobs == 0 and b.jobs == 0  # no job went to an impostor
        assert farm.hub.workers[wid].pid == local_pid and farm.supervisor.slots[wid].restarts == 0
        assert running(local_pid)
        a_key, _ = zmq.auth.load_certificate(str(keys / "hosta.key"))
        assert farm.hub.workers["hosta/10.77.0.1"].principal == a_key  # judged by its key, not its word
        assert farm.hub.bad_frames["id_taken"] >= 2
    finally:
        for p in peers:
            p.close()
        await farm.stop(grace=2.0)
        ctx.destroy(0)
