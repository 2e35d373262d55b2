"""The round-trip engine on an in-memory farm and a virtual clock: one engine, two shapes."""

from __future__ import annotations

import asyncio
from fractions import Fraction

import msgspec
import orjson
from solders.keypair import Keypair

from broker.jobs import DflowQuote, DflowSwapInstructions, JupiterQuote, RpcLatestBlockhash
from broker.results import Blockhash, Quote, ResultValue
from broker.types import JobSpec
from galileo.config import GalileoConfig, parse_config
from galileo.strategy.engine import RoundTripEngine, Shape, enabled_engines
from tests.fakefarm import FakeFarm
from tests.virtualtime import run_virtual

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
JUP = "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN"
U = "http://127.0.0.1:7900"

# What one unit of each mint is worth in USDC's raw units (1 SOL = 150 USDC, 1 JUP = 0.5 USDC).
WORTH = {SOL: Fraction(150_000_000, 10**9), USDC: Fraction(1), JUP: Fraction(1, 2)}


def config(*, base: str, blind: bool, multi: bool) -> GalileoConfig:
    return parse_config(f"""
upstreams:
  jupiter: {{base_url: '{U}/jupiter/swap/v1', api_key_env: null, timeout_ms: 5000}}
  dflow: {{base_url: '{U}/dflow', api_key_env: null, timeout_ms: 5000}}
  rpc: {{urls: ['{U}/rpc']}}
  jito: {{endpoints: ['{U}/jito/ny']}}
intermedium: {{mints: [{JUP}]}}
blind_strategy:
  enable: {str(blind).lower()}
  base_mints: [{{mint: {base}, trade_size_range: [100000000, 200000000], trade_range_count: 2, min_quote_profit: 1}}]
multi_leg: {{enable: {str(multi).lower()}, buy_legs: [jupiter], sell_legs: [dflow]}}
""")


def market(spec: JobSpec, ip: str) -> ResultValue | None:
    """Fair prices, and DFlow pays 1 % more on every sell: every round trip gains ~1 %."""
    job = spec.payload
    if isinstance(job, RpcLatestBlockhash):
        return Blockhash(blockhash="11111111111111111111111111111111", last_valid_block_height=1000, slot=1)
    if isinstance(job, JupiterQuote | DflowQuote):
        bonus = Fraction(101, 100) if isinstance(job, DflowQuote) else Fraction(1)
        out = int(job.amount * WORTH[job.input_mint] / WORTH[job.output_mint] * bonus)
        return Quote(
            in_amount=job.amount, out_amount=out, other_amount_threshold=out, slippage_bps=0, price_impact_pct=0.0
        )
    return None


def run(farm: FakeFarm, engine: RoundTripEngine, seconds: float) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(engine.run(stop))
        await asyncio.sleep(seconds)
        stop.set()
        await task

    run_virtual(main())


def test_multi_leg_prices_a_base_mint_it_has_never_seen_priced_and_then_finds_its_opportunities() -> None:
    """The drift the two strategy classes had: only blind learned SOL prices, so this found nothing."""
    cfg = config(base=USDC, blind=False, multi=True)  # no SOL in any leg: costs need a probe
    farm = FakeFarm(["10.0.0.1", "10.0.0.2"], rate=20.0, latency=0.05, answer=market)
    (engine,) = enabled_engines(farm, cfg, Keypair())
    run(farm, engine, 5.0)
    probes = [s.payload for _, s, _ in farm.jobs if s.task == "price"]
    assert len(probes) == 1 and isinstance(probes[0], JupiterQuote)
    assert (probes[0].input_mint, probes[0].output_mint, probes[0].amount) == (SOL, USDC, 10**9)
    assert engine.name == "multi_leg" and engine.stats.opportunities[USDC] > 10
    assert engine.stats.pairs[("jupiter", "dflow", "profitable")] == engine.stats.opportunities[USDC]


def test_blind_is_the_one_aggregator_shape_and_sells_on_the_buy_legs_ip() -> None:
    cfg = config(base=SOL, blind=True, multi=False)
    farm = FakeFarm([f"10.0.0.{i}" for i in range(1, 5)], rate=20.0, latency=0.15, answer=market)
    (engine,) = enabled_engines(farm, cfg, Keypair())
    assert engine.shape == Shape("blind", ("jupiter",), ("jupiter",))
    run(farm, engine, 10.0)
    quotes = [(t, s, ip) for t, s, ip in farm.jobs if s.task in ("quote_buy", "quote_sell")]
    assert {s.upstream for _, s, _ in quotes} == {"jupiter"}  # one aggregator on both sides
    assert not [s for _, s, _ in farm.jobs if s.task == "price"]  # SOL needs no price
    stats = engine.stats
    assert stats.sell_moved == 0 and stats.sell_on_buy_ip == stats.batches_completed > 0
    assert all(r.buy_ip == r.sell_ip for r in stats.recent)
    # Pipelined: 4 IPs x 20 quotes/s at 150 ms latency, two quotes a batch; one at a time per IP gave 13/s.
    assert stats.batches_completed / 10.0 > 30


def test_the_sell_leg_sells_what_the_buy_surely_delivers_and_is_held_to_the_round_trips_costs() -> None:
    """Issue 15.3: judged on minimum outs. A buy leg whose route may pay 0.5 % less than it quotes
    (an upstream that chose its own slippage) is sold at that floor, and the sell leg's
    swap-instructions are asked to pay size + costs + min profit at least."""

    def floored(spec: JobSpec, ip: str) -> ResultValue | None:
        got = market(spec, ip)
        if isinstance(got, Quote) and isinstance(spec.payload, JupiterQuote):
            return msgspec.structs.replace(got, other_amount_threshold=got.out_amount * 995 // 1000)
        if isinstance(spec.payload, DflowQuote) and isinstance(got, Quote):
            raw = orjson.dumps({"outAmount": str(got.out_amount), "otherAmountThreshold": str(got.out_amount)})
            return msgspec.structs.replace(got, raw=raw)
        return got

    cfg = config(base=SOL, blind=False, multi=True)
    farm = FakeFarm(["10.0.0.1"], rate=20.0, latency=0.05, answer=floored)
    (engine,) = enabled_engines(farm, cfg, Keypair())
    run(farm, engine, 3.0)
    buys = [s.payload for _, s, _ in farm.jobs if s.task == "quote_buy"]
    sells = [s.payload for _, s, _ in farm.jobs if s.task == "quote_sell"]
    assert buys and sells
    for buy in buys:
        assert isinstance(buy, JupiterQuote) and buy.slippage_bps == 0  # quoted at slippage 0 ...
        out = int(buy.amount * WORTH[SOL] / WORTH[JUP])
        assert any(isinstance(s, DflowQuote) and s.amount == out * 995 // 1000 for s in sells)  # ... sold at its floor
    held = [s.payload for _, s, _ in farm.jobs if isinstance(s.payload, DflowSwapInstructions)]
    assert held and engine.stats.opportunities[SOL] > 0
    for job in held:  # each asked for: size back, the tip and fee (15 000), and min profit (1)
        threshold = int(orjson.loads(job.quote)["otherAmountThreshold"])
        assert threshold >= min(buys[0].amount, 100_000_000) + 15_001
