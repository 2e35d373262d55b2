"""Issue 9.1: a worker dies under load (SIGKILL) or hangs (SIGSTOP): nothing lost, nothing doubled.

Guarantee under test (anchors §1.4): every submitted job gets exactly one outcome; a job in
flight on a worker that dies is re-dispatched if it is idempotent (quotes, re-broadcasts of
signed bytes) and ends ``worker_lost`` otherwise. A lander job re-sends the same signed
bytes, never a new signature. A hung worker is found by its missing heartbeats, killed and
replaced, even one whose registration raced ahead of the fork server's answer.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
import zmq.asyncio
from solders.keypair import Keypair

from broker.types import JobOutcome, WorkerInfo
from galileo.chain import ChainState
from galileo.farm.coordinator import Farm
from galileo.landing import LanderStack, LandingStats, bundle_id_of
from galileo.upstreams import Upstreams
from tests.broker.fakeworker import FakeWorker
from tests.fault.conftest import (
    SOL,
    FarmFactory,
    Ledger,
    SimFactory,
    farm_config,
    ips,
    kill_quietly,
    proc_state,
    quote,
    run_load,
    running,
    sim_get,
    wait_for,
)
from tests.fault.landing import opportunities, recording_bundles, sim_blockhash
from workers.main import WorkerArgs

pytestmark = [pytest.mark.fault, pytest.mark.slow]

HEARTBEAT_DEADLINE = 3.0  # HEARTBEAT_INTERVAL x HEARTBEAT_LIVENESS
MARGIN = 1.5  # the hub looks 4 times a second; a loaded 2-core machine adds loop lag


def busiest(workers: dict[str, WorkerInfo], task: str | None = None) -> WorkerInfo:
    def load(w: WorkerInfo) -> int:
        return sum(1 for j in w.inflight.values() if task is None or j.task == task)

    return max(workers.values(), key=load)


@pytest.mark.fault
async def test_sigkill_under_load_one_outcome_per_job_idempotent_retried_elsewhere(
    sim_factory: SimFactory, farm_factory: FarmFactory
) -> None:
    sim = await sim_factory(latency_ms=1500)  # every quote stays in flight 1.5 s
    # A told rate far above the load: pacing lets all 300 go at once (no ramp to wait for).
    farm = await farm_factory(ips(3), f"upstreams: {{jupiter: {{base_url: '{sim.url}', rate_limit_per_ip: 100000}}}}")
    ledger = Ledger()
    farm.hub.final_hooks.append(ledger.hook)
    futures = [farm.submit(quote(sim.url, 10**9 + i)) for i in range(240)]
    futures += [farm.submit(quote(sim.url, 10**9 + i, idempotent=False)) for i in range(60)]
    await wait_for(lambda: sum(len(w.inflight) for w in farm.hub.workers.values()) == 300, 10, "all 300 in flight")

    victim = busiest(farm.hub.workers)
    on_victim = {job.id: job.spec.idempotent for job in victim.inflight.values()}
    assert len(on_victim) >= 50 and not all(on_victim.values()) and any(on_victim.values())
    os.kill(victim.pid, signal.SIGKILL)
    outcomes: list[JobOutcome] = await asyncio.wait_for(asyncio.gather(*futures), 30)

    ledger.check_exactly_once(farm, outcomes)
    by_id = {o.job_id: o for o in outcomes}
    for job_id, idempotent in on_victim.items():
        out = by_id[job_id]
        if idempotent:  # re-dispatched, and not to the address whose worker just died
            assert out.ok and out.attempts == 2 and out.ip != victim.ip, out
        else:
            assert out.result == "worker_lost" and victim.ip in out.error, out
    assert all(o.ok for o in outcomes if o.job_id not in on_victim)

    # The slot got a new process, which registered and works.
    await wait_for(lambda: victim.worker_id in farm.hub.workers, 15, "a replacement worker")
    assert farm.hub.workers[victim.worker_id].pid != victim.pid
    assert farm.supervisor.slots[victim.worker_id].restarts == 1
    again = await farm.submit(quote(sim.url, require_ip=victim.ip))
    assert again.ok, again


@pytest.mark.fault
async def test_sigkill_mid_landing_rebroadcasts_the_same_signed_bytes_only(
    sim_factory: SimFactory, farm_factory: FarmFactory
) -> None:
    sim = await sim_factory(latency_ms=1500, land_delay_slots=50)
    extra = f"""
