"""Issue 9.4: an address disappears from its interface at run time, then comes back.

A veth pair the test creates: the farm's side holds three addresses (the farm's IPs, via
``manual_ips``), the other side lives in a network namespace where the simulator runs. One
address is deleted mid-run: its next connection fails to bind, the policy suspends the IP, the
coordinator retires its worker, and the other two carry on. The address is added back and a
rescan (what SIGHUP does) brings its worker back. Skipped where ``ip netns`` is not permitted.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from broker.types import JobOutcome
from tests.fault.conftest import FarmFactory, Ledger, quote, run_load, sim_get, wait_for

pytestmark = [pytest.mark.fault, pytest.mark.slow]


@dataclass
class Veth:
    ns: str
    host_if: str
    peer_if: str
    net: str  # "10.213.7": the /24 of the pair

    def addr(self, i: int) -> str:
        return f"{self.net}.{i}"


def ip_cmd(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", *args] if ns is None else ["ip", "netns", "exec", ns, "ip", *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=20)


def free_subnet() -> str:
    routes = ip_cmd("-4", "route", "show", "table", "all").stdout + ip_cmd("-4", "addr").stdout
    for n in range(os.getpid() % 200, os.getpid() % 200 + 50):
        net = f"10.213.{n % 250}"
        if f"{net}." not in routes:
            return net
    pytest.skip("no free 10.213.x.0/24 subnet for the veth pair")


@pytest.fixture
async def veth_sim() -> AsyncIterator[tuple[Veth, str]]:
    """The veth pair with farm addresses .1, .3, .4, and a simulator at .2 inside the namespace."""
    if shutil.which("ip") is None:
        pytest.skip("the ip command (iproute2) is not installed")
    tag = str(os.getpid() % 100_000)
    v = Veth(ns=f"galfault{tag}", host_if=f"glh{tag}", peer_if=f"glp{tag}", net=free_subnet())
    made = ip_cmd("netns", "add", v.ns, check=False)
    if made.returncode != 0:
        pytest.skip(f"ip netns is not permitted here: {made.stderr.strip()}")
    sim: asyncio.subprocess.Process | None = None
    try:
        ip_cmd("link", "add", v.host_if, "type", "veth", "peer", "name", v.peer_if)
        ip_cmd("link", "set", v.peer_if, "netns", v.ns)
        for i in (1, 3, 4):  # .1 first: the primary; deleting a secondary leaves the others alone
            ip_cmd("addr", "add", f"{v.addr(i)}/24", "dev", v.host_if)
        ip_cmd("link", "set", v.host_if, "up")
        ip_cmd("addr", "add", f"{v.addr(2)}/24", "dev", v.peer_if, ns=v.ns)
        ip_cmd("link", "set", v.peer_if, "up", ns=v.ns)
        ip_cmd("link", "set", "lo", "up", ns=v.ns)
        sim = await asyncio.create_subprocess_exec(
            "ip",
            "netns",
            "exec",
            v.ns,
            sys.executable,
            "-m",
            "galileo",
            "sim",
            "--host",
            v.addr(2),
            "--port",
            "0",
            "--seed",
            "4",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert sim.stdout is not None
        line = (await asyncio.wait_for(sim.stdout.readline(), 30)).decode()
        assert "listening on http://" in line, line
        url = line.split("listening on ", 1)[1].split()[0]
        yield v, url
    finally:
        if sim is not None and sim.returncode is None:
            sim.kill()
            await sim.wait()
        ip_cmd("netns", "del", v.ns, check=False)  # takes the peer, and with it the whole pair
        ip_cmd("link", "del", v.host_if, check=False)


@pytest.mark.fault
async def test_address_removed_suspends_and_retires_its_worker_and_a_rescan_brings_it_back(
    veth_sim: tuple[Veth, str], farm_factory: FarmFactory
) -> None:
    v, url = veth_sim
    keep, gone = [v.addr(1), v.addr(3)], v.addr(4)
    farm = await farm_factory([*keep, gone])
    ledger = Ledger()
    farm.hub.final_hooks.append(ledger.hook)
    stop = asyncio.Event()
    load = asyncio.create_task(run_load(farm, lambda: quote(url, timeout=2.0), 12, stop))

    def oks(ip: str) -> int:
        return farm.counters.by_result(ip).get("ok", 0)

    try:
        await wait_for(lambda: all(oks(ip) >= 5 for ip in (*keep, gone)), 20, "every IP to serve quotes")
        slot_pid = farm.supervisor.slots[f"local/{gone}"].pid
        ip_cmd("addr", "del", f"{gone}/24", "dev", v.host_if)

        await wait_for(lambda: gone in farm.policy.cooldowns.suspended, 20, f"{gone} to be suspended")
        assert farm.counters.by_result(gone).get("bind_error", 0) >= 1
        await wait_for(lambda: f"local/{gone}" not in farm.supervisor.slots, 20, "its worker to retire")
        assert gone not in {w.ip for w in farm.hub.workers.values()}
        assert slot_pid is not None and farm.snapshot()["farm"]["suspended"] == {gone: "bind_error"}
        # The rest carry on.
        carried = {ip: oks(ip) for ip in keep}
        await wait_for(lambda: all(oks(ip) >= carried[ip] + 5 for ip in keep), 20, "the other IPs to keep serving")

        ip_cmd("addr", "add", f"{gone}/24", "dev", v.host_if)
        changes = await farm.rescan()
        assert changes == [f"+{gone}"]
        assert gone not in farm.policy.cooldowns.suspended
        back = oks(gone)
        await wait_for(lambda: oks(gone) >= back + 5, 20, f"{gone}'s new worker to serve again")
        assert farm.hub.workers[f"local/{gone}"].pid != slot_pid
    finally:
        stop.set()
        outcomes: list[JobOutcome] = await asyncio.wait_for(load, 30)

    ledger.check_exactly_once(farm, outcomes)
    # Jobs that met the missing address were retried on the other IPs.
    assert any(o.ok and o.attempts >= 2 and o.ip in keep for o in outcomes)
    by_ip = (await sim_get(url, "/sim/stats"))["requests"]["by_ip"]
    assert set(by_ip) >= {*keep, gone}
