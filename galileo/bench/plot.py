"""A PNG of the rate-limited scaling runs, when matplotlib is installed (``pip install -e '.[bench]'``)."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

__all__ = ["can_plot", "write_plot"]


def can_plot() -> bool:
    """Whether matplotlib is importable (it is an optional extra)."""
    return importlib.util.find_spec("matplotlib") is not None


def write_plot(report: dict[str, Any], path: Path) -> bool:
    """Successes/s ÷ N·R and the share of 429s against N, one line per policy. False if nothing to plot."""
    r = report["scenarios"].get("ratelimit")
    if not r or "error" in r or not can_plot():
        return False
    # Imported by name: an optional dependency, typed or not, whether installed or not.
    importlib.import_module("matplotlib").use("Agg")
    plt = importlib.import_module("matplotlib.pyplot")

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, by_n in r["runs"].items():
        ns = [int(n) for n in by_n]
        left.plot(ns, [by_n[str(n)]["ok_ratio"] for n in ns], marker="o", label=name)
        right.plot(ns, [100 * by_n[str(n)]["share_429"] for n in ns], marker="o", label=name)
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(r["ips"], [str(n) for n in r["ips"]])
        ax.set_xlabel("IPs (N)")
        ax.grid(alpha=0.3)
        ax.legend()
    left.set_ylabel(f"successes/s ÷ N·R (R = {r['rate_per_ip']:g}/s)")
    left.set_ylim(0, 1.1)
    right.set_ylabel("429s, % of answers")
    fig.suptitle(f"galileo bench ratelimit: {report['machine']['cpu_model']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
