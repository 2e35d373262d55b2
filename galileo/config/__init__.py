"""Reading ``galileo.yaml``: safe YAML, then every error at once with its key path.

>>> cfg = parse_config("bot: {network: {enable_multiple_ip: true}}")
>>> cfg.bot.network.enable_multiple_ip
True
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec
import yaml

from galileo.config._validate import ConfigIssue, collect_issues
from galileo.config.schema import GalileoConfig

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ConfigError",
    "ConfigIssue",
    "GalileoConfig",
    "json_schema",
    "load_config",
    "parse_config",
]

DEFAULT_CONFIG_PATH = "galileo.yaml"


class ConfigError(Exception):
    """The config could not be used. ``issues`` lists every problem, each with its key path."""

    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        self.source = source
        self.issues = issues
        lines = "\n".join(f"  {issue}" for issue in issues)
        super().__init__(f"{source}: {len(issues)} problem(s)\n{lines}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last one."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", mark)
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_config(text: str, source: str = "<config>") -> GalileoConfig:
    """Parse YAML text into a :class:`GalileoConfig`, or raise :class:`ConfigError` with every issue."""
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [ConfigIssue("", f"{where}invalid YAML: {problem}")]) from None
    if raw is None:
        raw = {}
    issues = collect_issues(raw, GalileoConfig)
    if issues:
        raise ConfigError(source, issues)
    try:
        return msgspec.convert(raw, GalileoConfig)
    except msgspec.ValidationError as exc:  # the walker should have caught it; never lose the message
        raise ConfigError(source, [ConfigIssue("", str(exc))]) from None


def load_config(path: str | os.PathLike[str] | None) -> GalileoConfig:
    """Load a config file. ``None`` means defaults (as if the file were empty)."""
    if path is None:
        return GalileoConfig()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(p), [ConfigIssue("", "file not found (create one with `galileo config init`)")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(p), [ConfigIssue("", f"cannot read: {exc}")]) from None
    return parse_config(text, str(p))


def json_schema() -> dict[str, Any]:
    """JSON Schema of the config file, for editors (yaml-language-server and friends)."""
    schema: dict[str, Any] = msgspec.json.schema(GalileoConfig)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "galileo.yaml"
    return schema
