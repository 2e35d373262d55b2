"""Reading ``galileo.yaml``: safe YAML, then every error at once with its key path.

>>> cfg = parse_config("bot: {network: {enable_multiple_ip: true}}")
>>> cfg.bot.network.enable_multiple_ip
True
"""

from __future__ import annotations

import os
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import msgspec
import yaml

from galileo.config._validate import ConfigIssue, collect_issues, empty_sections_as_defaults
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
        lines = "\n".join(f"  {issue.located()}" for issue in issues)
        super().__init__(f"{source}: {len(issues)} problem(s)\n{lines}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last one."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, Hashable):
            continue  # a list or mapping as a key: construct_mapping reports it, with its line
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", mark)
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


MAX_DEPTH = 64  # a galileo config is a few levels deep; far deeper nesting is a mistake (or an attack)


def parse_config(text: str, source: str = "<config>") -> GalileoConfig:
    """Parse YAML text into a :class:`GalileoConfig`, or raise :class:`ConfigError` with every issue."""
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f"line {mark.line + 1}, column {mark.column + 1}: "
        else:  # a ReaderError (a character YAML does not allow) has only a position
            line = text.count("\n", 0, getattr(exc, "position", 0)) + 1
            where = f"line {line}: "
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(source, [ConfigIssue("", f"{where}invalid YAML: {problem}")]) from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise ConfigError(
            source, [ConfigIssue("", f"{_too_deep(text)}nested more than {MAX_DEPTH} levels deep")]
        ) from None
    if raw is None:
        raw = {}
    issues = collect_issues(raw, GalileoConfig)
    if issues:
        raise ConfigError(source, _located(issues, text))
    try:
        return msgspec.convert(empty_sections_as_defaults(raw, GalileoConfig), GalileoConfig)
    except msgspec.ValidationError as exc:  # the walker should have caught it; never lose the message
        raise ConfigError(source, [ConfigIssue("", str(exc))]) from None


def _too_deep(text: str) -> str:
    """``line N, column M: `` of the first collection nested deeper than MAX_DEPTH (the parser does not recurse)."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            mark = event.start_mark
            if depth > MAX_DEPTH and mark is not None:
                return f"line {mark.line + 1}, column {mark.column + 1}: "
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return ""


def _located(issues: list[ConfigIssue], text: str) -> list[ConfigIssue]:
    """Issues of the document itself have no key path: give them the YAML line they are about."""
    if all(issue.path for issue in issues):
        return issues
    root = yaml.compose(text, Loader=yaml.SafeLoader)  # it loaded above, so it composes
    odd_keys = []  # top-level keys that are not strings, in document order, as the walker reports them
    if isinstance(root, yaml.MappingNode):
        odd_keys = [k.start_mark for k, _ in root.value if k.tag != yaml.resolver.BaseResolver.DEFAULT_SCALAR_TAG]
    out = []
    for issue in issues:
        if issue.path or root is None:
            out.append(issue)
            continue
        mark = odd_keys.pop(0) if issue.message.startswith("key ") and odd_keys else root.start_mark
        out.append(ConfigIssue("", issue.message, line=mark.line + 1))
    return out


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
