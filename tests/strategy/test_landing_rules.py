"""The engine's landing rules on an in-memory farm and a virtual clock: a stale quote is not landed, one trade
is one signed transaction per lander variant (re-broadcast, never re-signed before its blockhash expires), and
the fees it signs with follow the market and feed the profit check before signing."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections import defaultdict
from dataclasses import dataclass, field

import orjson
from solders.hash import Hash
from solders.keypair import Keypair
from solders.transaction import VersionedTransaction

from broker.jobs import (
    JitoInflightStatuses,
    JitoSendBundle,
    JitoTipFloor,
    JupiterQuote,
    JupiterSwapInstructions,
    RpcLatestBlockhash,
    RpcPrioritizationFees,
    RpcSendTransaction,
    RpcSignatureStatuses,
)
from broker.results import (
    Blockhash,
    BundleAccepted,
    BundleStatus,
    BundleStatuses,
    PrioritizationFees,
    Quote,
    ResultValue,
    SignatureStatuses,
    SwapInstructions,
    TipFloor,
    TxSent,
)
from broker.solana import AccountMeta, Instruction
from broker.types import JobSpec
from galileo.config import GalileoConfig, parse_config
from galileo.strategy.engine import RoundTripEngine, enabled_engines
from galileo.tx import JITO_TIP_ACCOUNTS
from tests.fakefarm import FakeFarm
from tests.virtualtime import run_virtual

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
MEMO = "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr"
POOL = "FksffEqnBRixYGR791Qw2MgdU7zNCpHVFYBL4Fa4qVuH"
U = "http://127.0.0.1:7900"
SLOT = 0.4
BASE_SLOT, BASE_HEIGHT = 1_000_000, 900_000


def config(landers: str = "[jito]", lander: str = "", multi: bool = False) -> GalileoConfig:
    return parse_config(f"""
upstreams:
  jupiter: {{base_url: '{U}/jupiter/swap/v1', api_key_env: null}}
  rpc: {{urls: ['{U}/rpc']}}
  jito: {{endpoints: ['{U}/jito/ny'], tip_floor_url: '{U}/jito/api/v1/bundles/tip_floor'}}
intermedium: {{mints: [{USDC}]}}
blind_strategy:
  enable: true
  enable_landers: {landers}
  base_mints: [{{mint: {SOL}, trade_size_range: [100000000, 200000000], trade_range_count: 2, min_quote_profit: 1}}]
multi_leg: {{enable: {str(multi).lower()}, buy_legs: [jupiter], sell_legs: [jupiter]}}
wallet: {{keypair_path: /unused/in/these/tests.json}}
lander: {{mode: live, {lander}}}
""")


@dataclass
class Chain:
    """A chain whose slot moves every 400 ms of the loop's clock, quoted by an aggregator ``lag`` slots behind.

    Prices never move: every batch of a plan finds the very same round trip (the sell pays 1 % more).
    Bundles and transactions are accepted and never land. Each swap instruction carries its quote.
    """

    lag: int = 0
    floor_p50: int = 12_000
    fees: tuple[int, ...] = (0, 3_000, 5_000, 7_000)
    inflight: str = "Pending"  # what Jito says of every bundle
    jobs: dict[str, list[tuple[float, JobSpec, str]]] = field(default_factory=lambda: defaultdict(list))

    def slot(self) -> int:
        return BASE_SLOT + int(asyncio.get_running_loop().time() / SLOT)

    def answer(self, spec: JobSpec, ip: str) -> ResultValue | None:
        job = spec.payload
        now = asyncio.get_running_loop().time()
        self.jobs[type(job).__name__].append((now, spec, ip))
        slot = self.slot()
        if isinstance(job, RpcLatestBlockhash):
            blockhash = str(Hash(hashlib.sha256(str(slot).encode()).digest()))
            return Blockhash(
                blockhash=blockhash, last_valid_block_height=BASE_HEIGHT + slot - BASE_SLOT + 150, slot=slot
            )
        if isinstance(job, JupiterQuote):
            out = job.amount * 150 // 1000 if job.input_mint == SOL else job.amount * 1000 // 150 * 101 // 100
            raw = orjson.dumps(  # /quote's shape: the sell's minimum out is written into it
                {"inAmount": str(job.amount), "outAmount": str(out), "otherAmountThreshold": str(out), "slippageBps": 0}
                | {"inputMint": job.input_mint}
            )
            return Quote(
                in_amount=job.amount,
                out_amount=out,
                other_amount_threshold=out,
                slippage_bps=0,
                price_impact_pct=0.0,
                context_slot=slot - self.lag,
                raw=raw,
            )
        if isinstance(job, JupiterSwapInstructions):
            swap = Instruction(
                MEMO, (AccountMeta(job.user_public_key, True, True), AccountMeta(POOL, False, True)), job.quote
            )
            return SwapInstructions(compute_budget=[], setup=[], swap=swap, compute_unit_limit=150_000)
        if isinstance(job, JitoTipFloor):
            p = self.floor_p50
            return TipFloor(p25=p // 10, p50=p, p75=p * 3, p95=p * 100, p99=p * 1000)
        if isinstance(job, RpcPrioritizationFees):
            return PrioritizationFees(slot=slot, fees=list(self.fees))
        if isinstance(job, JitoSendBundle):
            return BundleAccepted(bundle_id="ignored")
        if isinstance(job, RpcSendTransaction):
            return TxSent(signature="ignored")
        if isinstance(job, RpcSignatureStatuses):
            return SignatureStatuses(slot=slot, statuses=[None] * len(job.signatures))
        if isinstance(job, JitoInflightStatuses):
            return BundleStatuses(
                slot=slot, statuses=[BundleStatus(bundle_id=b, status=self.inflight) for b in job.bundle_ids]
            )
        return None

    def signed(self, kind: type) -> list[tuple[float, bytes, str | None]]:
        """(when, wire, hash key) of every send of ``kind``."""
        out = []
        for t, spec, _ in self.jobs[kind.__name__]:
            job = spec.payload
            wires = job.transactions if isinstance(job, JitoSendBundle) else [job.transaction]  # type: ignore[union-attr]
            out += [(t, w, spec.hash_key) for w in wires]
        return out


def trade_of(wire: bytes) -> bytes:
    """What a transaction does: its legs' swap data (each carries its quote), whatever its blockhash or tip."""
    tx = VersionedTransaction.from_bytes(wire)
    keys = [str(k) for k in tx.message.account_keys]
    return b"|".join(bytes(ix.data) for ix in tx.message.instructions if keys[ix.program_id_index] == MEMO)


