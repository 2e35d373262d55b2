"""Every buy x sell leg pair, built by galileo from the simulator's real answers, executed in its VM.

Each round trip goes through the code the engine runs: the legs' quotes and instructions
(:mod:`galileo.strategy.legs`, the request parameters of :mod:`galileo.upstreams`), the merge
by effect, the simulation that sizes the compute budget, the account and size checks, the
signature (:func:`galileo.landing.assemble`), a Jito bundle to the simulator. Slots stand
still (a minute each), so a bundle runs at the prices it was quoted at, to the lamport.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from solders.message import MessageV0

from galileo.sim import SimConfig, SimServer, start_sim
from galileo.strategy.legs import LegName
from galileo.strategy.profit import estimated_costs, needed_out
from galileo.tx.decompile import decompile
from galileo.tx.programs import SYSTEM_PROGRAM_ID, TOKEN_PROGRAM_ID
from tests.clients.conftest import Worker
from tests.tx.simchain import BUYS, FEE, SELLS, SOL, TIP, USDC, Chain, pays_now

SIZE = 10**9  # 1 SOL


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    # A new pool price every slot (pool_hold_slots=1): these tests are about the quote's arithmetic
    # to the lamport, and the failing one steps slots until only the sell's pool has moved against it.
    server = await start_sim(
        SimConfig(port=0, seed=7, slot_ms=60_000, land_delay_slots=0, auction_contention=0.0, pool_hold_slots=1)
    )
    yield server
    await server.close()


@pytest.fixture
async def worker() -> AsyncIterator[Worker]:
    w = Worker()
    yield w
    await w.close()


@pytest.mark.parametrize(("buy", "sell"), [(b, s) for b in BUYS for s in SELLS], ids=lambda n: str(n))
async def test_every_leg_pair_executes_as_quoted(
    sim: SimServer, worker: Worker, tmp_path: Path, buy: LegName, sell: LegName
) -> None:
    c = Chain.of(sim, worker, tmp_path)
    bq, sq = await c.quotes(buy, sell, SIZE)
    assert sq.in_amount == bq.sure_out == bq.out_amount  # quoted at slippage 0: the sell sells all of it
    # The sell held to 10 bps under its quote: Jupiter's and DFlow's quotes rewritten, Ultra asked again.
    needed = sq.out_amount * 9990 // 10000
    legs = await c.legs(bq, sq, needed)
    assert legs[1].min_out >= needed
    tx = await c.assemble(legs)
    assert tx.jito is not None and tx.units_consumed is not None
    assert tx.units_consumed < tx.compute_unit_limit <= tx.units_consumed * 11 // 10 + 1  # measured x 1.1

    # One wrap, one SyncNative, the wrapped-SOL account closed once, last before the tip.
    message = tx.jito.transaction.message
    assert isinstance(message, MessageV0)
    ixs = decompile(message, await c.chain.lookup_tables([str(t.account_key) for t in message.address_table_lookups]))
    token_tags = [ix.data[:1] for ix in ixs if ix.program_id == TOKEN_PROGRAM_ID]
    assert token_tags.count(b"\x11") == 1 and token_tags.count(b"\x09") == 1
    assert ixs[-2].program_id == TOKEN_PROGRAM_ID and ixs[-2].data == b"\x09"
    transfers = [ix for ix in ixs if ix.program_id == SYSTEM_PROGRAM_ID]
    assert len(transfers) == 2  # the wrap of the size, the tip

    before = await c.lamports()
    assert await c.status(await c.send_bundle(tx.jito.wire)) == "Landed"
    usdc = await c.token(USDC)
    assert usdc is not None and usdc[0] == 0  # bought exactly what the sell sold
    rent = usdc[1]  # the first trade opened the USDC account: its rent is the wallet's, not spent
    assert await c.lamports() - before == -SIZE + sq.out_amount - TIP - FEE - rent
    assert await c.token(SOL) is None  # no wrapped SOL left behind


async def test_a_round_trip_whose_sell_no_longer_covers_its_costs_fails_on_chain_and_costs_nothing(
    sim: SimServer, worker: Worker, tmp_path: Path
) -> None:
    c = Chain.of(sim, worker, tmp_path)
    costs = estimated_costs(c.cfg.lander, jito=True, rpc=False).lamports
    # The first opportunity of this seed, with the highest min profit its sell quote covers.
    for _ in range(60):
        bq, sq = await c.quotes("dflow", "jupiter", SIZE)
        if sq.out_amount - SIZE - costs > 0:
            break
        await c.control({"advance_slots": 1})
    else:
        pytest.fail("no opportunity in 60 slots")
    min_profit = sq.out_amount - SIZE - costs
    needed = needed_out(SIZE, costs, min_profit)
    assert needed == sq.out_amount
    legs = await c.legs(bq, sq, needed)
    assert legs[1].min_out == needed
    tx = await c.assemble(legs)  # it simulates: fine now
    assert tx.jito is not None
    # Later the buy's pool still pays what the buy quoted, but the sell's no longer pays `needed`.
    for _ in range(120):
        await c.control({"advance_slots": 1})
        if pays_now(sim, bq) >= bq.out_amount and pays_now(sim, sq) < needed:
            break
    else:
        pytest.fail("no slot where only the sell falls short")
    before = await c.lamports(), await c.token(USDC), await c.token(SOL)
    pnl = (await c.stats())["chain"]["pnl"]["by_wallet"][c.user]["pnl_lamports"]
    assert await c.status(await c.send_bundle(tx.jito.wire)) == "Failed"
    chain = (await c.stats())["chain"]
    assert chain["failures_by_error"] == {"jupiter: 6001 SlippageToleranceExceeded": 1}
    # All or nothing: the buy leg that did pay is undone, the tip and the fee are not charged.
    assert (await c.lamports(), await c.token(USDC), await c.token(SOL)) == before
    assert chain["pnl"]["by_wallet"][c.user]["pnl_lamports"] == pnl


async def test_a_round_trip_that_lands_makes_at_least_its_min_profit(
    sim: SimServer, worker: Worker, tmp_path: Path
) -> None:
    c = Chain.of(sim, worker, tmp_path)
    min_profit = 20_000
    costs = estimated_costs(c.cfg.lander, jito=True, rpc=False).lamports
    needed = needed_out(SIZE, costs, min_profit)
    for _ in range(60):
        bq, sq = await c.quotes("dflow", "jupiter", SIZE)
        if sq.out_amount >= needed:
            break
        await c.control({"advance_slots": 1})
    else:
        pytest.fail("no opportunity in 60 slots")
    tx = await c.assemble(await c.legs(bq, sq, needed))
    assert tx.jito is not None
    pnl = (await c.stats())["chain"]["pnl"]["by_wallet"][c.user]["pnl_lamports"]
    assert await c.status(await c.send_bundle(tx.jito.wire)) == "Landed"
    realised = (await c.stats())["chain"]["pnl"]["by_wallet"][c.user]["pnl_lamports"] - pnl
    assert realised == sq.out_amount - SIZE - costs >= min_profit  # the quote, to the lamport
