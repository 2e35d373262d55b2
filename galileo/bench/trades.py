"""Trades against signatures, from the simulator's own records: is any trade signed twice in flight?

Runs the blind strategy and multi-leg with every buy x sell pair (jupiter, dflow, ultra, titan x
jupiter, dflow, ultra) against ``galileo sim`` in this process, landing live through Jito and RPC,
and records every transaction the simulator is sent (bundles and ``sendTransaction``) byte for byte.
Each transaction is identified by what it does, read from the bytes alone: the route instructions'
program and data (every route carries its amounts and minimum out), and its lander variant
(a bundle, or an RPC transaction). Then, per (trade, variant):

* ``signed``: distinct signatures; ``sent``: everything the simulator received (re-broadcasts);
* ``overlaps``: a second signature of a trade first seen before the previous one's blockhash
  expired (the rule says: never).

``python -m galileo.bench.trades --seconds 90`` prints the counts as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from solders.transaction import VersionedTransaction

import galileo.sim.jito as sim_jito
import galileo.sim.rpc as sim_rpc
from galileo.config import GalileoConfig, parse_config
from galileo.farm.coordinator import Farm
from galileo.sim import SimConfig, start_sim
from galileo.sim.accounts import ROUTERS
from galileo.sim.common import decode_wire
from galileo.sim.ledger import BASE_HEIGHT, BASE_SLOT
from galileo.sim.state import SimState
from galileo.strategy.engine import enabled_engines
from galileo.tx import ephemeral_keypair, write_keypair

__all__ = ["TxLog", "main", "trades_run"]

SOL = "So11111111111111111111111111111111111111112"
_ROUTERS = {str(r) for r in ROUTERS}


@dataclass
class TxLog:
    """Every transaction the simulator was sent: (slot, variant, wire bytes)."""

    sent: list[tuple[int, str, bytes]] = field(default_factory=list)


def _record(log: TxLog) -> Callable[[], None]:
    """Wrap the simulator's bundle and sendTransaction handlers; returns the undo."""
    bundle, send = sim_jito._send_bundle, sim_rpc.send_transaction

    def bundle_recorded(state: SimState, params: list[Any]) -> str:
        try:
            encoding = str(params[1].get("encoding", "base58")) if len(params) > 1 else "base58"
            for item in params[0]:
                log.sent.append((state.slot(), "jito", decode_wire(item, encoding)))
        except (IndexError, AttributeError, TypeError, ValueError):
            pass  # malformed: the handler says so
        return bundle(state, params)

    def send_recorded(state: SimState, params: list[Any], source: str) -> str:
        try:
            encoding = str(params[1].get("encoding", "base58")) if len(params) > 1 else "base58"
            log.sent.append((state.slot(), "rpc", decode_wire(params[0], encoding)))
        except (IndexError, AttributeError, TypeError, ValueError):
            pass
        return send(state, params, source)

    sim_jito._send_bundle = bundle_recorded
    sim_rpc.send_transaction = send_recorded

    def undo() -> None:
        sim_jito._send_bundle, sim_rpc.send_transaction = bundle, send

    return undo


def what_it_does(wire: bytes) -> bytes:
    """A transaction's route instructions (program and data, in order): its trade, whatever its blockhash or fees."""
    tx = VersionedTransaction.from_bytes(wire)
    keys = [str(k) for k in tx.message.account_keys]
    return b"|".join(
        keys[ix.program_id_index].encode() + b":" + bytes(ix.data)
        for ix in tx.message.instructions
        if keys[ix.program_id_index] in _ROUTERS
    )


def analyse(log: TxLog, issued: dict[str, int]) -> dict[str, Any]:
    """Per variant: trades, signatures, sends, and signatures of one trade that overlapped in flight."""
    out: dict[str, Any] = {}
    for variant in ("jito", "rpc"):
        first: dict[bytes, dict[str, tuple[int, str]]] = defaultdict(dict)  # trade -> signature -> (slot, blockhash)
        sends = 0
        for slot, v, wire in log.sent:
            if v != variant:
                continue
            sends += 1
            tx = VersionedTransaction.from_bytes(wire)
            first[what_it_does(wire)].setdefault(str(tx.signatures[0]), (slot, str(tx.message.recent_blockhash)))
        overlaps = 0
        for sigs in first.values():
            ordered = sorted(sigs.values())
            for (_slot_a, bh_a), (slot_b, _) in itertools.pairwise(ordered):
                last_valid = issued.get(bh_a)
                expires = BASE_SLOT + (last_valid - BASE_HEIGHT) if last_valid is not None else None
                if expires is None or slot_b <= expires:
                    overlaps += 1
        out[variant] = {
            "trades": len(first),
            "signed": sum(len(s) for s in first.values()),
            "sent": sends,
            "signed_more_than_once": sum(1 for s in first.values() if len(s) > 1),
            "overlaps": overlaps,
        }
    return out


