"""The simulator stays within bounds on a long run: landing book, blockhashes, price walks, wallets.

Each test drives hours of simulated slots through the pure pieces (a clock passed in, no sleeps).
"""

from __future__ import annotations

import aiohttp
import pytest
from solders.keypair import Keypair

from galileo.sim import vm as vm_module
from galileo.sim.ledger import BASE_SLOT, KEEP_SLOTS, Ledger
from galileo.sim.prices import PriceModel
from tests.sim.sim_helpers import SOL, USDC, SimFactory, rpc

SLOT_S = 0.4


def test_the_landing_book_and_the_blockhashes_forget_what_is_older_than_five_minutes() -> None:
    ledger = Ledger(seed=1, slot_ms=400, ttl_blocks=150, land_delay_slots=2, started=0.0)
    slots = 10 * KEEP_SLOTS  # 50 minutes of slots, 5 sends and a blockhash in each
    for i in range(slots):
        now = i * SLOT_S
        ledger.issue_blockhash(now)
        for k in range(5):
            ledger.accept((f"sig-{i}-{k}",), "jito_bundle", now, f"bundle-{i}-{k}")
        ledger.settle(now, None)
    assert ledger.landed["jito_bundle"] == 5 * (slots - 2)  # every send due by now landed ...
    # ... and what is remembered is at most the last five minutes' worth, plus what is pending.
    assert len(ledger.landings) == len(ledger.bundles) <= 5 * (KEEP_SLOTS + 4)
    assert len(ledger.issued) <= KEEP_SLOTS + 150 + KEEP_SLOTS // 10
    recent = ledger.slot((slots - 1) * SLOT_S)
    assert ledger.pending_landing(f"sig-{slots - 10}-0") is not None  # recent ones still answer
    assert ledger.pending_landing("sig-0-0") is None
    with pytest.raises(Exception, match="not issued"):
        ledger.check_blockhash(str(ledger.blockhash_at(BASE_SLOT)), recent * SLOT_S)


def test_a_price_walked_hours_ago_is_the_same_number_and_the_walk_keeps_little() -> None:
    slots = 40_000  # four and a half hours
    long_run, fresh = PriceModel(9, BASE_SLOT), PriceModel(9, BASE_SLOT)
    for slot in range(BASE_SLOT, BASE_SLOT + slots, 7):
        long_run.mid_usd(SOL, slot)
    late = long_run.mid_usd(SOL, BASE_SLOT + slots)
    # An old slot, long out of the kept stretch, gives the number a fresh model walks to.
    for slot in (BASE_SLOT + 1, BASE_SLOT + 12_345, BASE_SLOT + slots - 3):
        assert long_run.mid_usd(SOL, slot) == fresh.mid_usd(SOL, slot)
    assert fresh.mid_usd(SOL, BASE_SLOT + slots) == late
    walk = long_run._walk[SOL]
    assert len(walk.recent) <= 2 * 2048 and len(walk.checkpoints) <= slots // 1024 + 1


async def test_the_simulator_credits_a_bounded_number_of_wallets(
    sim_factory: SimFactory, client: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vm_module, "MAX_WALLETS", 3)
    sim = await sim_factory(slot_ms=60_000)
    credited = [Keypair() for _ in range(3)]
    for kp in credited:
        _, body = await rpc(client, sim.url, "requestAirdrop", [str(kp.pubkey()), 10**9])
        assert "result" in body
    _, body = await rpc(client, sim.url, "requestAirdrop", [str(Keypair().pubkey()), 10**9])
    assert body["error"]["code"] == -32603 and "at most 3 wallets" in body["error"]["message"]
    _, body = await rpc(client, sim.url, "requestAirdrop", [str(credited[0].pubkey()), 10**9])
    assert "result" in body  # a wallet it already credits gets more
    # A new wallet asking for a route is not funded either (fund_lamports), and not recorded.
    newcomer = Keypair()
    query = {"inputMint": SOL, "outputMint": USDC, "amount": "1000000"}
    async with client.get(sim.url + "/jupiter/swap/v1/quote", params=query) as r:
        quote = await r.json()
    body = {"quoteResponse": quote, "userPublicKey": str(newcomer.pubkey())}
    async with client.post(sim.url + "/jupiter/swap/v1/swap-instructions", json=body) as r:
        assert r.status == 200
    _, body = await rpc(client, sim.url, "getBalance", [str(newcomer.pubkey())])
    assert body["result"]["value"] == 0
    async with client.get(sim.url + "/sim/stats") as r:
        assert (await r.json())["chain"]["pnl"]["wallets"] == 3
