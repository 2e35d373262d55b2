"""The load of ``galileo bench sim``: one process that keeps ``galileo sim`` busy, and counts.

``python -m galileo.bench.simload`` reads :class:`LoadPlan` lines (JSON) on stdin; for each it
gets ready, says so, waits for ``go``, runs, and answers a :class:`LoadResult` line. It runs in
its own process so that the simulator, not the load, is what is measured, and it is cheap per
request: a few hand-written HTTP/1.1 keep-alive
connections (asyncio protocols on uvloop, bound to the plan's source addresses), requests
pipelined ``depth`` deep, each response read as its status line and ``Content-Length`` only.
Its own CPU time over the window is in the result, so the bench can tell whether it kept up.

* ``quote``: Jupiter ``GET /quote`` over the simulated pairs and a spread of amounts.
* ``bundle``: Jito ``sendBundle``, each a fresh signed transaction that runs a real Jupiter
  route in the simulator's VM (compute budget, WSOL wrap, the router's swap, close, a 10,000
  lamport tip). Set-up: an airdrop, one quote (slippage ``slippage_bps``) and its
  swap-instructions; then each bundle differs from the last by its compute-unit price, so
  every signature is new, and is signed on the spot.

Closed loop (``rate`` None): every connection keeps ``depth`` requests outstanding. Open loop:
``rate`` requests/s spread over the connections, whether answers keep up or not.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import socket
import struct
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Literal, cast
from urllib.parse import urlsplit

import aiohttp
import msgspec
import orjson
import uvloop
from solders.address_lookup_table_account import AddressLookupTableAccount
from solders.compute_budget import set_compute_unit_price
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import MessageV0, to_bytes_versioned
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer

from galileo.sim.accounts import TIP_ACCOUNTS, decode_alt

__all__ = ["LoadPlan", "LoadResult", "run_load"]

SOL = "So11111111111111111111111111111111111111112"
QUOTE_PAIRS = (
    (SOL, "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"),
    ("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", SOL),
    (SOL, "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCE8BenwNYB"),
    (SOL, "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN"),
)
TIP_LAMPORTS = 10_000
_PRICE_MARK = 0x5A5A_5A5A_5A5A_5A01  # a compute-unit price no route uses: found and rewritten per bundle


class LoadPlan(msgspec.Struct, kw_only=True):
    """What one load process does."""

    url: str
    kind: Literal["quote", "bundle"]
    seconds: float
    warmup: float
    source_ips: list[str]
    connections: int = 8
    depth: int = 4
    rate: float | None = None  # requests/s over all connections; None = closed loop
    execution: bool = True  # the simulator's setting, for the set-up
    swap_lamports: int = 10_000_000
    slippage_bps: int = 300


class LoadResult(msgspec.Struct, kw_only=True):
    """What came back inside the measured window, and what it cost this process."""

    kind: Literal["quote", "bundle"]
    window_s: float
    sent: int
    answered: dict[str, int]  # HTTP status -> count
    cpu_s: float  # this process's CPU over the window
    late_s: float = 0.0  # open loop: how far behind its schedule the load fell by the end


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; requests pipelined, responses counted by status."""

    def __init__(self, on_response: Callable[[bytes], None]) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.outstanding = 0
        self.on_response = on_response
        self.wake = asyncio.Event()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        sock = transport.get_extra_info("socket")
        if sock is not None:  # a request must not wait for the ACK of the one before (Nagle)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.wake.set()

    def send(self, request: bytes) -> None:
        assert self.transport is not None
        self.outstanding += 1
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end])
            start = head.lower().find(b"\r\ncontent-length:")
            stop = head.find(b"\r\n", start + 2) if start >= 0 else -1
            length = int(head[start + 17 : stop if stop >= 0 else len(head)]) if start >= 0 else 0
            if len(buf) < end + 4 + length:
                return
            del buf[: end + 4 + length]
            self.outstanding -= 1
            self.on_response(head[9:12])
            self.wake.set()


class _Requests:
    """An endless supply of request bytes for one kind of load."""

    def __init__(self, host: str, make: Callable[[int], tuple[str, str, bytes]]) -> None:
        self.host = host
        self.make = make
        self.count = itertools.count()

    def next(self) -> bytes:
        method, path, body = self.make(next(self.count))
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(body)}\r\n"
        if body:
            head += "Content-Type: application/json\r\n"
        return head.encode() + b"\r\n" + body