def _config(sim_url: str, runtime: Path, ips: list[str]) -> GalileoConfig:
    u = sim_url
    listed = ", ".join(f'"{ip}"' for ip in ips)
    return parse_config(f"""
bot: {{network: {{enable_multiple_ip: true, manual_ips: [{listed}]}}, prometheus: {{enable: false}}}}
farm: {{runtime_dir: '{runtime}'}}
upstreams:
  jupiter: {{base_url: '{u}/jupiter/swap/v1', api_key_env: null}}
  dflow: {{base_url: '{u}/dflow', api_key_env: null}}
  ultra: {{base_url: '{u}/jupiter/ultra/v1', api_key_env: null}}
  rpc: {{urls: ['{u}/rpc']}}
  jito:
    endpoints: ['{u}/jito/frankfurt', '{u}/jito/ny']
    rate_limit_per_ip: 20
    tip_floor_url: '{u}/jito/api/v1/bundles/tip_floor'
  titan: {{ws_url: '{u.replace("http", "ws", 1)}/titan/api/v1/ws', interval_ms: 400}}
intermedium:
  mints: [EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v, Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCE8BenwNYB,
          JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN]
blind_strategy:
  enable: true
  enable_landers: [jito, rpc]
  slippage_bps: 50
  base_mints:
    - {{mint: {SOL}, trade_size_range: [500000000, 2000000000], trade_range_count: 3,
       trade_range_strategy: exponential, min_quote_profit: 20000}}
multi_leg: {{enable: true, buy_legs: [jupiter, dflow, ultra, titan], sell_legs: [jupiter, dflow, ultra]}}
lander: {{mode: live}}
wallet: {{keypair_path: '{runtime / "id.json"}'}}
""")


async def trades_run(seconds: float, n_ips: int = 8, seed: int = 15) -> dict[str, Any]:
    """Run both strategies for ``seconds`` against an in-process simulator; count trades and signatures."""
    os.environ.setdefault("TITAN_TOKEN", "bench-titan-token")  # local workers inherit it
    log = TxLog()
    undo = _record(log)
    sim = await start_sim(SimConfig(port=0, seed=seed, rate_limit=20))
    try:
        with tempfile.TemporaryDirectory(prefix="galileo-trades-") as tmp:
            runtime = Path(tmp)
            kp = ephemeral_keypair()
            write_keypair(runtime / "id.json", kp)
            cfg = _config(sim.url, runtime, [f"127.0.45.{i}" for i in range(1, n_ips + 1)])
            async with Farm(cfg, runtime_dir=runtime, log_level="warning") as farm:
                await farm.wait_ready()
                engines = enabled_engines(farm, cfg, kp, metrics=farm.metrics)
                stop = asyncio.Event()
                started = time.monotonic()
                tasks = [asyncio.create_task(e.run(stop)) for e in engines]
                await asyncio.sleep(seconds)
                stop.set()
                await asyncio.wait_for(asyncio.gather(*tasks), 60)
                ran = time.monotonic() - started
                snapshot = farm.snapshot()
        result = analyse(log, dict(sim.state.ledger.issued))
        result["seconds"] = round(ran, 1)
        result["engines"] = {
            e.name: {
                k: v
                for k, v in e.stats.totals().items()
                if k
                in (
                    "opportunities",
                    "built",
                    "skipped",
                    "sends",
                    "accepted",
                    "landed",
                    "failed",
                    "rebroadcasts",
                    "realised",
                    "unrealised",
                    "realised_profit",
                    "realised_expected",
                )
            }
            | {"build_failures": dict(e.stats.build_failures)}
            for e in engines
        }
        result["round_trips"] = snapshot["round_trips"]
        chain = await _sim_stats(sim.url)
        result["sim"] = {"sends": chain["sends"], "failures_by_error": chain["chain"]["failures_by_error"]}
        return result
    finally:
        undo()
        await sim.close()


async def _sim_stats(url: str) -> Any:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(url + "/sim/stats") as resp:
        return await resp.json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--ips", type=int, default=8)
    args = parser.parse_args()
    result = asyncio.run(trades_run(args.seconds, args.ips))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
