"""Helpers shared by the simulator tests: JSON-RPC calls, signed transactions, shape comparison."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from solders.address_lookup_table_account import AddressLookupTableAccount
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from galileo.sim import SimServer

SimFactory = Callable[..., Awaitable[SimServer]]
SessionFactory = Callable[..., aiohttp.ClientSession]
REFERENCE = Path(__file__).resolve().parent.parent / "data" / "reference"
SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
TIP = "96gYZGLnJYVFmbjzopPSU6QiEV5fGqZNyN9nmNhvrZU5"


def reference(name: str) -> Any:
    """A reference payload from tests/data/reference."""
    return json.loads((REFERENCE / name).read_text())


async def rpc(
    session: aiohttp.ClientSession, url: str, method: str, params: list[Any] | None = None, path: str = "/rpc"
) -> tuple[int, Any]:
    """POST one JSON-RPC call; (HTTP status, decoded body)."""
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
    async with session.post(url + path, json=body) as resp:
        return resp.status, await resp.json(content_type=None)


async def latest_blockhash(session: aiohttp.ClientSession, url: str) -> Hash:
    """A blockhash issued by the simulator."""
    _, body = await rpc(session, url, "getLatestBlockhash", [{"commitment": "confirmed"}])
    return Hash.from_string(body["result"]["value"]["blockhash"])


def tip_ix(payer: Keypair, lamports: int = 10_000, account: str = TIP) -> Instruction:
    """A System transfer to a Jito tip account."""
    return transfer(
        TransferParams(from_pubkey=payer.pubkey(), to_pubkey=Pubkey.from_string(account), lamports=lamports)
    )


def signed_tx(
    payer: Keypair,
    blockhash: Hash,
    ixs: list[Instruction],
    alts: list[AddressLookupTableAccount] | None = None,
) -> bytes:
    """A v0 transaction of ``ixs`` signed by ``payer``."""
    msg = MessageV0.try_compile(payer.pubkey(), ixs, alts or [], blockhash)
    return bytes(VersionedTransaction(msg, [payer]))


def b64(raw: bytes) -> str:
    """Standard base64."""
    return base64.b64encode(raw).decode()


def _type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    return type(value).__name__


def shape_problems(
    actual: Any,
    ref: Any,
    *,
    path: str = "$",
    optional: frozenset[str] = frozenset(),
    extra: frozenset[str] = frozenset(),
    nullable: frozenset[str] = frozenset(),
    maps: frozenset[str] = frozenset(),
) -> list[str]:
    """Every difference in keys and JSON types between ``actual`` and ``ref``.

    ``optional``: paths that may be missing; ``extra``: paths allowed in ``actual`` only;
    ``nullable``: paths where null and the reference type are both fine; ``maps``: objects keyed
    by data (pubkeys, provider ids) whose values are compared with the reference's first value.
    List elements are written ``[]``, map values ``*``.
    """
    kw = {"optional": optional, "extra": extra, "nullable": nullable, "maps": maps}
    if actual is None and path in nullable:
        return []
    if ref is None and path in nullable:
        return []
    if _type(actual) != _type(ref):
        return [f"{path}: {_type(actual)} where the reference has {_type(ref)}"]
    problems: list[str] = []
    if isinstance(ref, dict) and path in maps:
        first = next(iter(ref.values()), None)
        if first is not None:
            for value in actual.values():
                problems += shape_problems(value, first, path=f"{path}.*", **kw)
    elif isinstance(ref, dict):
        for key in ref:
            sub = f"{path}.{key}"
            if key not in actual:
                if sub not in optional:
                    problems.append(f"{sub}: missing")
                continue
            problems += shape_problems(actual[key], ref[key], path=sub, **kw)
        for key in actual:
            if key not in ref and f"{path}.{key}" not in extra:
                problems.append(f"{path}.{key}: not in the reference")
    elif isinstance(ref, list) and ref:
        for item in actual:
            problems += shape_problems(item, ref[0], path=f"{path}[]", **kw)
    return problems


def as_reference_bytes(value: Any) -> Any:
    """Decoded MessagePack with ``bytes`` written as the reference's ``{"type": "bytes", ...}``."""
    if isinstance(value, bytes):
        return {"type": "bytes", "base64": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {k: as_reference_bytes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_reference_bytes(v) for v in value]
    return value


class TitanClient:
    """A minimal Titan WebSocket client over aiohttp (msgpack frames, optional gzip)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.gzip = (ws.protocol or "").endswith("+gzip")
        self.next_id = 1

    @classmethod
    async def connect(
        cls,
        session: aiohttp.ClientSession,
        url: str,
        token: str = "test-token",
        protocols: tuple[str, ...] = ("v1.api.titan.ag+gzip", "v1.api.titan.ag"),
        via_query: bool = False,
    ) -> TitanClient:
        ws_url = url.replace("http://", "ws://") + "/titan/api/v1/ws"
        headers = {} if via_query else {"Authorization": f"Bearer {token}"}
        params = {"auth": token} if via_query else None
        ws = await session.ws_connect(ws_url, protocols=protocols, headers=headers, params=params)
        return cls(ws)

    async def send(self, data: dict[str, Any]) -> int:
        request_id = self.next_id
        self.next_id += 1
        raw = msgspec.msgpack.encode({"id": request_id, "data": data})
        await self.ws.send_bytes(gzip.compress(raw) if self.gzip else raw)
        return request_id

    async def recv(self) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.BINARY, msg
        raw = gzip.decompress(msg.data) if self.gzip else msg.data
        decoded: dict[str, Any] = msgspec.msgpack.decode(raw)
        return decoded

    async def close(self) -> None:
        await self.ws.close()


def stream_request(user: Pubkey, amount: int = 1_000_000_000, interval_ms: int = 50, **swap: Any) -> dict[str, Any]:
    """A NewSwapQuoteStream request body for SOL→USDC."""
    return {
        "NewSwapQuoteStream": {
            "swap": {
                "inputMint": bytes(Pubkey.from_string(SOL)),
                "outputMint": bytes(Pubkey.from_string(USDC)),
                "amount": amount,
                "swapMode": "ExactIn",
                "slippageBps": 50,
                **swap,
            },
            "transaction": {"userPublicKey": bytes(user)},
            "update": {"intervalMs": interval_ms},
        }
    }
