"""Trade identity (held until nothing of it can land), and realised P&L read back from the chain."""

from __future__ import annotations

import asyncio
import math
from fractions import Fraction

from solders.hash import Hash
from solders.keypair import Keypair

from broker.jobs import JitoSendBundle, RpcGetTransaction, RpcSignatureStatuses
from broker.results import (
    BundleAccepted,
    ResultValue,
    SignatureStatus,
    SignatureStatuses,
    TokenBalance,
    TransactionMeta,
)
from broker.types import JobSpec
from galileo.chain import ChainState
from galileo.config import parse_config
from galileo.landing import LanderStack, LandingStats, TradeBook, TradeKey, balance_change
from galileo.landing.pnl import realised_in_base
from galileo.upstreams import Upstreams
from tests.fakefarm import FakeFarm
from tests.fault.landing import opportunities
from tests.virtualtime import run_virtual

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
WALLET = "Cm7vjoV12JuVqCduW6rkGGcgN77NPkzqZr66pkVTzb5b"
ROUTER = "D8cy77BBepLMngZx6ZukaTff5hCt1HrWyKk3Hnd9oitf"
U = "http://127.0.0.1:7900"
KEY = TradeKey(((SOL, USDC, 10**9, 150_000_000), (USDC, SOL, 150_000_000, 1_010_000_000)))


def test_a_trade_is_held_from_its_claim_until_its_blockhash_expires_whatever_became_of_it() -> None:
    book: TradeBook[str] = TradeBook(build_timeout=30.0)
    assert book.claim(KEY, now=0.0, height=100) and not book.claim(KEY, now=0.1, height=100)
    book.release(KEY)  # nothing signed: it may be found and built again
    assert book.claim(KEY, now=1.0, height=100)
    book.signed(KEY, last_valid=250, sent={"jito", "rpc"}, payload="the signed bytes")
    book.release(KEY)  # signed: a release does not let it go
    book.settled(KEY, "jito", "landed", on_chain=True)
    book.settled(KEY, "rpc", "failed", on_chain=True)
    assert not book.claim(KEY, now=2.0, height=200)  # both on chain, and still not signed again ...
    assert not book.claim(KEY, now=3.0, height=250)
    assert book.claim(KEY, now=4.0, height=251)  # ... until its blockhash has expired
    book.signed(KEY, last_valid=400, sent=set())  # dry run: nothing out, held all the same
    assert not book.claim(KEY, now=5.0, height=400)
    assert book.claim(KEY, now=6.0, height=401)
    assert not book.claim(KEY, now=20.0, height=401)  # claimed, being built ...
    assert book.claim(KEY, now=37.0, height=401)  # ... for too long: given up


def test_a_bundle_jito_failed_or_dropped_may_go_again_as_it_was_while_its_blockhash_lives() -> None:
    book: TradeBook[str] = TradeBook()
    book.claim(KEY, now=0.0, height=100)
    book.signed(KEY, last_valid=250, sent={"jito", "rpc"}, payload="the signed bytes")
    assert book.resendable(KEY, height=110) is None  # in flight
    book.settled(KEY, "jito", "failed", on_chain=False)  # lost the auction: nothing on chain
    book.settled(KEY, "rpc", "failed", on_chain=True)  # on chain with an error: paid, final
    assert book.resendable(KEY, height=120) == ("the signed bytes", {"jito"})
    book.resent(KEY, {"jito"})
    assert book.resendable(KEY, height=121) is None  # out again
    book.settled(KEY, "jito", "dropped", on_chain=False)
    assert book.resendable(KEY, height=250) == ("the signed bytes", {"jito"})
    assert book.resendable(KEY, height=251) is None  # its blockhash expired: nothing to re-send


def meta(
    pre: list[int], post: list[int], tokens: list[tuple[str, str, int, int, int]], err: str = ""
) -> TransactionMeta:
    """Balances; ``tokens``: (mint, owner, account index, pre amount or -1 if absent, post amount or -1)."""
    return TransactionMeta(
        slot=9,
        fee=5000,
        err=err,
        pre_balances=pre,
        post_balances=post,
        pre_token_balances=[TokenBalance(i, m, o, a) for m, o, i, a, _ in tokens if a >= 0],
        post_token_balances=[TokenBalance(i, m, o, b) for m, o, i, _, b in tokens if b >= 0],
    )


