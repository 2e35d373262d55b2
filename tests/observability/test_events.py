"""The network event log: fields on every attempt, INFO for failures, 429 storms folded."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable
from typing import Any

import pytest

from broker.jobs import HttpRequest
from broker.logs import KeyValueFormatter, register_secret
from broker.protocol import Outcome
from broker.types import Job, JobSpec, WorkerInfo
from galileo.farm.coordinator import Farm
from galileo.farm.events import NetworkEventLog
from tests.conftest import fake_worker
from tests.farm.conftest import Recorder, loopback

Make = Callable[..., Any]
FIELDS = ("local_ip", "ip_task_kind", "upstream", "result", "status", "latency_ms", "error")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def worker(ip: str) -> WorkerInfo:
    return fake_worker(ip, 8)


def job(n: int, upstream: str = "jupiter", task: str = "quote_buy") -> Job:
    spec = JobSpec(HttpRequest(url="http://upstream.invalid/quote"), upstream=upstream, task=task)
    fut = asyncio.get_running_loop().create_future()
    return Job(id=n, spec=spec, kind="http", deadline=10.0, submitted=0.0, future=fut)


def net_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "galileo.net"]


async def test_each_attempt_carries_its_fields(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="galileo.net")
    events = NetworkEventLog(clock=FakeClock())
    events.on_attempt(job(1), worker("127.0.0.2"), Outcome(result="ok", status=200, latency=0.0123))
    events.on_attempt(job(2, "dflow", "quote_sell"), worker("127.0.0.3"), Outcome(result="timeout", error="timed out"))
    ok, timeout = net_records(caplog)
    assert ok.levelno == logging.DEBUG and timeout.levelno == logging.INFO
    got = {f: getattr(ok, f) for f in FIELDS}
    assert got == {
        "local_ip": "127.0.0.2",
        "ip_task_kind": "quote_buy",
        "upstream": "jupiter",
        "result": "ok",
        "status": 200,
        "latency_ms": 12.3,
        "error": "",
    }
    assert (timeout.local_ip, timeout.ip_task_kind, timeout.upstream, timeout.error) == (  # type: ignore[attr-defined]
        "127.0.0.3",
        "quote_sell",
        "dflow",
        "timed out",
    )


async def test_info_only_shows_failures(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="galileo.net")
    events = NetworkEventLog(clock=FakeClock())
    for n in range(5):
        events.on_attempt(job(n), worker("127.0.0.2"), Outcome(result="ok", status=200))
    events.on_attempt(job(9), worker("127.0.0.2"), Outcome(result="network_error", error="cannot connect"))
    assert [r.result for r in net_records(caplog)] == ["network_error"]  # type: ignore[attr-defined]


async def test_a_429_storm_is_one_info_line_per_ip_and_upstream_per_second(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="galileo.net")
    clock = FakeClock()
    events = NetworkEventLog(clock=clock)
    limited = Outcome(result="rate_limited", status=429, retry_after=1.0, error="HTTP 429")

    def storm(n: int, ip: str, upstream: str = "jupiter") -> None:
        for i in range(n):
            events.on_attempt(job(i, upstream), worker(ip), limited)

    storm(200, "127.0.0.2")
    storm(50, "127.0.0.3")  # another IP: its own line
    storm(50, "127.0.0.2", "dflow")  # another upstream on the same IP: its own line
    clock.now += 0.5
    storm(100, "127.0.0.2")
    info = [r for r in net_records(caplog) if r.levelno == logging.INFO]
    assert [(r.local_ip, r.upstream) for r in info] == [  # type: ignore[attr-defined]
        ("127.0.0.2", "jupiter"),
        ("127.0.0.3", "jupiter"),
        ("127.0.0.2", "dflow"),
    ]
    assert len(net_records(caplog)) == 400  # every attempt still has its DEBUG line
    caplog.clear()
    clock.now += 0.5  # one second after the first line
    storm(3, "127.0.0.2")
    first, *rest = net_records(caplog)
    assert first.levelno == logging.INFO and first.suppressed == 299  # type: ignore[attr-defined]
    assert [r.levelno for r in rest] == [logging.DEBUG, logging.DEBUG]


async def test_key_value_line_has_the_fields_and_no_secret() -> None:
    secret = "sk-live-0123456789abcdef"
    register_secret(secret)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(KeyValueFormatter())
    logger = logging.getLogger("galileo.net.test-kv")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        events = NetworkEventLog(logger, clock=FakeClock())
        bad = Outcome(result="http_error", status=401, latency=0.002, error=f"HTTP 401: bad key {secret}")
        events.on_attempt(job(7, "ultra", "quote_buy"), worker("127.0.0.9"), bad)
    finally:
        logger.removeHandler(handler)
    line = stream.getvalue()
    assert "level=info" in line and 'msg="attempt http_error"' in line
    for part in ("local_ip=127.0.0.9", "ip_task_kind=quote_buy", "upstream=ultra", "result=http_error"):
        assert part in line
    assert "status=401" in line and "latency_ms=2.0" in line and "job_id=7" in line
    assert secret not in line and "***" in line


async def test_real_farm_attempts_are_logged_with_their_source_ip(
    make_farm: Make, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="galileo.net")
    ips = loopback(2, start=80)
    farm: Farm = await make_farm(ips)  # every farm logs its network events; no extra logger attached
    recorder.limited[(ips[1], "/land")] = 5
    outs = await asyncio.gather(
        *(
            farm.submit(JobSpec(HttpRequest(url=f"{recorder.url}/q"), upstream="jupiter", task="quote_buy"))
            for _ in range(20)
        )
    )
    spec = JobSpec(HttpRequest(url=f"{recorder.url}/land"), upstream="jito:ny", task="lander", require_ip=ips[1])
    limited = await farm.run(spec)
    assert limited.result == "rate_limited"
    records = net_records(caplog)
    assert len(records) == 21
    assert sorted(r.local_ip for r in records[:20]) == sorted(str(o.ip) for o in outs)  # type: ignore[attr-defined]
    last = records[-1]
    assert last.levelno == logging.INFO
    assert {f: getattr(last, f) for f in FIELDS if f not in ("latency_ms", "error")} == {
        "local_ip": ips[1],
        "ip_task_kind": "lander",
        "upstream": "jito:ny",
        "result": "rate_limited",
        "status": 429,
    }
    assert last.error.startswith("HTTP 429")  # type: ignore[attr-defined]
    assert last.latency_ms > 0  # type: ignore[attr-defined]
