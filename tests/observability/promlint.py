"""The naming rules of ``promtool check metrics`` (client_golang's promlint), without promtool.

Each rule returns promtool's own wording, so a test can compare the two when promtool is
installed. Input: the families of a scrape, as prometheus_client's parser returns them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from prometheus_client.metrics_core import Metric

__all__ = ["lint"]

_BASE_UNITS = {
    "amperes": "amperes",
    "bytes": "bytes",
    "celsius": "celsius",
    "grams": "grams",
    "joules": "joules",
    "kelvin": "kelvin",
    "meters": "meters",
    "metres": "metres",
    "seconds": "seconds",
    "volts": "volts",
    "minutes": "seconds",
    "hours": "seconds",
    "days": "seconds",
    "weeks": "seconds",
    "kilometers": "meters",
    "kilometres": "metres",
    "feet": "meters",
    "inches": "meters",
    "miles": "meters",
}
_PREFIXES = (
    *("pico", "nano", "micro", "milli", "centi", "deci", "deca", "hecto", "kilo", "kibi"),
    *("mega", "mibi", "giga", "gibi", "tera", "tebi", "peta", "pebi"),
)
_ABBREVIATIONS = ("s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb", "pb", "m", "h", "d")
_CAMEL = re.compile(r"[a-z][A-Z]")


def _unit(name: str) -> tuple[str, str] | None:
    for token in name.split("_"):
        if token in _BASE_UNITS:
            return token, _BASE_UNITS[token]
        for prefix in _PREFIXES:
            if token.startswith(prefix) and token[len(prefix) :] in _BASE_UNITS:
                return token, _BASE_UNITS[token[len(prefix) :]]
    return None


def _exposed(family: Metric) -> str:
    """The family's name as the text format writes it (a counter with its ``_total``)."""
    return f"{family.name}_total" if family.type == "counter" else family.name


def lint(families: Iterable[Metric]) -> list[tuple[str, str]]:
    """(metric name, problem) for every rule a family breaks, in promtool's words."""
    problems: list[tuple[str, str]] = []
    for family in families:
        name, kind = _exposed(family), family.type
        lower = name.lower()
        found: list[str] = []
        if not family.documentation:
            found.append("no help text")
        unit = _unit(name)
        if unit is not None and unit[0] != unit[1]:
            found.append(f'use base unit "{unit[1]}" instead of "{unit[0]}"')
        if kind == "counter" and not name.endswith("_total"):
            found.append('counter metrics should have "_total" suffix')
        if kind not in ("counter", "unknown") and name.endswith("_total"):
            found.append('non-counter metrics should not have "_total" suffix')
        if kind != "histogram" and name.endswith("_bucket"):
            found.append('non-histogram metrics should not have "_bucket" suffix')
        if kind not in ("histogram", "summary") and name.endswith(("_count", "_sum")):
            suffix = "_count" if name.endswith("_count") else "_sum"
            found.append(f'non-histogram and non-summary metrics should not have "{suffix}" suffix')
        labels = {label for sample in family.samples for label in sample.labels}
        if kind != "histogram" and "le" in labels:
            found.append('non-histogram metrics should not have "le" label')
        if kind != "summary" and "quantile" in labels:
            found.append('non-summary metrics should not have "quantile" label')
        if kind != "unknown" and (f"_{kind}_" in lower or lower.endswith(f"_{kind}")):
            found.append(f"metric name should not include type '{kind}'")
        if ":" in name:
            found.append("metric names should not contain ':'")
        if _CAMEL.search(name):
            found.append("metric names should be written in 'snake_case' not 'camelCase'")
        if any(_CAMEL.search(label) for label in labels):
            found.append("label names should be written in 'snake_case' not 'camelCase'")
        if any(f"_{a}_" in lower or lower.endswith(f"_{a}") for a in _ABBREVIATIONS):
            found.append("metric names should not contain abbreviated units")
        problems += [(name, problem) for problem in found]
    return problems
