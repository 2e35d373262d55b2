"""Round trips built by galileo's own code from the simulator's real answers, run in its VM.

:class:`ExecutingFarm` is a :class:`galileo.client.FarmClient` that runs every job the way a
worker process does (:class:`tests.clients.conftest.Worker`: the real upstream clients over
a bound session) against the simulator, so the legs (:mod:`galileo.strategy.legs`), the
chain state and assembly (:func:`galileo.landing.assemble`) all run unchanged. Titan quotes
come from the simulator's WebSocket, asked as :meth:`galileo.upstreams.Upstreams.titan_subscribe`
asks (slippage 0, ``closeInputTokenAccount: false``, the leg's account limit).
"""

from __future__ import annotations

import asyncio
import itertools
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.token.associated import get_associated_token_address

from broker.results import BundleAccepted, Quote, TitanQuote
from broker.solana import AccountMeta, Instruction
from broker.types import JobOutcome, JobSpec
from galileo.chain import ChainState
from galileo.client import EventHook, Lane
from galileo.config import GalileoConfig, parse_config
from galileo.landing import Assembled, assemble
from galileo.sim import SimServer
from galileo.strategy.legs import Leg, LegName, LegQuote, TitanLeg, make_leg
from galileo.tx import SwapLeg
from galileo.upstreams import QuoteRequest, Upstreams, leg_accounts
from tests.clients.conftest import Worker
from tests.sim.sim_helpers import TitanClient

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
BUYS: tuple[LegName, ...] = ("jupiter", "dflow", "ultra", "titan")
SELLS: tuple[LegName, ...] = ("jupiter", "dflow", "ultra")  # Titan quotes buy legs only (multi_leg.sell_legs)
FEE = 5_000  # one signature
TIP = 10_000


def sim_config(sim: SimServer, runtime: Path) -> GalileoConfig:
    u = sim.url
    return parse_config(f"""
farm: {{runtime_dir: '{runtime}'}}
upstreams:
  jupiter: {{base_url: '{u}/jupiter/swap/v1', api_key_env: null}}
  dflow: {{base_url: '{u}/dflow', api_key_env: null}}
  ultra: {{base_url: '{u}/jupiter/ultra/v1', api_key_env: null}}
  rpc: {{urls: ['{u}/rpc']}}
  jito: {{endpoints: ['{u}/jito/ny'], rate_limit_per_ip: null}}
  titan: {{ws_url: '{u.replace("http", "ws", 1)}/titan/api/v1/ws'}}
lander: {{mode: live, tip_lamports: {TIP}}}
""")


class ExecutingFarm:
    """Every job run at once, as a worker on 127.0.0.2 runs it."""

    def __init__(self, worker: Worker, ip: str = "127.0.0.2") -> None:
        self.worker = worker
        self.ip = ip
        self.ids = itertools.count(1)
        self.jobs: list[JobSpec] = []

    async def run(self, spec: JobSpec) -> JobOutcome:
        self.jobs.append(spec)
        ran = await self.worker.run(spec.payload, ip=self.ip, timeout=spec.timeout)
        o = ran.outcome
        return JobOutcome(
            job_id=next(self.ids),
            result=o.result,
            task=spec.task,
            upstream=spec.upstream,
            ip=self.ip,
            latency=o.latency,
            value=o.value,
            error=o.error,
            status=o.status,
        )

    def submit(self, spec: JobSpec) -> asyncio.Future[JobOutcome]:
        return asyncio.ensure_future(self.run(spec))

    def eligible(self, upstream: str) -> list[Lane]:
        return [Lane(self.ip, upstream, float("inf"), None, 0.0)]

    def watch_events(self, hook: EventHook) -> None:
        pass


class OneTitanQuote:
    """Stands in for :class:`galileo.strategy.titan.TitanStreams`: the first quote of a fresh stream."""

    def __init__(self, sim: SimServer, user: Pubkey, accounts: int) -> None:
        self.sim, self.user, self.accounts = sim, user, accounts

    async def quote_for(self, req: QuoteRequest, wait: float) -> tuple[TitanQuote, str] | None:
        async with aiohttp.ClientSession() as client:
            titan = await TitanClient.connect(client, self.sim.url)
            swap = {
                "inputMint": bytes(Pubkey.from_string(req.input_mint)),
                "outputMint": bytes(Pubkey.from_string(req.output_mint)),
                "amount": req.amount,
                "swapMode": "ExactIn",
                "slippageBps": 0,
                "accountsLimitTotal": self.accounts,
                "providers": ["Titan"],
            }
            transaction = {"userPublicKey": bytes(self.user), "closeInputTokenAccount": False}
            await titan.send({"NewSwapQuoteStream": {"swap": swap, "transaction": transaction}})
            while "StreamData" not in (msg := await titan.recv()):
                pass
            await titan.close()
        route = msg["StreamData"]["payload"]["SwapQuotes"]["quotes"]["Titan"]
        return titan_quote(route), "127.0.0.2"


