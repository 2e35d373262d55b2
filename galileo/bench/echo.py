"""A zero-latency HTTP endpoint for benchmarks: ``python -m galileo.bench.echo`` prints its port.

It answers every GET with a small fixed JSON body and nothing else, so what a benchmark
measures is the client side.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from aiohttp import web

BODY = b'{"inAmount":"1000000","outAmount":"5206073","contextSlot":376435416}'


async def _main(host: str) -> None:
    async def handle(_: web.Request) -> web.Response:
        return web.Response(body=BODY, content_type="application/json")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, 0, backlog=4096)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    import uvloop

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(_main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"))
