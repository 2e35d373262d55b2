"""Signed Jito bundles the simulator accepts, and a record of every transaction it was sent.

Each "opportunity" is one signed transaction (a tip transfer with its own amount): a re-sign
would change its signature, a re-broadcast sends the very same bytes. The recorder wraps the
simulator's ``sendBundle`` handler in this process, so it sees every bundle that reached the
simulator, accepted or rejected, byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from solders.keypair import Keypair

import galileo.sim.jito as sim_jito
from galileo.landing import Assembled
from galileo.sim import SimServer
from galileo.sim.common import decode_wire
from galileo.tx import JITO_TIP_ACCOUNTS, build_transaction, tip_instruction


async def sim_blockhash(sim: SimServer) -> tuple[str, int]:
    """A blockhash the simulator issued, and its last valid block height."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "getLatestBlockhash", "params": [{"commitment": "confirmed"}]}
    async with aiohttp.ClientSession() as s, s.post(sim.url + "/rpc", json=body) as resp:
        value = (await resp.json())["result"]["value"]
    return str(value["blockhash"]), int(value["lastValidBlockHeight"])


def opportunities(wallet: Keypair, blockhash: str, last_valid: int, n: int) -> list[Assembled]:
    """``n`` distinct signed transactions, each a tip transfer of its own amount."""
    payer = str(wallet.pubkey())
    out = []
    for i in range(n):
        tip = tip_instruction(payer, JITO_TIP_ACCOUNTS[i % len(JITO_TIP_ACCOUNTS)], 10_000 + i)
        built = build_transaction(wallet, [tip], [], blockhash)
        out.append(Assembled(jito=built, rpc=None, last_valid_block_height=last_valid, tip=10_000 + i, priority_fee=0))
    return out


@dataclass
class BundleLog:
    """Every bundle the simulator received: the raw bytes of each of its transactions."""

    bundles: list[list[bytes]] = field(default_factory=list)

    @property
    def transactions(self) -> list[bytes]:
        return [tx for bundle in self.bundles for tx in bundle]


@contextmanager
def recording_bundles() -> Iterator[BundleLog]:
    log = BundleLog()
    original = sim_jito._send_bundle

    def recording(state: Any, params: list[Any]) -> str:
        try:
            encoding = str(params[1].get("encoding", "base58")) if len(params) > 1 else "base58"
            log.bundles.append([decode_wire(item, encoding) for item in params[0]])
        except (IndexError, AttributeError, TypeError, ValueError):
            log.bundles.append([])  # malformed: the handler rejects it; still a bundle that arrived
        return original(state, params)

    sim_jito._send_bundle = recording
    try:
        yield log
    finally:
        sim_jito._send_bundle = original
