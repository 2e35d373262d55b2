"""A validator that walks raw YAML data against msgspec Structs and collects *every* error.

msgspec stops at the first problem; an operator fixing a config file wants all of them at
once, each with its full key path. The walker understands the shapes our schema uses:
Structs, ``list[X]``, ``dict[str, X]``, ``X | None``, ``Literal[...]`` and leaves, plus
``Annotated[X, Check(fn)]`` for value checks that msgspec cannot express (IP addresses,
ordered ranges, URLs). Leaves are converted by msgspec itself, so the accepted types are
exactly what the final ``msgspec.convert`` will accept.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

import msgspec

__all__ = ["Check", "ConfigIssue", "collect_issues", "empty_sections_as_defaults", "format_path", "render_value"]


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a config file: where (a key path like ``bot.network.manual_ips[1]``) and what."""

    path: str
    message: str
    line: int | None = None  # for an issue of the document itself (no key path): the YAML line it is about

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    def located(self) -> str:
        """As a person reads it: after its key path or, for the document itself, its YAML line."""
        return f"line {self.line}: {self.message}" if not self.path and self.line is not None else str(self)


class Check:
    """``Annotated`` metadata: ``fn(value)`` returns an error message, or None when the value is fine.

    Runs after the value has the right type, so ``fn`` may assume it.
    """

    def __init__(self, fn: Callable[[Any], str | None]) -> None:
        self.fn = fn


# Keys that the original galileo had and that we dropped on purpose: say why instead of "unknown".
RETIRED_KEYS: dict[str, str] = {
    "per_ip_inflight_limit": "concurrency adapts at run time; there is no per-IP limit to set",
    "per_ip_limit": "concurrency adapts at run time; there is no per-IP limit to set",
    "cooldown_ms": "cooldowns are exponential and learned at run time; there is nothing to set",
    "blacklist_ips": "list the addresses to use in bot.network.manual_ips instead",
    "allow_loopback": "loopback addresses are allowed in bot.network.manual_ips",
    "max_concurrent_slots": "concurrency follows the IP pool; there is nothing to set",
    "inter_batch_delay_ms": "batches pace themselves to what the IP pool absorbs",
    "cycle_cooldown_ms": "batches pace themselves to what the IP pool absorbs",
    "auto_scale_to_ip": "sizes are no longer matched to IPs by hand; concurrency follows the pool",
    "slippage_bps": "each round trip's sell leg gets the slippage its costs and min_quote_profit leave; "
    "there is nothing to set",
}


