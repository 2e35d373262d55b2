"""Issue 9.3: upstream faults and 429 storms: every outcome classified, no worker harmed, healthy IPs unaffected.

The simulator injects faults into 30 % of requests (30 s holds that become client timeouts,
TCP resets, 503s, truncated JSON, bodies trickled over 2 s); every job still ends with one
known result, and the workers' processes, registrations and stderr show no escaped exception.
A 429 storm with a 30 s Retry-After on half the IPs cools only those IPs: the others keep
their rate, as the simulator counts it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest

from broker.jobs import (
    DflowQuote,
    HttpRequest,
    JitoTipAccounts,
    JobPayload,
    JupiterQuote,
    RpcLatestBlockhash,
    RpcSignatureStatuses,
    UltraOrder,
)
from broker.protocol import RESULTS
from broker.types import JobOutcome, JobSpec
from galileo.farm.coordinator import Farm
from tests.fault.conftest import (
    SOL,
    USDC,
    FarmFactory,
    Ledger,
    SimFactory,
    ips,
    quote,
    run_load,
    sim_control,
    sim_get,
    worker_pids,
)

pytestmark = [pytest.mark.fault, pytest.mark.slow]

FAULTS = {"timeout": 0.06, "reset": 0.06, "5xx": 0.06, "malformed": 0.06, "slow_body": 0.06}  # 30 %
SIG = "5" * 88


def job_mix(url: str) -> list[tuple[JobPayload, str]]:
    """One job of every kind the farm sends, with the upstream key its rate limit belongs to."""
    return [
        (JupiterQuote(base_url=f"{url}/jupiter/swap/v1", input_mint=SOL, output_mint=USDC, amount=10**9), "jupiter"),
        (DflowQuote(base_url=f"{url}/dflow", input_mint=SOL, output_mint=USDC, amount=10**9), "dflow"),
        (UltraOrder(base_url=f"{url}/jupiter/ultra/v1", input_mint=USDC, output_mint=SOL, amount=10**8), "ultra"),
        (JitoTipAccounts(base_url=f"{url}/jito/ny"), "jito:ny"),
        (RpcLatestBlockhash(url=f"{url}/rpc", commitment="confirmed"), "rpc"),
        (RpcSignatureStatuses(url=f"{url}/rpc", signatures=[SIG]), "rpc"),
        (HttpRequest(url=f"{url}/jupiter/swap/v1/quote?inputMint={SOL}&outputMint={USDC}&amount=5"), "jupiter"),
    ]


def check_workers_unharmed(farm: Farm, before: dict[str, int], stderr: str) -> None:
    assert worker_pids(farm) == before, "a worker was replaced"
    assert all(s.restarts == 0 and s.state == "ready" for s in farm.supervisor.slots.values()), farm.supervisor.slots
    assert {w.state for w in farm.hub.workers.values()} == {"ready"}
    assert stderr.count("worker starting") == len(before), "worker stderr was not captured"
    for sign in ("Traceback", "never retrieved", "Exception in callback", "worker failed", "level=error"):
        assert sign not in stderr, stderr[-3000:]


@pytest.mark.fault
async def test_30_percent_upstream_faults_every_outcome_classified_no_worker_harmed(
    sim_factory: SimFactory, farm_factory: FarmFactory, capfd: pytest.CaptureFixture[str]
) -> None:
    sim = await sim_factory(faults=FAULTS)
    farm = await farm_factory(ips(4, start=80), log_level="info")  # workers log to this test's captured stderr
    ledger = Ledger()
    farm.hub.final_hooks.append(ledger.hook)
    before = worker_pids(farm)
    mix = job_mix(sim.url)
    specs = [
        JobSpec(payload, upstream=up, timeout=1.5 if i % 2 else 3.0)  # 1.5 s: a slow body is a timeout
        for i in range(60)
        for payload, up in mix
    ]
    outcomes: list[JobOutcome] = await asyncio.wait_for(asyncio.gather(*(farm.submit(s) for s in specs)), 90)

    ledger.check_exactly_once(farm, outcomes)
    assert len(outcomes) == len(specs)
    results = Counter(o.result for o in outcomes)
    print("RESULTS", results)
    assert set(results) <= set(RESULTS)
    # Each fault surfaced as what it is: no "unexpected" catch-all, no result the caller can't act on.
    for name in ("ok", "timeout", "network_error", "http_error", "decode_error"):
        assert results[name] > 0, results
    assert not [o for o in outcomes if "unexpected" in o.error], [o.error for o in outcomes if "unexpected" in o.error]
    injected = (await sim_get(sim, "/sim/stats"))["faults"]
    assert all(injected.get(kind, 0) > 0 for kind in FAULTS), injected

    # Still serving, from the same processes.
    again = await asyncio.gather(*(farm.submit(quote(sim.url, require_ip=ip)) for ip in before for _ in range(3)))
    assert all(o.result in RESULTS for o in again)
    await asyncio.sleep(1.5)  # a heartbeat or two after the storm
    err = capfd.readouterr().err
    print("STDERR", err)
    check_workers_unharmed(farm, before, err)


async def ok_by_ip(sim_url: str) -> Counter[str]:
    stats = await sim_get(sim_url, "/sim/stats")
    return Counter({ip: s.get("jupiter", {}).get("200", 0) for ip, s in stats["requests"]["by_ip_service"].items()})


@pytest.mark.fault
async def test_429_storm_on_half_the_ips_leaves_the_others_at_their_rate(
    sim_factory: SimFactory, farm_factory: FarmFactory
) -> None:
    sim = await sim_factory(rate_limit=10)
    farm_ips = ips(4, start=90)
    storm, calm = farm_ips[:2], farm_ips[2:]
    farm = await farm_factory(farm_ips)
    ledger = Ledger()
    farm.hub.final_hooks.append(ledger.hook)
    before = worker_pids(farm)
    stop = asyncio.Event()
    load = asyncio.create_task(run_load(farm, lambda: quote(sim.url, timeout=3.0), 32, stop))
    try:
        await asyncio.sleep(1.0)  # warm up: pacing has met the simulator's limit
        a0 = await ok_by_ip(sim.url)
        await asyncio.sleep(4.0)
        a1 = await ok_by_ip(sim.url)
        overrides: dict[str, Any] = {ip: {"status": 429, "retry_after": 30, "services": ["jupiter"]} for ip in storm}
        await sim_control(sim, {"ip_overrides": overrides})
        storm_started = time.time()
        await asyncio.sleep(4.0)
        b1 = await ok_by_ip(sim.url)
    finally:
        stop.set()
        outcomes = await asyncio.wait_for(load, 30)

    baseline = {ip: a1[ip] - a0[ip] for ip in farm_ips}
    during = {ip: b1[ip] - a1[ip] for ip in farm_ips}
    for ip in calm:
        assert baseline[ip] > 0 and during[ip] >= 0.6 * baseline[ip], (ip, baseline, during)
    # The storm IPs were cooled for their Retry-After: a request or two found the storm (a job
    # already on its way, or one sent when a shorter cooldown ended), then nothing for 30 s.
    log = (await sim_get(sim, "/sim/requests?service=jupiter"))["requests"]
    hit = [r for r in log if r["ip"] in storm and r["t"] > storm_started + 0.1]  # answered after it began
    assert all(r["status"] == "429" for r in hit), hit
    assert all(sum(1 for r in hit if r["ip"] == ip) <= 5 for ip in storm), hit
    late = [r for r in hit if r["t"] > storm_started + 2.0]
    assert late == [], late[:5]
    cooling = farm.snapshot()["workers"]
    for row in cooling:
        if row["ip"] in storm:
            assert any(c["reason"] == "rate_limited" and c["left_s"] > 15 for c in row["cooldowns"]), row

    ledger.check_exactly_once(farm, outcomes)
    assert set(Counter(o.result for o in outcomes)) <= {"ok", "rate_limited", "expired"}
    assert worker_pids(farm) == before
