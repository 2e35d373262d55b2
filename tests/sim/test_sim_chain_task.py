"""The simulator's chain task: due sends run one per turn of the event loop, and without a request.

A slot's worth of bundles run in one go held every request behind them (LiteSVM holds the GIL
for each), and so the time the limiters judge arrivals by: requests 50 ms apart were judged a
few ms apart, and a told pace at 98 % of a penalty box's rate was boxed. The clock is the
ledger's own (``now`` passed in, ``advance`` for slots), so nothing here sleeps on the wall clock
except the end-to-end test, which waits for a landing with a deadline.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
from solders.keypair import Keypair
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from galileo.sim import SimServer
from galileo.sim.config import SimConfig
from galileo.sim.ledger import Landing, Ledger
from galileo.sim.state import SimState
from tests.sim.sim_helpers import b64, latest_blockhash, rpc, signed_tx, tip_ix

BUNDLES = "/jito/frankfurt/api/v1/bundles"


def status_of(landing: Landing) -> str:
    """Read afresh each time (a test's own narrowing would say it never changes)."""
    return landing.status


def test_settle_next_runs_one_due_send_at_a_time_in_the_order_they_were_accepted() -> None:
    ledger = Ledger(seed=1, slot_ms=400, ttl_blocks=150, land_delay_slots=2, started=0.0)
    for name in ("a", "b", "c"):
        ledger.accept((f"sig-{name}",), "jito_bundle", 0.0, f"bundle-{name}")
    ledger.accept(("sig-late",), "jito_bundle", 0.5, "bundle-late")  # a slot later: due a slot later
    assert not ledger.settle_next(0.5, None)  # slot 1: nothing due yet
    due = 0.81  # slot 2
    ran = []
    while ledger.settle_next(due, None):
        ran.append([s for s in ("a", "b", "c", "late") if ledger.landings[f"sig-{s}"].status == "landed"])
    assert ran == [["a"], ["a", "b"], ["a", "b", "c"]]
    assert status_of(ledger.landings["sig-late"]) == "pending"
    ledger.settle(1.21, None)  # settle runs what settle_next would, all at once
    assert ledger.landings["sig-late"].status == "landed"
    assert ledger.landed["jito_bundle"] == 4


async def test_the_chain_task_runs_one_due_send_per_turn_of_the_loop() -> None:
    state = SimState.create(SimConfig(port=0, seed=3, execution=False))
    now = time.monotonic()
    for k in range(3):
        state.ledger.accept((f"sig-{k}",), "jito_bundle", now, f"bundle-{k}")
    state.ledger.advance(state.config.land_delay_slots)  # all three due now
    task = asyncio.create_task(state.run_chain())
    landed = []
    try:
        for _ in range(4):
            await asyncio.sleep(0)  # one turn: the task runs one send, then yields
            landed.append(state.ledger.landed["jito_bundle"])
    finally:
        task.cancel()
    assert landed == [1, 2, 3, 3]


async def test_a_bundle_lands_with_no_request_to_settle_it(sim: SimServer, client: aiohttp.ClientSession) -> None:
    kp, other = Keypair(), Keypair()
    bh = await latest_blockhash(client, sim.url)
    move = transfer(TransferParams(from_pubkey=kp.pubkey(), to_pubkey=other.pubkey(), lamports=10**6))
    pay = signed_tx(kp, bh, [move])
    tip = signed_tx(kp, bh, [tip_ix(kp, 2_444)])
    status, body = await rpc(client, sim.url, "sendBundle", [[b64(pay), b64(tip)], {"encoding": "base64"}], BUNDLES)
    assert status == 200, body
    landing = sim.state.ledger.landings[str(VersionedTransaction.from_bytes(pay).signatures[0])]
    assert status_of(landing) == "pending"
    deadline = time.monotonic() + 5.0
    while status_of(landing) == "pending" and time.monotonic() < deadline:
        await asyncio.sleep(0.01)  # no request reaches the simulator meanwhile
    assert status_of(landing) == "landed" and landing.ran  # executed in the VM by the chain task
    assert sim.state.vm.slot >= landing.land_slot