upstreams:
  rpc: {{urls: ['{sim.url}/rpc']}}
  jito: {{endpoints: ['{sim.url}/jito/frankfurt', '{sim.url}/jito/ny'], rate_limit_per_ip: null, timeout_ms: 15000}}
lander: {{mode: live}}
"""
    farm = await farm_factory(ips(3, start=20), extra)
    ledger = Ledger()
    farm.hub.final_hooks.append(ledger.hook)
    wallet = Keypair()
    blockhash, last_valid = await sim_blockhash(sim)
    opps = opportunities(wallet, blockhash, last_valid, 6)  # 6 sends per (IP, region): under pacing's first cap
    upstreams = Upstreams(farm.cfg)
    stats = LandingStats()
    lander = LanderStack(farm, upstreams, ChainState(farm, upstreams), farm.cfg.lander, ["jito"], stats)

    with recording_bundles() as seen:
        landing = asyncio.gather(*(lander.land(o, SOL) for o in opps))
        await wait_for(
            lambda: sum(1 for w in farm.hub.workers.values() for j in w.inflight.values() if j.task == "lander") == 12,
            10,
            "12 sends in flight",
        )
        victim = busiest(farm.hub.workers, "lander")
        on_victim = {j.id for j in victim.inflight.values()}
        assert on_victim
        os.kill(victim.pid, signal.SIGKILL)
        receipts = await asyncio.wait_for(landing, 40)
        await lander.close(timeout=0.1)

    wires = {o.jito.wire: o for o in opps if o.jito is not None}
    # The simulator only ever saw the exact bytes that were signed once: re-broadcasts, no re-signs.
    assert seen.transactions and set(seen.transactions) <= set(wires)
    assert all(len(b) == 1 for b in seen.bundles)
    # Every opportunity reached the chain under its one bundle id (the sends lost with the
    # worker were re-dispatched); nothing else did.
    expected_ids = {bundle_id_of([o.jito.signature]) for o in opps if o.jito is not None}
    assert set(sim.state.ledger.bundles) == expected_ids
    for per_opp in receipts:
        assert [r.accepted for r in per_opp] == [True, True], per_opp
        assert len({r.ident for r in per_opp}) == 1
    for job_id in on_victim:
        assert ledger.outcomes[job_id].ok and ledger.outcomes[job_id].attempts == 2, ledger.outcomes[job_id]
    stats_now = await sim_get(sim, "/sim/stats")
    assert stats_now["sends"]["jito_bundle"]["rejected"] == {}


@pytest.mark.fault
async def test_sigstop_worker_detected_within_3s_killed_and_replaced(
    sim_factory: SimFactory, farm_factory: FarmFactory
) -> None:
    sim = await sim_factory(latency_ms=200)
    farm = await farm_factory(ips(3, start=40))
    ledger = Ledger()
    farm.hub.final_hooks.append(ledger.hook)
    gone_at: dict[int, float] = {}

    def on_down(w: WorkerInfo, why: str) -> None:
        gone_at.setdefault(w.pid, time.monotonic())

    farm.hub.worker_down_hooks.append(on_down)

    stop = asyncio.Event()
    load = asyncio.create_task(run_load(farm, lambda: quote(sim.url), 60, stop))  # 60 quotes outstanding
    victim: WorkerInfo | None = None
    try:
        await asyncio.sleep(1.0)
        victim = busiest(farm.hub.workers)
        os.kill(victim.pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        await wait_for(lambda: proc_state(victim.pid) == "T", 2, "SIGSTOP to take effect", every=0.005)
        # What it holds now is stuck: results it sent just before the stop have arrived by then.
        await asyncio.sleep(0.1)
        stuck_jobs = {j.id for j in victim.inflight.values()}
        await wait_for(lambda: victim.pid in gone_at, 10, "the hub to declare the stopped worker dead")
        detected = gone_at[victim.pid] - stopped_at
        assert detected <= HEARTBEAT_DEADLINE + MARGIN, f"detected after {detected:.2f}s"

        # The supervisor kills the stopped process (SIGKILL works on a stopped one) and the
        # fork server reaps it: no process is left behind, stopped or zombie.
        await wait_for(lambda: proc_state(victim.pid) is None, 10, f"stopped worker {victim.pid} to be gone")
        await wait_for(
            lambda: victim.worker_id in farm.hub.workers and farm.hub.workers[victim.worker_id].pid != victim.pid,
            15,
            "a new pid to register for the slot",
        )
        new_pid = farm.hub.workers[victim.worker_id].pid
        restarts = farm.supervisor.slots[victim.worker_id].restarts
        assert running(new_pid) and restarts == 1, f"pid {new_pid} running: {running(new_pid)}, restarts {restarts}"
        await asyncio.sleep(1.0)  # the replacement takes work too
    finally:
        stop.set()
        if victim is not None:
            kill_quietly(victim.pid, signal.SIGCONT)
        outcomes: list[JobOutcome] = await asyncio.wait_for(load, 30)

    ledger.check_exactly_once(farm, outcomes)
    by_id = {o.job_id: o for o in outcomes}
    # Re-dispatched (usually to another IP; the SIGKILL test pins that down without pacing in the way).
    retried = [by_id[j] for j in stuck_jobs]
    assert retried and all(o.ok and o.attempts == 2 for o in retried), retried
    assert all(o.ok for o in outcomes), {o.result for o in outcomes}
    assert any(o.ip == victim.ip and o.job_id > max(stuck_jobs) for o in outcomes), "the replacement did no work"


@pytest.mark.fault
async def test_a_worker_registered_before_its_spawn_was_answered_is_still_supervised(tmp_path: Path) -> None:
    rt = tmp_path / "rt"
    farm = Farm(farm_config(ips(1, start=50), rt), runtime_dir=rt, log_level="warning")
    spawn = farm.supervisor.forkserver.spawn

    async def answered_late(args: WorkerArgs) -> int:  # a busy coordinator: the worker's Ready wins the race
        pid = await spawn(args)
        await wait_for(lambda: any(w.pid == pid for w in farm.hub.workers.values()), 15, "the early Ready")
        return pid

    farm.supervisor.forkserver.spawn = answered_late  # type: ignore[method-assign]
    try:
        await farm.start()
        assert await farm.wait_ready(timeout=30)
        (slot,) = farm.supervisor.slots.values()
        await wait_for(lambda: slot.state == "ready", 5, "the slot to know its worker is up")
        first = slot.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)  # a crash after a healthy start: restarted, not a boot failure
        await wait_for(lambda: slot.pid not in (None, first) and slot.state == "ready", 15, "a supervised replacement")
        assert slot.restarts == 1 and slot.boot_failures == 0
    finally:
        await farm.stop(grace=2.0)


@pytest.mark.fault
async def test_a_live_worker_that_never_answers_cannot_hold_a_job_forever(
    sim_factory: SimFactory, farm_factory: FarmFactory
) -> None:
    sim = await sim_factory()
    farm = await farm_factory(ips(1, start=55))
    ctx = zmq.asyncio.Context()
    mute = FakeWorker(ctx, farm.worker_endpoint, "127.0.9.56")  # alive (heartbeats) but never answers
    try:
        await mute.register()
        mute.keep_beating(0.3)
        await wait_for(lambda: len(farm.hub.workers) == 2, 10, "the mute worker to register")
        held = farm.submit(quote(sim.url, require_ip="127.0.9.56", timeout=1.0))
        await mute.next_job(5)
        out = await asyncio.wait_for(held, 10)  # its deadline, plus the hub's grace for a late result
        assert out.result == "expired" and "127.0.9.56" in out.error, out
        assert not farm.hub.workers["fake/127.0.9.56"].inflight  # its credit is back
        again = await farm.submit(quote(sim.url, require_ip=ips(1, start=55)[0]))
        assert again.ok, again
    finally:
        mute.close()
        ctx.term()
