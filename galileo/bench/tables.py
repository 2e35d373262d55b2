"""The report as tables of strings: one per scenario, then the targets. The CLI draws them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["TableData", "machine_line", "tables"]


@dataclass(frozen=True)
class TableData:
    """A titled table of already-formatted cells."""

    title: str
    columns: tuple[str, ...]
    rows: Sequence[tuple[str, ...]]
    note: str = ""  # printed under the table


def _num(value: Any, fmt: str = ".3f") -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return format(value, fmt)


def _pct(value: Any, fmt: str = ".2f") -> str:
    return f"{_num(value * 100, fmt)} %" if isinstance(value, int | float) else "-"


def machine_line(report: dict[str, Any]) -> str:
    m = report["machine"]
    load = "/".join(_num(x, ".2f") for x in m.get("loadavg_start", []))
    return (
        f"{m['cpu_model']} × {m['cpu_count']} CPUs, {m['memory_gb']} GB, Linux {m['kernel']}, "
        f"Python {m['python']}, {m['date']}, load {load} at start"
    )


def _ratelimit(r: dict[str, Any]) -> TableData:
    runs = r["runs"]
    policies = [p for p in ("learned", "told", "original") if p in runs]
    short = {"learned": "learned", "told": "told", "original": "orig."}
    columns: tuple[str, ...] = ("IPs", "N·R/s")
    for p in policies:
        columns += (f"{short[p]} ok", f"{short[p]} 429")
    columns += ("sim=farm",)
    rows = []
    for n in r["ips"]:
        row: tuple[str, ...] = (str(n), _num(n * r["rate_per_ip"], ".0f"))
        agree = True
        for p in policies:
            run = runs[p].get(str(n), {})
            row += (_num(run.get("ok_ratio")), _pct(run.get("share_429")))
            agree = agree and bool(run.get("agree"))
        rows.append((*row, "yes" if agree else "NO"))
    title = (
        f"ratelimit: R = {r['rate_per_ip']:g}/s per IP, {r['seconds']:g} s per run, counted after {r['warmup_s']:g} s"
    )
    note = (
        "ok = successes/s ÷ N·R; 429 = share of answers that were 429 (the simulator's counts); "
        "learned = FarmPolicy learning R, told = FarmPolicy told R, orig. = the original bot's allocator "
        "(round robin, 2 in flight per IP, flat 500/250 ms cooldowns cleared by success, "
        "waiters sleep through cooldowns)"
    )
    return TableData(title, columns, rows, note)


def _farm(scenarios: dict[str, Any]) -> TableData | None:
    rows = []
    o = scenarios.get("overhead")
    if o and "error" not in o:
        rows += [
            ("overhead p50", f"{_num(o['overhead_p50_us'], '.0f')} µs"),
            ("overhead p99", f"{_num(o['overhead_p99_us'], '.0f')} µs"),
            ("upstream p50 (echo server)", f"{_num(o['upstream_p50_us'], '.0f')} µs"),
        ]
    s = scenarios.get("saturation")
    if s and "error" not in s:
        rows += [
            (f"farm, {s['ips']} IPs, {s['concurrency']} in flight", f"{_num(s['farm_jobs_per_s'], '.0f')} jobs/s"),
            ("single-process aiohttp client, same IPs", f"{_num(s['single_process_req_per_s'], '.0f')} req/s"),
            ("farm ÷ client", _num(s["ratio"], ".2f")),
            ("CPU per job: farm (coordinator + workers)", f"{_num(s['farm_cpu_us_per_job'], '.0f')} µs"),
            ("  of which the coordinator", f"{_num(s['farm_coordinator_cpu_us_per_job'], '.0f')} µs"),
            ("CPU per request: single-process client", f"{_num(s['single_process_cpu_us_per_req'], '.0f')} µs"),
        ]
    return TableData("overhead and saturation (zero-latency echo server)", ("metric", "value"), rows) if rows else None


def _scale(r: dict[str, Any]) -> TableData:
    rows = [
        (
            str(row["workers"]),
            _num(row["ready_s"], ".2f"),
            _num(row["pss_per_worker_mb"], ".2f"),
            _num(row["pss_coordinator_mb"], ".1f"),
            _num(row.get("pss_forkserver_mb"), ".1f"),
            _num(row.get("idle_coordinator_cpu_pct"), ".2f"),
        )
        for row in r["by_workers"].values()
    ]
    columns = ("workers", "ready s", "PSS/worker MB", "coordinator MB", "fork server MB", "idle coordinator %CPU")
    return TableData("scale: cost as IPs grow", columns, rows)


def _blind(r: dict[str, Any]) -> TableData:
    cells = [r, *([r["at_150ms"]] if "at_150ms" in r else [])]
    metrics = (
        ("batches/s (both legs quoted)", "batches_per_s", ".1f"),
        ("batches ÷ (N·R/2)", "batches_vs_ideal", ".3f"),
        ("opportunities/s", "opportunities_per_s", ".2f"),
        ("bundles accepted/s", "bundles_accepted_per_s", ".2f"),
        ("bundles landed/s", "bundles_landed_per_s", ".2f"),
        ("simulator: Jupiter ok/s", "sim_jupiter_ok_per_s", ".1f"),
        ("simulator: Jupiter ok ÷ N·R", "sim_jupiter_ok_vs_NR", ".3f"),
    )
    rows = [(label, *(_num(c.get(key), fmt) for c in cells)) for label, key, fmt in metrics]
    rows.append(("simulator: Jupiter 429 share", *(_pct(c.get("sim_jupiter_share_429")) for c in cells)))
    columns = ("metric", *(f"{c['ips']} IPs, {c.get('latency_ms', 0):g} ms" for c in cells))
    return TableData("blind: live landing", columns, rows, f"counted over {r['window_s']:.0f} s after a warm-up")


def _landing(r: dict[str, Any]) -> TableData:
    rows = [
        (
            f"{c['ips']} IPs × {c['regions']} regions at {c['rate_per_ip_region']:g}/s",
            _num(c["offered_bundles_per_s"] * c["regions"], ".0f"),
            _num(c["capacity_sends_per_s"], ".0f"),
            _num(c["accepted_sends_per_s"], ".1f"),
            _num(c["accepted_vs_capacity"], ".3f"),
            _pct(c["jito_share_429"]),
        )
        for c in r["runs"].values()
    ]
    columns = ("cell", "offered sends/s", "N × regions × R", "accepted/s", "÷ capacity", "429 share")
    return TableData("landing: Jito sends per (IP, region)", columns, rows)


def _sim(r: dict[str, Any]) -> TableData:
    on, off = r["execution_on"], r["execution_off"]

    def row(label: str, key: str, fmt: str = ".0f") -> tuple[str, str, str]:
        return (label, _num(on.get(key), fmt), _num(off.get(key), fmt))

    rows = [
        row("quotes/s (closed loop)", "quotes_per_s"),
        row("bundles accepted/s (closed loop)", "bundles_accepted_per_s"),
        row("  executed in the VM/s", "bundles_executed_per_s"),
        row("  landed/s", "bundles_landed_per_s"),
        row(f"mixed: bundles open loop at {r['mixed_bundle_rate']:g}/s, executed/s", "mixed_bundles_executed_per_s"),
        row("mixed: quotes/s beside them", "mixed_quotes_per_s"),
        row("simulator CPU per quote, µs", "sim_cpu_us_per_quote"),
        row("simulator CPU per bundle, µs", "sim_cpu_us_per_bundle"),
        row("one core of its own: quotes/s", "quotes_per_core_s"),
        row("one core of its own: bundles/s", "bundles_per_core_s"),
        (
            "simulator CPU, s per s (quotes / bundles / mixed)",
            "/".join(_num(v, ".2f") for v in on["sim_cpu_per_s"].values()),
            "/".join(_num(v, ".2f") for v in off["sim_cpu_per_s"].values()),
        ),
        (
            "simulator waiting for a CPU, s per s",
            "/".join(_num(v, ".2f") for v in on["sim_queued_per_s"].values()),
            "/".join(_num(v, ".2f") for v in off["sim_queued_per_s"].values()),
        ),
        (
            "load process CPU, s per s (quotes / bundles)",
            "/".join(_num(v, ".2f") for v in on["load_cpu_per_s"].values()),
            "/".join(_num(v, ".2f") for v in off["load_cpu_per_s"].values()),
        ),
    ]
    title = f"sim: the simulator's capacity, median of {r['rounds']} rounds of {r['seconds']:g} s per measurement"
    note = (
        "execution on: every accepted bundle (a Jupiter route and a tip, auction contention 0) runs in the VM; "
        "off: accepted bundles land without running. Load from separate processes; a simulator whose CPU plus "
        "waiting for a CPU is near 1.0 s/s, with its load well under, is the simulator's own limit (or its share of "
        f"the machine). Failures (on): {on['failures'] or 'none'}"
    )
    return TableData(title, ("metric", "execution on", "execution off"), rows, note)


def _titan(r: dict[str, Any]) -> TableData:
    ms = 1000.0
    rows = [
        ("freshest quote age, max", f"{_num(r['quote_age_max_s'] * ms, '.0f')} ms"),
        ("freshest quote age, p99", f"{_num(r['quote_age_p99_s'] * ms, '.0f')} ms"),
        ("freshest quote age, p50", f"{_num(r['quote_age_p50_s'] * ms, '.0f')} ms"),
        ("max ÷ stream interval", _num(r["quote_age_max_vs_interval"], ".2f")),
        ("Titan quotes/s, slowest second", _num(r["quotes_per_s_min"], "d")),
        ("seconds without a Titan quote", _num(r["seconds_without_quotes"], "d")),
        ("refused after start (simulator)", _num(r["refused_after_start"], "d")),
        ("reconnects", _num(r["reconnects"], "d")),
        ("streams opened (renewals included)", _num(r["streams_opened"], "d")),
        ("HTTP ok/s from the Titan connection's IP", _num(r["titan_ip_http_ok_per_s"], ".1f")),
    ]
    title = (
        f"titan: {r['ips']} IPs, {r['tokens']} token, {r['streams']} streams for {r['keys']} (pair, size)s, "
        f"interval {r['interval_s'] * 1000:.0f} ms, renewed every {r['stream_seconds']:g} s"
    )
    note = (
        f"over {r['window_s']:.0f} s after every stream quoted once ({r['samples']} samples, one per 50 ms per "
        "streamed (pair, size)); the simulator holds a token to one connection and a connection to 4 streams"
    )
    return TableData(title, ("metric", "value"), rows, note)


def _pipeline(r: dict[str, Any]) -> TableData:
    rows = []
    for name, c in r["cells"].items():
        row: tuple[str, ...] = (name,)
        if not c.get("binds"):
            rows.append((*row, "does not bind", "", "", "", "", "", "", "", ""))
            continue
        learned, told, base = c.get("learned", {}), c.get("told", {}), c.get("baseline", {})
        steals = [run.get("steal_pct") for run in (learned, told, base)]
        row += (
            _num(learned.get("ok_ratio")),
            _pct(learned.get("share_429")),
            _num(learned.get("penalties"), "d"),
            _num(told.get("ok_ratio")),
            f"{_pct(told.get('share_429'))} / {_num(told.get('penalties'), 'd')}",
            _num(base.get("ok_ratio")) if base else "-",
            _pct(base.get("share_429")) if base else "-",
            _num(learned.get("landing_ratio")),
            _num(max((s for s in steals if s is not None), default=None), ".1f"),
        )
        rows.append(row)
    columns = (
        "cell",
        "learned ok",
        "learned 429",
        "boxes",
        "told ok",
        "told 429 / boxes",
        "baseline ok",
        "baseline 429",
        "landing",
        "steal %",
    )
    note = (
        "ok = the aggregator's ok/s ÷ N·R (a keyed cell: ÷ the key's budget), 429 = share of its answers, boxes = "
        "penalty-box entries, all in the counted window and by the simulator's counts; landing = Jito sends "
        "accepted/s ÷ min(offered, N × 2 regions × 5/s), learned; steal = the most of the machine's CPU time its "
        "hypervisor gave to others in a run's window (a shared host's noise)"
    )
    return TableData("pipeline: the round-trip engine under each limiter shape", columns, rows, note)


def _value(v: Any) -> str:
    if isinstance(v, float) and abs(v) < 1:
        return _num(v, ".4f")
    return _num(v, ".2f") if isinstance(v, float) else _num(v, "d") if isinstance(v, int) else "-"


def tables(report: dict[str, Any]) -> list[TableData]:
    """The scenarios that ran, in a fixed order, then every target with its verdict."""
    sc = report["scenarios"]
    out: list[TableData] = []
    if "ratelimit" in sc and "error" not in sc["ratelimit"]:
        out.append(_ratelimit(sc["ratelimit"]))
    farm = _farm(sc)
    if farm:
        out.append(farm)
    if "scale" in sc and "error" not in sc["scale"]:
        out.append(_scale(sc["scale"]))
    if "blind" in sc and "error" not in sc["blind"]:
        out.append(_blind(sc["blind"]))
    if "landing" in sc and "error" not in sc["landing"]:
        out.append(_landing(sc["landing"]))
    if "sim" in sc and "error" not in sc["sim"]:
        out.append(_sim(sc["sim"]))
    if "titan" in sc and "error" not in sc["titan"]:
        out.append(_titan(sc["titan"]))
    if "pipeline" in sc and "error" not in sc["pipeline"]:
        out.append(_pipeline(sc["pipeline"]))
    errors = [(name, str(r["error"])) for name, r in sc.items() if "error" in r]
    if errors:
        out.append(TableData("scenarios that failed to run", ("scenario", "error"), errors))
    targets = [
        (str(t["label"]), _value(t["value"]), f"{t['op']} {t['limit']:g}", str(t["verdict"])) for t in report["targets"]
    ]
    if targets:
        out.append(TableData("targets", ("target", "measured", "goal", "verdict"), targets))
    return out