def _quotes() -> Callable[[int], tuple[str, str, bytes]]:
    paths = [
        f"/jupiter/swap/v1/quote?inputMint={a}&outputMint={b}&amount={amount}&slippageBps=50"
        for a, b in QUOTE_PAIRS
        for amount in (10**8 + 7919 * i for i in range(16))
    ]
    return lambda i: ("GET", paths[i % len(paths)], b"")


def _ix(obj: dict[str, object]) -> Instruction:
    accounts = obj["accounts"]
    assert isinstance(accounts, list)
    metas = [AccountMeta(Pubkey.from_string(a["pubkey"]), a["isSigner"], a["isWritable"]) for a in accounts]
    return Instruction(Pubkey.from_string(str(obj["programId"])), base64.b64decode(str(obj["data"])), metas)


Make = Callable[[int], tuple[str, str, bytes]]
Refresh = Callable[[], Awaitable[None]]
_REFRESH_EVERY = 20.0  # seconds between blockhashes, well inside their 60 s


async def _bundles(session: aiohttp.ClientSession, plan: LoadPlan) -> tuple[Make, Refresh]:
    """Set up a funded wallet and one route; every call signs a new bundle running that route."""
    url, kp = plan.url, Keypair()

    async def rpc(method: str, params: list[object]) -> dict[str, object]:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        async with session.post(f"{url}/rpc", json=body) as resp:
            answer: dict[str, object] = await resp.json()
            if "result" not in answer:
                raise RuntimeError(f"{method}: {answer}")
            return answer

    if plan.execution:  # with execution off nothing runs, so nothing needs funds (and no airdrop)
        await rpc("requestAirdrop", [str(kp.pubkey()), 1000 * 10**9])
    query = {
        "inputMint": SOL,
        "outputMint": QUOTE_PAIRS[0][1],
        "amount": str(plan.swap_lamports),
        "slippageBps": str(plan.slippage_bps),
    }
    async with session.get(f"{url}/jupiter/swap/v1/quote", params=query) as resp:
        quote = await resp.json()
    body = {"quoteResponse": quote, "userPublicKey": str(kp.pubkey()), "dynamicComputeUnitLimit": True}
    async with session.post(f"{url}/jupiter/swap/v1/swap-instructions", json=body) as resp:
        si = await resp.json()
    tables = []
    answer = await rpc("getMultipleAccounts", [si["addressLookupTableAddresses"], {"encoding": "base64"}])
    result = answer["result"]
    assert isinstance(result, dict)
    for key, account in zip(si["addressLookupTableAddresses"], result["value"], strict=True):
        addresses = list(decode_alt(base64.b64decode(account["data"][0])).addresses)
        tables.append(AddressLookupTableAccount(Pubkey.from_string(key), addresses))
    ixs = [
        *(_ix(i) for i in si["computeBudgetInstructions"] if base64.b64decode(i["data"])[:1] == b"\x02"),
        set_compute_unit_price(_PRICE_MARK),
        *map(_ix, si["setupInstructions"]),
        _ix(si["swapInstruction"]),
        _ix(si["cleanupInstruction"]),
        transfer(
            TransferParams(
                from_pubkey=kp.pubkey(), to_pubkey=Pubkey.from_string(TIP_ACCOUNTS[0]), lamports=TIP_LAMPORTS
            )
        ),
    ]
    blockhash = bytes(si["blockhashWithMetadata"]["blockhash"])
    message = bytes(to_bytes_versioned(MessageV0.try_compile(kp.pubkey(), ixs, tables, Hash(blockhash))))
    mark, at = message.index(struct.pack("<Q", _PRICE_MARK)), message.index(blockhash)
    template = [message]

    def make(i: int) -> tuple[str, str, bytes]:
        msg = template[0][:mark] + struct.pack("<Q", 1 + i) + template[0][mark + 8 :]
        tx = b"\x01" + bytes(kp.sign_message(msg)) + msg
        body = b'{"jsonrpc":"2.0","id":1,"method":"sendBundle","params":[["%s"],{"encoding":"base64"}]}' % (
            base64.b64encode(tx)
        )
        return "POST", "/jito/ny/api/v1/bundles", body

    async def refresh() -> None:
        """A blockhash lives 150 slots (60 s): a long run signs with a fresh one now and then."""
        async with aiohttp.ClientSession() as fresh:
            body = {"jsonrpc": "2.0", "id": 1, "method": "getLatestBlockhash", "params": []}
            async with fresh.post(f"{url}/rpc", json=body) as resp:
                latest = bytes(Hash.from_string((await resp.json())["result"]["value"]["blockhash"]))
        template[0] = template[0][:at] + latest + template[0][at + 32 :]

    return make, refresh