def run(engine: RoundTripEngine, seconds: float) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(engine.run(stop))
        await asyncio.sleep(seconds)
        stop.set()
        await task

    run_virtual(main())


def engine_on(chain: Chain, cfg: GalileoConfig) -> RoundTripEngine:
    farm = FakeFarm(["10.0.0.1", "10.0.0.2"], rate=20.0, latency=0.05, answer=chain.answer)
    (engine,) = enabled_engines(farm, cfg, Keypair())
    return engine


def test_a_stale_quote_is_not_landed() -> None:
    stale = Chain(lag=10)  # the aggregator's contextSlot is 10 slots behind the chain (4 are allowed)
    engine = engine_on(stale, config())
    run(engine, 10.0)
    assert engine.stats.opportunities[SOL] > 10
    assert engine.stats.skipped["stale_quote"] == engine.stats.opportunities[SOL]
    assert engine.stats.stale[("jupiter", "stale_quote")] == engine.stats.opportunities[SOL]
    assert not stale.jobs["JupiterSwapInstructions"] and not stale.jobs["JitoSendBundle"]
    assert engine.stats.built == 0

    fresh = Chain(lag=1)  # the same market a slot behind: landed
    engine = engine_on(fresh, config())
    run(engine, 10.0)
    assert not engine.stats.skipped["stale_quote"] and engine.stats.built > 0 and fresh.jobs["JitoSendBundle"]


def test_one_trade_is_one_signed_transaction_per_variant_re_broadcast_until_its_blockhash_expires() -> None:
    chain = Chain()
    engine = engine_on(chain, config("[jito, rpc]", "rebroadcast_s: 2.0, follow_timeout_s: 300"))
    run(engine, 100.0)  # a blockhash lives 150 blocks: 60 s
    for kind in (JitoSendBundle, RpcSendTransaction):
        by_trade: dict[bytes, dict[str, float]] = defaultdict(dict)  # trade -> signature -> first sent
        for t, wire, _ in chain.signed(kind):
            sig = str(VersionedTransaction.from_bytes(wire).signatures[0])
            by_trade[trade_of(wire)].setdefault(sig, t)
        assert len(by_trade) == 2  # two sizes of one pair: two trades, found by every batch
        for sigs in by_trade.values():
            firsts = sorted(sigs.values())
            # Signed once, then again only after the first blockhash expired (60 s and a poll later).
            assert len(firsts) == 2 and firsts[1] - firsts[0] > 60.0, (kind.__name__, firsts)
    assert engine.stats.skipped["duplicate"] > 100  # every batch in between found the same trade
    # The RPC variant went out again every 2 s, the same bytes on the same hash key (so the same IP).
    resent: dict[bytes, list[tuple[float, str | None]]] = defaultdict(list)
    for t, wire, key in chain.signed(RpcSendTransaction):
        resent[wire].append((t, key))
    for sends in resent.values():
        assert len({key for _, key in sends}) == 1
        gaps = [b - a for (a, _), (b, _) in itertools.pairwise(sends)]
        assert all(1.9 < g < 3.1 for g in gaps), gaps
        first, last = sends[0][0], sends[-1][0]
        if first < 10.0:  # the first signatures: re-sent until their blockhash expired (60 s)
            assert 57.0 < last - first < 61.0, (first, last)
    assert engine.stats.landing.rebroadcasts == sum(len(s) - 1 for s in resent.values())
    assert len(chain.jobs["JitoSendBundle"]) == 4  # bundles are never re-broadcast on a timer


