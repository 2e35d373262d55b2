"""A worker releases a secret only for the env vars it was given at start, and only to their upstreams.

Whoever sends the jobs is not trusted with that choice: the issue's worker registered with a
fake coordinator and sent it ``JUPITER_API_KEY``, HOME and PATH because the jobs named them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

import workers.clients  # noqa: F401  (registers the upstream handlers)
from broker.jobs import HttpRequest, JitoTipAccounts, JobPayload, JupiterQuote, RpcLatestBlockhash, SecretRef
from broker.protocol import Dispatch, Outcome
from broker.types import JobSpec
from galileo.farm.coordinator import Farm
from tests.farm.conftest import farm_config
from workers.executor import Executor
from workers.secrets import SecretPolicy, origin
from workers.session import BoundSession

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
KEY = "jup-key-for-the-policy-test"


@dataclass
class Upstream:
    url: str = ""
    seen: list[dict[str, str]] = field(default_factory=list)  # headers of every request


async def _serve() -> tuple[Upstream, web.AppRunner]:
    up = Upstream()

    async def handle(request: web.Request) -> web.Response:
        up.seen.append(dict(request.headers))
        return web.json_response({"error": "no route"}, status=400)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    up.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    return up, runner


@pytest.fixture
async def upstreams() -> AsyncIterator[tuple[Upstream, Upstream]]:
    """The configured upstream, and another host (a port of its own: another origin)."""
    (ours, r1), (theirs, r2) = await _serve(), await _serve()
    yield ours, theirs
    await r1.cleanup()
    await r2.cleanup()


class _Spy(dict[str, str]):
    """os.environ that remembers which names were read."""

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(env)
        self.read: list[str] = []

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        self.read.append(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.read.append(key)
        return super().__getitem__(key)


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Spy]:
    spy = _Spy({**os.environ, "GALILEO_POLICY_KEY": KEY, "GALILEO_POLICY_RPC": "http://127.0.0.1:9/rpc?api-key=x"})
    monkeypatch.setattr(os, "environ", spy)
    yield spy


async def run(payload: JobPayload, policy: SecretPolicy) -> Outcome:
    session = BoundSession("127.0.0.2")
    try:
        kind = str(type(payload).__struct_config__.tag)
        job = Dispatch(job_id=1, attempt=0, kind=kind, upstream="t", timeout=5.0, payload=payload)
        return await Executor(session, lambda e: None, policy).execute(job)
    finally:
        await session.close()


def quote(base_url: str, env: str) -> JupiterQuote:
    return JupiterQuote(
        base_url=base_url, input_mint=SOL, output_mint=USDC, amount=1, secret=SecretRef("x-api-key", env)
    )


async def test_only_listed_env_vars_to_their_hosts(upstreams: tuple[Upstream, Upstream], environ: _Spy) -> None:
    ours, theirs = upstreams
    policy = SecretPolicy(headers={"GALILEO_POLICY_KEY": [str(origin(ours.url))]})
    asks: list[JobPayload] = [
        quote(ours.url, "HOME"),  # another env var, to the right host
        HttpRequest(url=ours.url + "/x", secret=SecretRef("authorization", "PATH")),
        quote(theirs.url, "GALILEO_POLICY_KEY"),  # the right env var, to another host
        HttpRequest(url=theirs.url + "/x", secret=SecretRef("x-api-key", "GALILEO_POLICY_KEY")),
        JitoTipAccounts(base_url=theirs.url, secret=SecretRef("x-jito-auth", "GALILEO_POLICY_KEY")),
        quote(ours.url.replace("http://", "ws://"), "GALILEO_POLICY_KEY"),  # same host, another scheme
        RpcLatestBlockhash(url_env="GALILEO_POLICY_RPC"),  # an RPC URL env var nobody listed
    ]
    for payload in asks:
        out = await run(payload, policy)
        assert out.result == "decode_error" and out.error.startswith("refused:"), (payload, out)
    assert environ.read == [] and ours.seen == [] and theirs.seen == []
    refused = (await run(quote(theirs.url, "GALILEO_POLICY_KEY"), policy)).error
    assert "GALILEO_POLICY_KEY is sent only to" in refused and str(origin(theirs.url)) in refused
    assert "HOME is not a secret this worker was given" in (await run(quote(ours.url, "HOME"), policy)).error

    out = await run(quote(ours.url, "GALILEO_POLICY_KEY"), policy)
    assert out.result == "http_error" and out.status == 400  # it went, with its key
    assert [h.get("x-api-key") for h in ours.seen] == [KEY] and theirs.seen == []


async def test_a_worker_given_nothing_releases_nothing(upstreams: tuple[Upstream, Upstream], environ: _Spy) -> None:
    ours, _ = upstreams
    out = await run(quote(ours.url, "GALILEO_POLICY_KEY"), SecretPolicy())
    assert out.result == "decode_error" and environ.read == [] and ours.seen == []
    plain = await run(HttpRequest(url=ours.url + "/x"), SecretPolicy())  # no secret named: runs as before
    assert plain.status == 400 and len(ours.seen) == 1


def test_origins_are_scheme_host_and_port() -> None:
    assert origin("https://API.jup.ag/swap/v1") == "https://api.jup.ag:443"
    assert origin("https://api.jup.ag:443/x") == origin("https://api.jup.ag")
    assert origin("http://api.jup.ag/swap/v1") == "http://api.jup.ag:80"
    assert origin("wss://[::1]:8900/ws") == "wss://[::1]:8900"
    assert origin("https://user:pw@api.jup.ag/") == "https://api.jup.ag:443"
    for bad in ("file:///etc/passwd", "api.jup.ag/swap", "https://", "https://h:99999/"):
        assert origin(bad) is None


async def test_local_workers_get_the_configs_secrets_at_fork(
    tmp_path: Path, upstreams: tuple[Upstream, Upstream], monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, theirs = upstreams
    monkeypatch.setenv("GALILEO_POLICY_KEY", KEY)
    monkeypatch.setenv("GALILEO_POLICY_OTHER", "not-for-anyone")
    rt = tmp_path / "rt"
    cfg = farm_config(
        ["127.0.0.122"], rt, f"upstreams: {{jupiter: {{base_url: '{ours.url}', api_key_env: GALILEO_POLICY_KEY}}}}\n"
    )
    async with Farm(cfg, runtime_dir=rt, log_level="critical") as farm:
        assert await farm.wait_ready(timeout=15)

        async def send(payload: JobPayload) -> str:
            return (await farm.submit(JobSpec(payload, upstream="t"))).result

        assert await send(quote(ours.url, "GALILEO_POLICY_KEY")) == "http_error"
        assert [h.get("x-api-key") for h in ours.seen] == [KEY]
        assert await send(quote(ours.url, "GALILEO_POLICY_OTHER")) == "decode_error"
        assert await send(quote(theirs.url, "GALILEO_POLICY_KEY")) == "decode_error"
        assert await send(HttpRequest(url=theirs.url, secret=SecretRef("x", "GALILEO_POLICY_KEY"))) == "decode_error"
        assert len(ours.seen) == 1 and theirs.seen == []
