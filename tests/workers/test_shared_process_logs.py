"""A process serving several IPs names, in each log record, the worker the record comes from."""

from __future__ import annotations

import asyncio
import logging

import pytest

from workers.main import WorkerArgs, _LocalIpFilter, _serving, check_group


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_a_jobs_records_name_its_workers_address_and_the_process_records_name_all() -> None:
    log = logging.getLogger("tests.shared_process")
    keep = _Keep()
    keep.addFilter(_LocalIpFilter("127.0.0.2,127.0.0.3", "local/127.0.0.2,local/127.0.0.3"))
    log.addHandler(keep)
    log.setLevel(logging.INFO)
    try:

        async def job(n: int) -> None:
            await asyncio.sleep(0)
            log.info("job %d done", n)

        async def worker(ip: str, jobs: list[int]) -> None:  # as serve_group's _serve_one runs each worker
            _serving.set((ip, f"local/{ip}"))
            await asyncio.gather(*(asyncio.get_running_loop().create_task(job(n)) for n in jobs))

        await asyncio.gather(worker("127.0.0.2", [1, 2]), worker("127.0.0.3", [3]))
        log.info("process exiting")
        log.info("told", extra={"local_ip": "10.0.0.9"})
    finally:
        log.removeHandler(keep)
    seen = {r.getMessage(): (r.local_ip, r.worker_id) for r in keep.records}  # type: ignore[attr-defined]
    assert seen == {
        "job 1 done": ("127.0.0.2", "local/127.0.0.2"),
        "job 2 done": ("127.0.0.2", "local/127.0.0.2"),
        "job 3 done": ("127.0.0.3", "local/127.0.0.3"),
        "process exiting": ("127.0.0.2,127.0.0.3", "local/127.0.0.2,local/127.0.0.3"),
        "told": ("10.0.0.9", "local/127.0.0.2,local/127.0.0.3"),
    }


def _args(wid: str, ip: str, **kw: object) -> WorkerArgs:
    return WorkerArgs(worker_id=wid, ip=ip, bind=True, endpoint="ipc:///x", **kw)  # type: ignore[arg-type]


def test_workers_sharing_a_process_must_share_its_coordinator_and_not_their_address() -> None:
    check_group([_args("a", "127.0.0.2"), _args("b", "127.0.0.3")])
    with pytest.raises(ValueError, match="at least one"):
        check_group([])
    with pytest.raises(ValueError, match="their own ip"):
        check_group([_args("a", "127.0.0.2"), _args("b", "127.0.0.2")])
    with pytest.raises(ValueError, match="their own worker_id"):
        check_group([_args("a", "127.0.0.2"), _args("a", "127.0.0.3")])
    with pytest.raises(ValueError, match="differ in coordinator_pid"):
        check_group([_args("a", "127.0.0.2", coordinator_pid=1), _args("b", "127.0.0.3", coordinator_pid=2)])
