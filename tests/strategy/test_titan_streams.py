"""Titan's connections and streams, multiplexed and scheduled, on an injected (virtual) clock.

A :class:`~tests.strategy.faketitan.FakeTitan` plays the farm and Titan's real limits (one
connection per token, ``concurrentStreams`` per connection); :class:`TitanStreams` is the real
coordinator side. Virtual time: a minute of streaming takes milliseconds, the same every run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from galileo.config import parse_config
from galileo.strategy.titan import TitanStreams
from galileo.strategy.titan_plan import BoardRules
from galileo.upstreams import QuoteRequest, Upstreams
from tests.strategy.faketitan import FakeTitan
from tests.virtualtime import run_virtual

SOL = "So11111111111111111111111111111111111111112"
USDC = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"
USER = "Cm7vjoV12JuVqCduW6rkGGcgN77NPkzqZr66pkVTzb5b"
IPS = [f"10.0.0.{i}" for i in range(1, 9)]
T = TypeVar("T")


def wants(n: int) -> list[QuoteRequest]:
    return [QuoteRequest(SOL, USDC, (i + 1) * 10**8) for i in range(n)]


def key(req: QuoteRequest) -> tuple[str, str, int]:
    return (req.input_mint, req.output_mint, req.amount)


def streams(
    fake: FakeTitan, tokens: str = "[TITAN_A]", rules: BoardRules | None = None, **titan: object
) -> TitanStreams:
    settings = {"interval_ms": 1000, **titan}
    extra = "".join(f", {k}: {v}" for k, v in settings.items())
    cfg = parse_config(f"upstreams: {{titan: {{ws_url: 'ws://titan', token_envs: {tokens}{extra}}}}}")
    return TitanStreams(fake, Upstreams(cfg), USER, cfg.upstreams.titan, rules=rules)


def virtual(test: Callable[[], Awaitable[T]]) -> T:
    return run_virtual(test())  # type: ignore[arg-type]


async def steady(titan: TitanStreams, reqs: list[QuoteRequest], seconds: float = 3.0) -> None:
    titan.start(reqs)
    await asyncio.sleep(seconds)


def test_one_token_is_one_connection_on_one_ip_with_its_streams_multiplexed() -> None:
    async def main() -> None:
        fake = FakeTitan(IPS, limit=4)
        titan = streams(fake)
        reqs = wants(6)
        await steady(titan, reqs)
        ((token, ip),) = fake.connections()
        assert token == "TITAN_A" and ip in IPS
        assert fake.streamed() == {key(r): 1 for r in reqs[:4]}  # the first four, in the config's order
        assert titan.streams_by_ip() == {ip: 4}
        got = await titan.quote_for(reqs[0], 2.0)
        assert got is not None and got[1] == ip and got[0].in_amount == reqs[0].amount
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        assert await titan.quote_for(reqs[5], 2.0) is None
        assert loop.time() == t0  # no stream, no waiting
        assert all(age <= 1.0 for age in titan.quote_ages().values()) and len(titan.quote_ages()) == 4
        await titan.stop()
        assert fake.connections() == []

    virtual(main)


def test_two_tokens_are_two_connections_on_two_ips() -> None:
    async def main() -> None:
        fake = FakeTitan(IPS, limit=4)
        titan = streams(fake, "[TITAN_A, TITAN_B]")
        reqs = wants(8)
        await steady(titan, reqs)
        conns = fake.connections()
        assert sorted(t for t, _ in conns) == ["TITAN_A", "TITAN_B"]
        assert len({ip for _, ip in conns}) == 2
        assert fake.streamed() == {key(r): 1 for r in reqs}  # eight streams, four on each
        assert sorted(titan.streams_by_ip().values()) == [4, 4]
        await titan.stop()

    virtual(main)


def test_a_killed_connection_resumes_on_another_ip_without_duplicates() -> None:
    async def main() -> None:
        fake = FakeTitan(IPS, limit=4, interval=0.5)
        titan = streams(fake, interval_ms=500)
        reqs = wants(4)
        await steady(titan, reqs)
        ((_, victim),) = fake.connections()
        loop = asyncio.get_running_loop()
        killed = loop.time()
        fake.kill(victim)
        worst = 0
        while True:
            worst = max(worst, *fake.streamed().values(), 0)
            ages = titan.quote_ages()
            back = [k for k, slot in titan.slots.items() if slot.ip not in (None, victim) and ages.get(k, 9) < 0.5]
            if len(back) == 4:
                break
            assert loop.time() - killed < 3.0, "quotes did not resume within 3 s"
            await asyncio.sleep(0.01)
        resumed = loop.time() - killed
        ((_, ip),) = fake.connections()
        assert ip != victim and worst == 1 and fake.streamed() == {key(r): 1 for r in reqs}
        assert resumed < 0.5  # 0.25 s of backoff, then a handful of 5 ms round trips
        assert titan.disconnects[("TITAN_A", "worker_lost")] == 1
        # The worker comes back: the connection stays where it is now (no churn).
        fake.revive(victim)
        await asyncio.sleep(5)
        assert fake.connections() == [("TITAN_A", ip)] and len(fake.connects) == 2
        await titan.stop()

    virtual(main)


def test_a_refused_token_retries_with_growing_backoff() -> None:
    async def main() -> None:
        fake = FakeTitan(IPS, per_token=0)  # every connection refused: token in use elsewhere
        titan = streams(fake)
        await steady(titan, wants(2), seconds=10.0)
        refusals = titan.refusals[("TITAN_A", "token_in_use")]
        assert 6 <= refusals <= 7  # at 0, 0.25, 0.75, 1.75, 3.75, 7.75 s (+ round trips), not 400 times
        fake.per_token = 1
        await asyncio.sleep(20)  # backoff is capped; the next try gets in
        assert len(fake.connections()) == 1 and titan.refusals[("TITAN_A", "token_in_use")] == refusals
        await titan.stop()

    virtual(main)


def test_renewal_in_place_keeps_quotes_fresh_with_no_duplicate() -> None:
    async def main() -> None:
        fake = FakeTitan(IPS, limit=4, interval=1.0)
        titan = streams(fake, stream_seconds=5)
        reqs = wants(4)
        titan.start(reqs)
        await asyncio.sleep(2)
        worst_age, most = 0.0, 0
        for _ in range(600):  # 30 s, sampled every 50 ms
            await asyncio.sleep(0.05)
            ages = titan.quote_ages()
            assert len(ages) >= 3  # at most one stream at a time is between its old and new id
            for k, slot in titan.slots.items():
                age = asyncio.get_running_loop().time() - slot.updated
                worst_age = max(worst_age, age)
                assert slot.latest is not None, k
            most = max(most, *fake.streamed().values())
            assert sum(fake.streamed().values()) <= 4
        assert worst_age < 2 * 1.0  # never older than two intervals
        assert most == 1
        assert all(slot.opened >= 5 for slot in titan.slots.values())  # renewed every ~5 s
        assert fake.refused == {}
        await titan.stop()

    virtual(main)


def test_stream_end_from_the_server_frees_and_resubscribes() -> None:
    async def main() -> None:
        fake = FakeTitan(IPS, limit=4)
        titan = streams(fake)
        reqs = wants(2)
        await steady(titan, reqs)
        first, second = key(reqs[0]), key(reqs[1])
        fake.end_stream(first)  # ended by the server after updates: resubscribed at once
        await asyncio.sleep(0.1)
        assert fake.streamed()[first] == 1 and titan.slots[first].opened == 2
        fake.end_stream(second, error_code=503)  # failed: waits 1 s, then again
        await asyncio.sleep(0.5)
        assert fake.streamed()[second] == 0
        await asyncio.sleep(1.0)
        assert fake.streamed()[second] == 1
        assert titan.refusals[("TITAN_A", "stream_error")] == 1
        await titan.stop()

    virtual(main)


def test_a_silent_stream_is_resubscribed_after_idle_resubscribe_ms() -> None:
    async def main() -> None:
        fake = FakeTitan(IPS, limit=4)
        titan = streams(fake, idle_resubscribe_ms=3000)
        reqs = wants(1)
        await steady(titan, reqs)
        slot = titan.slots[key(reqs[0])]
        fake.silence(key(reqs[0]))
        last = slot.updated
        await asyncio.sleep(last + 2.9 - asyncio.get_running_loop().time())
        assert slot.opened == 1  # silent for 2.9 s: still waiting
        await asyncio.sleep(0.5)
        assert slot.opened == 2 and fake.streamed() == {key(reqs[0]): 1}  # silent for 3 s: resubscribed
        got = await titan.quote_for(reqs[0], 0.1)
        assert got is not None
        await titan.stop()

    virtual(main)


def test_at_the_server_limit_the_least_useful_stream_is_stopped_not_the_newest_refused() -> None:
    async def main() -> None:
        # GetInfo says 4, the server holds us to 3.
        fake = FakeTitan(IPS, limit=3, advertised=4)
        titan = streams(fake)
        reqs = wants(4)
        await steady(titan, reqs, seconds=1.0)
        k1, k2, k3, k4 = (key(r) for r in reqs)
        assert fake.streamed() == {k1: 1, k2: 1, k3: 1}  # k4 came last and was refused
        assert titan.refusals[("TITAN_A", "stream_limit")] == 1
        # The engine finds k4 a little more useful than k3 (less than the hysteresis) ...
        for _ in range(5):
            for k, margin in ((k1, 0.0), (k2, -1.0), (k3, -3.0), (k4, -2.0)):
                titan.observe(QuoteRequest(*k), margin)
            await asyncio.sleep(5)
        assert fake.streamed() == {k1: 1, k2: 1, k3: 1}  # ... which alone does not move a stream.
        # Once the remembered limit lapses, k4 is tried again and refused again: now rank decides.
        for _ in range(10):
            for k, margin in ((k1, 0.0), (k2, -1.0), (k3, -3.0), (k4, -2.0)):
                titan.observe(QuoteRequest(*k), margin)
            await asyncio.sleep(5)
        assert fake.streamed() == {k1: 1, k2: 1, k4: 1}
        assert titan.refusals[("TITAN_A", "stream_limit")] == 2
        await titan.stop()

    virtual(main)


def test_a_clearly_better_key_takes_the_stream_of_the_worst_after_min_hold() -> None:
    async def main() -> None:
        fake = FakeTitan(IPS, limit=2)
        titan = streams(fake, rules=BoardRules(min_hold=10.0, hysteresis_bps=5.0))
        reqs = wants(3)
        k1, k2, k3 = (key(r) for r in reqs)
        await steady(titan, reqs, seconds=1.0)  # k1 and k2 stream (the config's order), since ~0 s
        assert fake.streamed() == {k1: 1, k2: 1}
        loop = asyncio.get_running_loop()
        moved_at = None
        for _ in range(300):  # 15 s more: k3 is asked, and clearly better
            for k, margin in ((k1, -20.0), (k2, -40.0), (k3, 0.0)):
                await titan.quote_for(QuoteRequest(*k), 0.0)
                titan.observe(QuoteRequest(*k), margin)
            await asyncio.sleep(0.05)
            if fake.streamed()[k3] and moved_at is None:
                moved_at = loop.time()
        assert fake.streamed() == {k1: 1, k3: 1}  # k2, the least useful, gave its stream up
        assert moved_at is not None and 10.0 <= moved_at < 11.0  # after its 10 s hold, not before
        await titan.stop()

    virtual(main)


def test_report_names_tokens_by_env_var_and_ages_quotes() -> None:
    async def main() -> None:
        fake = FakeTitan(IPS, limit=4)
        titan = streams(fake)
        reqs = wants(2)
        await steady(titan, reqs)
        report = titan.report()
        ((conn),) = report.connections
        assert conn.token == "TITAN_A" and conn.open and conn.streams == 2 and conn.limit == 4
        assert set(report.quote_age) == {("SOL->USDC", str(r.amount)) for r in reqs}
        assert all(0 <= age <= 1.0 for age in report.quote_age.values())
        assert report.refusals.get(("TITAN_A", "token_in_use"), 0) == 0
        await titan.stop()

    virtual(main)


def test_a_connection_lost_mid_subscribe_resubscribes_each_key_once() -> None:
    async def main() -> None:
        fake = FakeTitan(IPS, limit=4, rtt=0.01, subscribe_rtt=1.0)  # a slow server: subscribes take 1 s
        titan = streams(fake)
        reqs = wants(4)
        titan.start(reqs)
        await asyncio.sleep(0.1)  # connected at 0.01 s, four subscribes out until 1.01 s
        assert all(slot.busy for slot in titan.slots.values()) and not fake.streamed()
        ((_, victim),) = fake.connections()
        fake.kill(victim)  # back at ~0.36 s on another IP, its subscribes out until ~1.37 s
        await asyncio.sleep(1.0)  # the lost subscribes have ended (1.01 s); the new ones are still out
        got = await titan.quote_for(reqs[0], 2.0)  # waits for the new stream's first quote
        assert got is not None and got[1] != victim
        most = 0
        for _ in range(40):
            await asyncio.sleep(0.05)
            most = max(most, *fake.streamed().values(), 0)
        assert most == 1 and fake.streamed() == {key(r): 1 for r in reqs}
        assert not any(slot.busy for slot in titan.slots.values())
        assert all(slot.opened == 1 for slot in titan.slots.values())  # the lost subscribes never counted
        await titan.stop()

    virtual(main)


def test_a_size_without_a_stream_serves_its_last_quote_briefly_and_never_waits() -> None:
    async def main() -> None:
        fake = FakeTitan(IPS, limit=4, interval=1.0)
        titan = streams(fake, titan_debounce_ms=0)
        reqs = wants(1)
        await steady(titan, reqs, seconds=2.2)  # quotes at ~0.0, 1.0, 2.0 s
        ((_, ip),) = fake.connections()
        fake.kill(ip)
        fake.per_token = 0  # and it cannot come back: refused
        loop = asyncio.get_running_loop()
        got = await titan.quote_for(reqs[0], 2.0)
        assert got is not None  # 0.2 s old: still within two intervals
        await asyncio.sleep(2.0)
        t0 = loop.time()
        assert await titan.quote_for(reqs[0], 2.0) is None  # 2.2 s old, nothing coming
        assert loop.time() == t0  # and not waited for
        await titan.stop()

    virtual(main)