def format_path(parts: tuple[str | int, ...]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def render_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def collect_issues(raw: Any, tp: Any, path: tuple[str | int, ...] = ()) -> list[ConfigIssue]:
    """Every problem found when reading ``raw`` as type ``tp``, in document order."""
    issues: list[ConfigIssue] = []
    _walk(raw, tp, path, issues)
    return issues


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return "a mapping"
    origin = get_origin(tp)
    if origin is list or origin is tuple:
        return "a list"
    if origin is dict:
        return "a mapping"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _walk(raw: Any, tp: Any, path: tuple[str | int, ...], issues: list[ConfigIssue]) -> None:
    origin = get_origin(tp)
    if origin is typing.Annotated:
        base, *meta = get_args(tp)
        before = len(issues)
        _walk(raw, base, path, issues)
        if len(issues) == before:
            for m in meta:
                if isinstance(m, Check):
                    msg = m.fn(raw)
                    if msg:
                        issues.append(ConfigIssue(format_path(path), f"{render_value(raw)} {msg}"))
                        break
        return
    if origin in (typing.Union, types.UnionType):
        options = get_args(tp)
        if raw is None and type(None) in options:
            return
        non_null = [o for o in options if o is not type(None)]
        if len(non_null) == 1:
            _walk(raw, non_null[0], path, issues)
            return
        for option in non_null:
            trial: list[ConfigIssue] = []
            _walk(raw, option, path, trial)
            if not trial:
                return
        names = " or ".join(_type_name(o) for o in options)
        issues.append(ConfigIssue(format_path(path), f"{render_value(raw)} is not {names}"))
        return
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        _walk_struct(raw, tp, path, issues)
        return
    if origin is list:
        if not isinstance(raw, list):
            issues.append(ConfigIssue(format_path(path), f"{render_value(raw)} is not a list"))
            return
        (item_tp,) = get_args(tp)
        for i, item in enumerate(raw):
            _walk(item, item_tp, (*path, i), issues)
        return
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(raw, list) or (args and args[-1] is not Ellipsis and len(raw) != len(args)):
            want = f"a list of {len(args)} items" if args and args[-1] is not Ellipsis else "a list"
            issues.append(ConfigIssue(format_path(path), f"{render_value(raw)} is not {want}"))
            return
        for i, item in enumerate(raw):
            _walk(item, args[0] if args[-1] is Ellipsis else args[i], (*path, i), issues)
        return
    if origin is dict:
        if not isinstance(raw, Mapping):
            issues.append(ConfigIssue(format_path(path), f"{render_value(raw)} is not a mapping"))
            return
        key_tp, val_tp = get_args(tp)
        for key, val in raw.items():
            _walk(key, key_tp, (*path, str(key)), issues)
            _walk(val, val_tp, (*path, str(key)), issues)
        return
    if origin is Literal:
        if raw not in get_args(tp):
            issues.append(ConfigIssue(format_path(path), f"{render_value(raw)} is not {_type_name(tp)}"))
        return
    # A leaf: let msgspec decide, so the final conversion agrees with this pass.
    if tp in (int, float) and isinstance(raw, bool):
        issues.append(ConfigIssue(format_path(path), f"{render_value(raw)} is not {_type_name(tp)}"))
        return
    try:
        msgspec.convert(raw, tp)  # strict, as the final conversion is: a quoted "5" is a string
    except msgspec.ValidationError:
        issues.append(ConfigIssue(format_path(path), f"{render_value(raw)} is not {_type_name(tp)}{_how(raw, tp)}"))


def _how(raw: Any, tp: Any) -> str:
    """For a number written so that it is not one: how to write it."""
    if tp is int and isinstance(raw, float):
        return " (a whole number is needed: 2e9, 0.1e9, 2_000_000_000 and 2000000000 all work)"
    if tp in (int, float) and isinstance(raw, str):
        try:
            float(raw.replace("_", ""))
        except ValueError:
            return ""
        example = " (2e9, 0.1e9, 2_000_000_000 and 2000000000 all work)" if tp is int else ""
        return f" but a quoted string: write the number without quotes{example}"
    return ""


def empty_sections_as_defaults(raw: Any, tp: type[msgspec.Struct]) -> Any:
    """``raw`` with every empty section (``network:`` and nothing under it, YAML null) as ``{}``.

    The walker reads an empty section as "all defaults"; msgspec must convert it the same way.
    """
    if not isinstance(raw, Mapping):
        return raw
    hints = typing.get_type_hints(tp)
    out = dict(raw)
    for key, value in raw.items():
        sub = hints.get(key) if isinstance(key, str) else None
        if isinstance(sub, type) and issubclass(sub, msgspec.Struct):
            out[key] = empty_sections_as_defaults({} if value is None else value, sub)
    return out


def _walk_struct(raw: Any, tp: type[msgspec.Struct], path: tuple[str | int, ...], issues: list[ConfigIssue]) -> None:
    if raw is None:
        raw = {}  # an empty section (`network:` with nothing under it) means "all defaults"
    if not isinstance(raw, Mapping):
        issues.append(ConfigIssue(format_path(path), f"{render_value(raw)} is not a mapping"))
        return
    hints = typing.get_type_hints(tp, include_extras=True)
    fields = tp.__struct_fields__
    required = set(fields[: len(fields) - len(tp.__struct_defaults__)])
    for key, value in raw.items():
        if not isinstance(key, str):
            issues.append(ConfigIssue(format_path(path), f"key {render_value(key)} is not a string"))
            continue
        if key not in hints:
            issues.append(ConfigIssue(format_path((*path, key)), _unknown_key_message(key, fields)))
            continue
        _walk(value, hints[key], (*path, key), issues)
    for name in fields:
        if name in required and name not in raw:
            issues.append(ConfigIssue(format_path((*path, name)), "is required"))
    checker = getattr(tp, "__check__", None)
    if checker is not None and not any(i.path.startswith(format_path(path)) for i in issues):
        for sub, message in checker(raw):
            issues.append(ConfigIssue(format_path((*path, *sub)), message))


def _unknown_key_message(key: str, fields: tuple[str, ...]) -> str:
    if key in RETIRED_KEYS:
        return f"unknown key (retired: {RETIRED_KEYS[key]})"
    if key.endswith(("api_key", "token", "secret", "password", "uuid")) and f"{key}_env" in fields:
        return f"unknown key: secrets are never written in the file; set {key}_env to an env var name"
    close = difflib.get_close_matches(key, fields, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key{hint}; allowed here: {', '.join(fields)}"