def test_a_wallets_balance_change_counts_its_token_accounts_so_rent_and_wrapping_are_not_profit() -> None:
    # A SOL round trip: 1 SOL wrapped and swapped for USDC (a new account, rent 2,039,280), sold back
    # for 1.00003 SOL into the wrapped account, which is closed; fee 5,000 and tip 10,000.
    rent = 2_039_280
    m = meta(
        pre=[20 * 10**9, 0, 0, 10**15],
        post=[20 * 10**9 + 30_000 - 15_000 - rent, 0, rent, 10**15 - 30_000],
        tokens=[(SOL, WALLET, 1, -1, -1), (USDC, WALLET, 2, -1, 0), (USDC, ROUTER, 3, 10**12, 10**12)],
    )
    change = balance_change(m, WALLET)
    assert change.lamports == 15_000 and change.tokens == {} and change.fee == 5000 and not change.failed
    assert realised_in_base(SOL, change, None) == 15_000


class Prices:
    """1 SOL = 150 USDC."""

    rate = Fraction(150_000_000, 10**9)

    def to_base(self, mint: str, lamports: int) -> int | None:
        return math.ceil(lamports * self.rate) if mint == USDC else None

    def to_lamports(self, mint: str, amount: int) -> int | None:
        return math.floor(amount / self.rate) if mint == USDC else None


def test_a_usdc_round_trip_is_its_usdc_change_less_its_sol_costs_in_usdc() -> None:
    m = meta(pre=[10**9], post=[10**9 - 15_000], tokens=[(USDC, WALLET, 1, 5 * 10**8, 5 * 10**8 + 300_000)])
    change = balance_change(m, WALLET)
    assert change.tokens == {USDC: 300_000}
    assert realised_in_base(USDC, change, Prices()) == 300_000 - 2_250  # 15,000 lamports = 2,250 micro-USDC
    assert realised_in_base(USDC, change, None) is None


class Recorder:
    def __init__(self) -> None:
        self.round_trips: list[tuple[str, str, int, int]] = []

    def __getattr__(self, name: str) -> object:
        return lambda *a, **k: None

    def round_trip(self, strategy: str, mint: str, *, expected_lamports: int, realised_lamports: int) -> None:
        self.round_trips.append((strategy, mint, expected_lamports, realised_lamports))


def test_what_lands_is_read_back_from_the_chain_and_booked_next_to_what_was_expected() -> None:
    wallet = Keypair()
    batch = opportunities(wallet, str(Hash.default()), 10**9, 2)
    asked: list[int] = []

    def answer(spec: JobSpec, ip: str) -> ResultValue | None:
        job = spec.payload
        now = asyncio.get_running_loop().time()
        if isinstance(job, JitoSendBundle):
            return BundleAccepted(bundle_id="x")
        if isinstance(job, RpcSignatureStatuses):  # on chain from 0.5 s
            return SignatureStatuses(
                slot=9, statuses=[SignatureStatus(slot=9) if now > 0.5 else None] * len(job.signatures)
            )
        if isinstance(job, RpcGetTransaction):
            asked.append(len(asked))
            if len(asked) == 1:
                return TransactionMeta(found=False)  # processed, not yet confirmed: asked again a second later
            gain = 25_000 if job.signature == batch[0].jito.signature else -15_000  # type: ignore[union-attr]
            return meta(pre=[10**9], post=[10**9 + gain], tokens=[])
        return None

    farm = FakeFarm(["10.0.0.1"], latency=0.01, answer=answer)
    cfg = parse_config(f"""
upstreams: {{rpc: {{urls: ['{U}/rpc']}}, jito: {{endpoints: ['{U}/jito/ny']}}}}
lander: {{mode: live}}
wallet: {{keypair_path: /unused.json}}
""")
    upstreams = Upstreams(cfg)
    stats = LandingStats()
    metrics = Recorder()
    lander = LanderStack(
        farm,
        upstreams,
        ChainState(farm, upstreams),
        cfg.lander,
        ["jito"],
        stats,
        metrics,
        strategy="blind",  # type: ignore[arg-type]
    )

    async def main() -> None:
        await lander.land(batch[0], SOL, profit=30_000)
        await lander.land(batch[1], SOL, profit=20_000)
        await asyncio.sleep(5.0)
        await lander.close(timeout=5.0)

    run_virtual(main())
    assert stats.totals()["landed"] == 2 and stats.realised == 2 and stats.unrealised == 0
    assert stats.landed_profit[SOL] == 50_000 and stats.realised_expected[SOL] == 50_000
    assert stats.realised_profit[SOL] == 25_000 - 15_000
    assert sorted(metrics.round_trips) == [("blind", SOL, 20_000, -15_000), ("blind", SOL, 30_000, 25_000)]
    reads = [s.payload for _, s, _ in farm.jobs if isinstance(s.payload, RpcGetTransaction)]
    assert {r.signature for r in reads} == {o.jito.signature for o in batch if o.jito} and len(reads) == 3
    assert all(r.commitment == "confirmed" for r in reads)