def titan_quote(route: dict[str, Any]) -> TitanQuote:
    """A Titan route (MessagePack, as streamed) as the worker decodes it."""
    ixs = [
        Instruction(
            str(Pubkey(i["p"])), tuple(AccountMeta(str(Pubkey(a["p"])), a["s"], a["w"]) for a in i["a"]), i["d"]
        )
        for i in route["instructions"]
    ]
    return TitanQuote(
        provider="Titan",
        in_amount=route["inAmount"],
        out_amount=route["outAmount"],
        slippage_bps=route["slippageBps"],
        instructions=ixs,
        alts=[str(Pubkey(a)) for a in route["addressLookupTables"]],
        compute_units=route["computeUnits"],
        compute_units_safe=route["computeUnitsSafe"],
        context_slot=route["contextSlot"],
        seq=0,
        stream_id=0,
    )


def pays_now(sim: SimServer, q: LegQuote) -> int:
    """What the pool a Jupiter or DFlow quote routes through pays for its input at the current slot."""
    assert isinstance(q.value, Quote)
    step = orjson.loads(q.value.raw)["routePlan"][0]
    amm = step.get("marketKey") or step["swapInfo"]["ammKey"]
    req = q.request
    pool = next(p for p in sim.state.accounts.pools[(req.input_mint, req.output_mint)] if str(p.amm) == amm)
    got = sim.state.prices.quote("x", req.input_mint, req.output_mint, q.in_amount, False, sim.state.slot(), pool.index)
    assert got is not None
    return got.out_amount


@dataclass
class Chain:
    """One wallet's round trips against one simulator, through galileo's own legs and assembly."""

    sim: SimServer
    cfg: GalileoConfig
    farm: ExecutingFarm
    wallet: Keypair

    @classmethod
    def of(cls, sim: SimServer, worker: Worker, runtime: Path, wallet: Keypair | None = None) -> Chain:
        return cls(sim, sim_config(sim, runtime), ExecutingFarm(worker), wallet or Keypair())

    def __post_init__(self) -> None:
        self.upstreams = Upstreams(self.cfg)
        self.chain = ChainState(self.farm, self.upstreams)
        self.user = str(self.wallet.pubkey())

    def leg(self, name: LegName) -> Leg:
        if name == "titan":
            streams: Any = OneTitanQuote(self.sim, self.wallet.pubkey(), leg_accounts(None))
            return TitanLeg(self.farm, self.upstreams, self.chain, self.user, streams, 1.0)
        return make_leg(name, self.farm, self.upstreams, self.chain, self.user, None, 1.0)

    async def quotes(self, buy: LegName, sell: LegName, size: int) -> tuple[LegQuote, LegQuote]:
        """The buy leg of ``size`` SOL into USDC, and the sell leg of what it surely delivers."""
        bq = await self.leg(buy).quote(QuoteRequest(SOL, USDC, size), None, "quote_buy")
        sq = await self.leg(sell).quote(QuoteRequest(USDC, SOL, bq.sure_out), None, "quote_sell")
        return bq, sq

    async def legs(self, bq: LegQuote, sq: LegQuote, min_out: int) -> list[SwapLeg]:
        return [await self.leg(bq.provider).swap_leg(bq), await self.leg(sq.provider).swap_leg(sq, min_out=min_out)]

    async def assemble(self, legs: list[SwapLeg]) -> Assembled:
        return await assemble(
            legs, self.chain, self.wallet, self.cfg.lander, jito=True, rpc=False, rng=random.Random(1)
        )

    async def send_bundle(self, wire: bytes) -> str:
        out = await self.farm.run(self.upstreams.send_bundle(self.upstreams.jito[0], [wire], "b"))
        assert isinstance(out.value, BundleAccepted), out
        return out.value.bundle_id

    async def rpc(self, method: str, params: list[Any], path: str = "/rpc") -> Any:
        async with (
            aiohttp.ClientSession() as client,
            client.post(self.sim.url + path, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}) as r,
        ):
            return (await r.json())["result"]

    async def status(self, bundle_id: str) -> str:
        got = await self.rpc("getInflightBundleStatuses", [[bundle_id]], "/jito/ny/api/v1/bundles")
        status: str = got["value"][0]["status"]
        return status

    async def lamports(self) -> int:
        value: int = (await self.rpc("getBalance", [self.user]))["value"]
        return value

    async def token(self, mint: str) -> tuple[int, int] | None:
        """(raw amount, rent lamports) of the wallet's associated account of ``mint``; None: no account."""
        ata = get_associated_token_address(self.wallet.pubkey(), Pubkey.from_string(mint))
        info = await self.rpc("getAccountInfo", [str(ata), {"encoding": "base64"}])
        if info["value"] is None:
            return None
        amount = await self.rpc("getTokenAccountBalance", [str(ata)])
        return int(amount["value"]["amount"]), int(info["value"]["lamports"])

    async def control(self, body: dict[str, Any]) -> None:
        async with aiohttp.ClientSession() as client, client.post(self.sim.url + "/sim/control", json=body) as r:
            assert r.status == 200, await r.text()

    async def stats(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as client, client.get(self.sim.url + "/sim/stats") as r:
            body: dict[str, Any] = await r.json()
            return body
