"""The fee market's two reads: Jito's tip floor (SOL percentiles -> lamports) and recent prioritization fees."""

from __future__ import annotations

from broker.jobs import JitoTipFloor, RpcPrioritizationFees
from broker.results import PrioritizationFees, TipFloor
from galileo.sim import SimServer
from galileo.sim.auction import tip_floor
from tests.clients.conftest import USDC, SimFactory, Stub, Worker


async def test_the_tip_floor_comes_back_in_lamports(sim_factory: SimFactory, worker: Worker) -> None:
    sim = await sim_factory(slot_ms=60_000)  # the floor moves every 25 slots: not during this test
    ran = await worker.run(JitoTipFloor(url=sim.url + "/jito/api/v1/bundles/tip_floor"))
    floor = ran.outcome.value
    assert isinstance(floor, TipFloor)
    published = tip_floor(sim.state.config.seed, sim.state.slot())
    assert floor.p50 == round(published["50th"] * 1e9) and floor.p99 == round(published["99th"] * 1e9)
    assert floor.p25 < floor.p50 < floor.p75 < floor.p95 < floor.p99


async def test_a_tip_floor_without_entries_is_a_decode_error(stub: Stub, worker: Worker) -> None:
    stub.answer("/tip_floor", "[]")
    ran = await worker.run(JitoTipFloor(url=stub.url + "/tip_floor"))
    assert ran.outcome.result == "decode_error" and "empty" in ran.outcome.error


async def test_prioritization_fees_for_writable_accounts_oldest_slot_first(sim: SimServer, worker: Worker) -> None:
    before = sim.state.slot()  # slots here are 20 ms: the answer's is read between the two
    ran = await worker.run(RpcPrioritizationFees(url=sim.url + "/rpc", accounts=[USDC]))
    after = sim.state.slot()
    fees = ran.outcome.value
    assert isinstance(fees, PrioritizationFees) and len(fees.fees) == 150
    assert before <= fees.slot <= after and any(fees.fees) and min(fees.fees) == 0
    too_many = await worker.run(RpcPrioritizationFees(url=sim.url + "/rpc", accounts=[USDC] * 129))
    assert too_many.outcome.result == "decode_error"