class _Load:
    """A plan made ready (wallet funded, route fetched, connections open), waiting for go."""

    def __init__(
        self,
        plan: LoadPlan,
        requests: _Requests,
        conns: list[_Connection],
        answered: Counter[bytes],
        refresh: Refresh | None,
    ) -> None:
        self.plan, self.requests, self.conns, self.answered = plan, requests, conns, answered
        self.refresh = refresh
        self.counting = False

    @classmethod
    async def prepare(cls, plan: LoadPlan) -> _Load:
        parts = urlsplit(plan.url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        refresh: Refresh | None = None
        async with aiohttp.ClientSession() as session:
            if plan.kind == "quote":
                make = _quotes()
            else:
                make, refresh = await _bundles(session, plan)
        answered: Counter[bytes] = Counter()
        load: _Load | None = None

        def on_response(status: bytes) -> None:
            if load is not None and load.counting:
                answered[status] += 1

        loop = asyncio.get_running_loop()
        conns: list[_Connection] = []
        for i in range(plan.connections):
            ip = plan.source_ips[i % len(plan.source_ips)] if plan.source_ips else None
            _, conn = await loop.create_connection(
                lambda: _Connection(on_response), host, port, local_addr=(ip, 0) if ip else None
            )
            conns.append(conn)
        load = cls(plan, _Requests(f"{host}:{port}", make), conns, answered, refresh)
        return load

    async def run(self) -> LoadResult:
        """Go now: load for ``seconds``, count what came back after ``warmup``."""
        plan, requests = self.plan, self.requests
        t_start = time.monotonic()
        t_count, t_end = t_start + plan.warmup, t_start + plan.seconds
        sent = 0
        late = 0.0

        def send(conn: _Connection) -> None:
            nonlocal sent
            conn.send(requests.next())
            if self.counting:
                sent += 1

        async def closed(conn: _Connection) -> None:
            while time.monotonic() < t_end and not conn.closed:
                while conn.outstanding < plan.depth:
                    send(conn)
                conn.wake.clear()
                await conn.wake.wait()

        async def opened(conn: _Connection, every: float, offset: float) -> None:
            nonlocal late
            due = t_start + offset
            while due < t_end and not conn.closed:
                now = time.monotonic()
                if due > now:
                    await asyncio.sleep(due - now)
                late = max(late, time.monotonic() - due) if self.counting else late
                send(conn)
                due += every

        if plan.rate is None:
            lanes = [closed(c) for c in self.conns]
        else:
            every = len(self.conns) / plan.rate
            lanes = [opened(c, every, i / plan.rate) for i, c in enumerate(self.conns)]
        tasks = [asyncio.ensure_future(lane) for lane in lanes]
        if self.refresh is not None:
            tasks.append(asyncio.ensure_future(self._refreshing(self.refresh)))
        await asyncio.sleep(max(0.0, t_count - time.monotonic()))
        self.counting, cpu0, w0 = True, time.process_time(), time.monotonic()
        await asyncio.sleep(max(0.0, t_end - time.monotonic()))
        self.counting = False
        cpu, seconds = time.process_time() - cpu0, time.monotonic() - w0
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for conn in self.conns:
            if conn.transport is not None:
                conn.transport.close()
        return LoadResult(
            kind=plan.kind,
            window_s=round(seconds, 3),
            sent=sent,
            answered={k.decode(): v for k, v in self.answered.items()},
            cpu_s=round(cpu, 3),
            late_s=round(late, 3),
        )

    @staticmethod
    async def _refreshing(refresh: Refresh) -> None:
        while True:
            await asyncio.sleep(_REFRESH_EVERY)
            await refresh()


async def run_load(plan: LoadPlan) -> LoadResult:
    """Prepare ``plan`` and run it at once."""
    return await (await _Load.prepare(plan)).run()


def _line(data: object) -> None:
    sys.stdout.write(orjson.dumps(msgspec.to_builtins(data)).decode() + "\n")
    sys.stdout.flush()


async def _serve() -> None:
    """Plans in on stdin, one JSON line each: prepare, say ``{"ready": true}``, run on a ``go``
    line, answer the LoadResult. One process serves a whole benchmark (no start-up per round)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        plan = msgspec.json.decode(line, type=LoadPlan)
        try:
            load = await _Load.prepare(plan)
        except Exception as exc:  # told to the bench, which records it as the scenario's error
            _line({"ready": False, "error": repr(exc)})
            continue
        _line({"ready": True})
        if (await reader.readline()).strip() != b"go":
            return
        _line(await load.run())


def main() -> None:
    uvloop.run(_serve())


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
