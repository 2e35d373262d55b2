"""The client a user might write instead of galileo, for ``galileo bench pipeline`` to compare against.

One asyncio process; one aiohttp session bound to each IP; a token bucket per IP at the rate
it was told (one token: the smoothest pacing, the kindest to any limiter); 16 tasks per IP,
each sending the blind strategy's quotes: a buy quote, then on the same IP the sell quote of
its output. A 429 pauses that IP for its ``Retry-After`` (1 s without one). Run it as::

    python -m galileo.bench.pipeline_baseline --url URL --ips 127.44.1.1,127.44.1.2 --rate 20 \\
        --seconds 60 [--api-key KEY] [--pair INPUT:OUTPUT:AMOUNT ...]

It sends until ``--seconds`` pass (or SIGTERM), then prints one JSON object: the answers it got.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time
from collections import Counter

import aiohttp

__all__ = ["main"]

TASKS_PER_IP = 16


class TokenBucket:
    """``rate`` tokens a second, at most one held: a send every 1/rate seconds at best."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next = time.monotonic()
        self.paused_until = 0.0

    async def take(self) -> None:
        while True:
            now = time.monotonic()
            at = max(self.next, self.paused_until)
            if now >= at:
                self.next = max(self.next, now) + self.interval  # a late send is not made up for: no bursts
                return
            await asyncio.sleep(at - now)

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)


async def _quote(
    session: aiohttp.ClientSession, url: str, pair: tuple[str, str, int], headers: dict[str, str], got: Counter[str]
) -> tuple[int, float | None, int]:
    params = {"inputMint": pair[0], "outputMint": pair[1], "amount": str(pair[2]), "slippageBps": "50"}
    try:
        async with session.get(f"{url}/quote", params=params, headers=headers) as resp:
            body = await resp.read()
            status = resp.status
            retry = resp.headers.get("Retry-After")
    except (aiohttp.ClientError, TimeoutError):
        got["error"] += 1
        return 0, None, 0
    got["ok" if status == 200 else "limited" if status == 429 else "other"] += 1
    out = 0
    if status == 200:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            out = int(json.loads(body)["outAmount"])
    return status, float(retry) if retry and retry.isdigit() else None, out


async def _lane(
    session: aiohttp.ClientSession,
    bucket: TokenBucket,
    url: str,
    pairs: list[tuple[str, str, int]],
    start: int,
    headers: dict[str, str],
    got: Counter[str],
) -> None:
    i = start
    while True:
        buy = pairs[i % len(pairs)]
        i += 1
        await bucket.take()
        status, retry, out = await _quote(session, url, buy, headers, got)
        if status == 429:
            bucket.pause(retry or 1.0)
        if status != 200 or out <= 0:
            continue
        await bucket.take()
        status, retry, _ = await _quote(session, url, (buy[1], buy[0], out), headers, got)
        if status == 429:
            bucket.pause(retry or 1.0)


async def run(
    url: str, ips: list[str], rate: float, seconds: float, api_key: str | None, pairs: list[str]
) -> Counter[str]:
    got: Counter[str] = Counter()
    plan = [(a, b, int(n)) for a, b, n in (p.split(":") for p in pairs)]
    headers = {"x-api-key": api_key} if api_key else {}
    sessions = [
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=(ip, 0), limit=0), timeout=aiohttp.ClientTimeout(total=10)
        )
        for ip in ips
    ]
    tasks = [
        asyncio.create_task(_lane(s, bucket, url, plan, k, headers, got))
        for s in sessions
        for bucket in [TokenBucket(rate)]
        for k in range(TASKS_PER_IP)
    ]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for s in sessions:
        await s.close()
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="the Jupiter base URL, e.g. http://127.0.0.1:7900/jupiter/swap/v1")
    ap.add_argument("--ips", required=True, help="comma-separated source addresses")
    ap.add_argument("--rate", type=float, required=True, help="requests/s per IP")
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--pair", action="append", default=[], help="INPUT_MINT:OUTPUT_MINT:AMOUNT (repeatable)")
    a = ap.parse_args()
    got = asyncio.run(run(a.url, a.ips.split(","), a.rate, a.seconds, a.api_key, a.pair))
    print(json.dumps(dict(got)), flush=True)


if __name__ == "__main__":
    main()
