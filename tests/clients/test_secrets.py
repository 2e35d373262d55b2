"""Secrets: a SecretRef's env value reaches the upstream as a header, and never any outcome or event."""

from __future__ import annotations

import msgspec
import pytest
from solders.keypair import Keypair

from broker.jobs import (
    DflowQuote,
    JitoTipAccounts,
    JobPayload,
    JupiterQuote,
    RpcLatestBlockhash,
    SecretRef,
    TitanConnect,
    TitanStop,
    TitanSubscribe,
    UltraOrder,
)
from broker.protocol import Dispatch, encode
from tests.clients.conftest import SOL, USDC, USER, SimFactory, Stub, Worker

KEYS = {
    "jupiter": "jup-key-5c1f",
    "dflow": "dflow-key-77aa",
    "ultra": "ultra-key-e01d",
    "jito": "jito-uuid-0b9e",
    "rpc": "rpc-key-41c3",
}
TITAN_TOKEN = "titan-jwt-9d2e"
ALL_SECRETS = [*KEYS.values(), TITAN_TOKEN]


@pytest.fixture(autouse=True)
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for service, key in KEYS.items():
        monkeypatch.setenv(f"GALILEO_TEST_{service.upper()}_KEY", key)
    monkeypatch.setenv("GALILEO_TEST_TITAN_TOKEN", TITAN_TOKEN)


def ref(service: str, header: str = "x-api-key") -> SecretRef:
    return SecretRef(header, f"GALILEO_TEST_{service.upper()}_KEY")


def assert_no_secret(blob: bytes) -> None:
    for secret in ALL_SECRETS:
        assert secret.encode() not in blob


async def test_keys_reach_each_upstream_and_never_come_back(sim_factory: SimFactory, worker: Worker) -> None:
    sim = await sim_factory(api_keys=KEYS, titan_tokens=[TITAN_TOKEN])
    jobs: dict[str, JobPayload] = {
        "jupiter": JupiterQuote(base_url=sim.url + "/jupiter/swap/v1", input_mint=SOL, output_mint=USDC, amount=10**9),
        "dflow": DflowQuote(base_url=sim.url + "/dflow", input_mint=SOL, output_mint=USDC, amount=10**9),
        "ultra": UltraOrder(base_url=sim.url + "/jupiter/ultra/v1", input_mint=SOL, output_mint=USDC, amount=10**9),
        "jito": JitoTipAccounts(base_url=sim.url + "/jito/ny"),
        "rpc": RpcLatestBlockhash(url=sim.url + "/rpc"),
    }
    headers = {"jito": "x-jito-auth"}
    for service, job in jobs.items():
        without = await worker.run(job)
        assert (without.outcome.result, without.outcome.status) == ("http_error", 401), service
        with_key = msgspec.structs.replace(job, secret=ref(service, headers.get(service, "x-api-key")))
        assert_no_secret(
            b"".join(encode(Dispatch(job_id=1, attempt=0, kind="k", upstream="u", timeout=1, payload=with_key)))
        )
        ran = await worker.run(with_key)
        assert ran.outcome.result == "ok", (service, ran.outcome)
        assert_no_secret(msgspec.msgpack.encode(ran.outcome))
    titan = TitanConnect(
        url=sim.url + "/titan/api/v1/ws",
        lease="t#1",
        secret=SecretRef("Authorization", "GALILEO_TEST_TITAN_TOKEN", "Bearer "),
    )
    held = worker.start(titan)
    await held.wait_for("open")
    stream = TitanSubscribe(lease="t#1", input_mint=SOL, output_mint=USDC, amount=10**9, user_public_key=USER)
    assert (await worker.run(stream)).outcome.result == "ok"
    await held.wait_for("quote")
    assert (await worker.run(TitanStop(lease="t#1"))).outcome.result == "ok"
    outcome = await held.task
    assert outcome.result == "ok"
    assert_no_secret(msgspec.msgpack.encode(outcome))
    for event in held.events:
        assert_no_secret(msgspec.msgpack.encode(event))


async def test_rpc_url_with_its_key_stays_on_the_worker(
    sim_factory: SimFactory, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = await sim_factory(api_keys={"rpc": KEYS["rpc"]})
    monkeypatch.setenv("GALILEO_TEST_RPC_URL", f"{sim.url}/rpc?api-key={KEYS['rpc']}")
    job = RpcLatestBlockhash(url_env="GALILEO_TEST_RPC_URL")
    wire = b"".join(encode(Dispatch(job_id=1, attempt=0, kind="k", upstream="u", timeout=1, payload=job)))
    assert b"GALILEO_TEST_RPC_URL" in wire and sim.url.encode() not in wire
    ran = await worker.run(job)
    assert ran.outcome.result == "ok", ran.outcome
    monkeypatch.delenv("GALILEO_TEST_RPC_URL")
    missing = (await worker.run(job)).outcome
    assert missing.result == "decode_error" and "GALILEO_TEST_RPC_URL" in missing.error


async def test_secrets_are_scrubbed_from_error_lines(
    stub: Stub, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-live-" + Keypair().pubkey().__str__()[:12]
    monkeypatch.setenv("GALILEO_TEST_RPC_URL", f"notaurl://rpc.example/?api-key={secret}")
    out = (await worker.run(RpcLatestBlockhash(url_env="GALILEO_TEST_RPC_URL"))).outcome
    assert out.result == "network_error" and secret not in out.error and "<redacted>" in out.error
    # a provider that quotes the key from the URL alone, in its error body
    monkeypatch.setenv("GALILEO_TEST_RPC_URL", f"{stub.url}/rpc?api-key={secret}")
    body = '{"jsonrpc":"2.0","error":{"code":-32401,"message":"invalid api key ' + secret + '"},"id":1}'
    stub.answer("/rpc", body, status=401)
    out = (await worker.run(RpcLatestBlockhash(url_env="GALILEO_TEST_RPC_URL"))).outcome
    assert stub.seen[-1].query == {"api-key": secret}
    assert out.status == 401 and secret not in out.error and "invalid api key <redacted>" in out.error
    # an upstream that echoes the key it was given in its error body
    stub.answer("/quote", '{"error":"invalid api key ' + KEYS["jupiter"] + '"}', status=401)
    out = (
        await worker.run(
            JupiterQuote(base_url=stub.url, input_mint=SOL, output_mint=USDC, amount=1, secret=ref("jupiter"))
        )
    ).outcome
    assert stub.seen[-1].headers["x-api-key"] == KEYS["jupiter"]
    assert out.status == 401 and KEYS["jupiter"] not in out.error and "invalid api key <redacted>" in out.error