def fees_of(wire: bytes) -> tuple[int, int]:
    """(tip lamports, compute-unit price) a signed transaction pays."""
    tx = VersionedTransaction.from_bytes(wire)
    keys = [str(k) for k in tx.message.account_keys]
    tip = price = 0
    for ix in tx.message.instructions:
        data = bytes(ix.data)
        if len(ix.accounts) == 2 and keys[ix.accounts[1]] in JITO_TIP_ACCOUNTS:
            tip = int.from_bytes(data[4:12], "little")
        elif keys[ix.program_id_index] == "ComputeBudget111111111111111111111111111111" and data[0] == 3:
            price = int.from_bytes(data[1:9], "little")
    return tip, price


def test_the_tip_and_priority_fee_signed_follow_the_market() -> None:
    chain = Chain(floor_p50=12_000, fees=(0, 3_000, 5_000, 7_000))
    engine = engine_on(chain, config("[jito, rpc]", "tip: {percentile: 50}, priority_fee: {percentile: 75}"))
    run(engine, 5.0)
    assert {fees_of(w) for _, w, _ in chain.signed(JitoSendBundle)} == {(12_000, 0)}  # the floor's 50th
    assert {fees_of(w) for _, w, _ in chain.signed(RpcSendTransaction)} == {(0, 5_000)}  # the fees' 75th
    fee_reads = [s.payload for _, s, _ in chain.jobs["RpcPrioritizationFees"]]
    assert fee_reads and all(r.accounts == [POOL] for r in fee_reads)  # what it writes, but the wallet


def test_the_tip_is_capped_at_its_share_of_the_profit() -> None:
    chain = Chain(floor_p50=12_000)  # the 99th percentile: 12,000,000 lamports, more than any profit here
    engine = engine_on(chain, config("[jito]", "tip: {percentile: 99, max_profit_share: 0.001}"))
    run(engine, 5.0)
    tips = {fees_of(w)[0] for _, w, _ in chain.signed(JitoSendBundle)}
    # A trade's gross profit is 1 % of 0.1 or 0.2 SOL: 1,000,000 or 2,000,000 lamports; 0.1 % of it.
    assert tips and tips <= {999, 1_000, 1_999, 2_000}


def test_fees_are_evaluated_before_signing_a_trade_they_would_make_unprofitable_is_not_signed() -> None:
    # Its writable accounts are contended: recent fees would take the whole profit (the cap allows it).
    chain = Chain(fees=(10**9,) * 4)
    cfg = config("[rpc]", "priority_fee: {percentile: 50, max_micro_lamports: 100000000000, max_profit_share: 1.0}")
    engine = engine_on(chain, cfg)
    run(engine, 5.0)
    assert chain.jobs["RpcPrioritizationFees"] and chain.jobs["JupiterSwapInstructions"]  # it got that far
    assert engine.stats.skipped["unprofitable_after_fees"] > 0 and engine.stats.built == 0
    assert not chain.jobs["RpcSendTransaction"]


def test_blind_and_multi_leg_finding_the_same_trade_sign_it_once() -> None:
    chain = Chain()
    farm = FakeFarm(["10.0.0.1", "10.0.0.2"], rate=20.0, latency=0.05, answer=chain.answer)
    engines = enabled_engines(farm, config(multi=True), Keypair())
    assert [e.name for e in engines] == ["blind", "multi_leg"]

    async def main() -> None:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(e.run(stop)) for e in engines]
        await asyncio.sleep(30.0)
        stop.set()
        await asyncio.gather(*tasks)

    run_virtual(main())
    signatures = {str(VersionedTransaction.from_bytes(w).signatures[0]) for _, w, _ in chain.signed(JitoSendBundle)}
    assert len(signatures) == 2  # two trades (two sizes), each signed once by whichever engine found it first
    assert all(e.stats.opportunities[SOL] > 10 and e.stats.skipped["duplicate"] > 10 for e in engines)


def test_a_bundle_jito_failed_goes_again_as_it_was_when_its_trade_is_found_again() -> None:
    chain = Chain(inflight="Failed")  # every bundle loses its auction
    engine = engine_on(chain, config("[jito]"))
    run(engine, 30.0)
    sends: dict[bytes, list[float]] = defaultdict(list)
    for t, wire, _ in chain.signed(JitoSendBundle):
        sends[wire].append(t)
    assert len(sends) == 2  # one signed bundle per trade in its blockhash's life ...
    assert all(len(times) >= 5 for times in sends.values())  # ... sent again each time Jito had failed it
    assert engine.stats.landing.resends == sum(len(t) - 1 for t in sends.values())
