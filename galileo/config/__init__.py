"""Reading ``galileo.yaml``: safe, bounded YAML, then every error at once with its key path.

>>> cfg = parse_config("bot: {network: {enable_multiple_ip: true}}")
>>> cfg.bot.network.enable_multiple_ip
True
"""

from __future__ import annotations

import os
from typing import Any

import msgspec
import yaml

from galileo.config._files import FileTooLarge, NotRegularFile, read_regular_file
from galileo.config._validate import ConfigIssue, collect_issues, empty_sections_as_defaults
from galileo.config._yaml import MAX_DEPTH, MAX_VALUES, ConfigLoader, YamlLimit, load_yaml
from galileo.config.schema import GalileoConfig

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "MAX_CONFIG_BYTES",
    "MAX_DEPTH",
    "MAX_VALUES",
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


MAX_CONFIG_BYTES = 1 << 20  # the template is ~6 KB; 4096 manual_ips are ~70 KB


def parse_config(text: str, source: str = "<config>") -> GalileoConfig:
    """Parse YAML text into a :class:`GalileoConfig`, or raise :class:`ConfigError` with every issue.

    Bounded: a text over MAX_CONFIG_BYTES, nested over MAX_DEPTH or expanding to more than
    MAX_VALUES values (YAML aliases) is refused before it is built, so any text parses in
    well under a second. Safe to call from a thread (nothing shared is touched).
    """
    if len(text) > MAX_CONFIG_BYTES:  # a character is at least a byte
        raise ConfigError(source, [ConfigIssue("", _too_large(len(text.encode("utf-8", "surrogatepass"))))])
    try:
        raw = load_yaml(text)
    except YamlLimit as exc:
        raise ConfigError(source, [ConfigIssue("", exc.message, line=exc.line)]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f"line {mark.line + 1}, column {mark.column + 1}: "
        else:  # a ReaderError (a character YAML does not allow) has only a position
            line = text.count("\n", 0, getattr(exc, "position", 0)) + 1
            where = f"line {line}: "
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(source, [ConfigIssue("", f"{where}invalid YAML: {problem}")]) from None
    if raw is None:
        raw = {}
    issues = collect_issues(raw, GalileoConfig)
    if issues:
        raise ConfigError(source, _located(issues, text))
    try:
        return msgspec.convert(empty_sections_as_defaults(raw, GalileoConfig), GalileoConfig)
    except msgspec.ValidationError as exc:  # the walker should have caught it; never lose the message
        raise ConfigError(source, [ConfigIssue("", str(exc))]) from None


def _too_large(size: int) -> str:
    return f"{size} bytes: a config file is at most {MAX_CONFIG_BYTES} bytes (the wrong file?)"


def _located(issues: list[ConfigIssue], text: str) -> list[ConfigIssue]:
    """Issues of the document itself have no key path: give them the YAML line they are about."""
    if all(issue.path for issue in issues):
        return issues
    root = yaml.compose(text, Loader=ConfigLoader)  # it loaded above, so it composes (within the limits)
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
    """Load a config file. ``None`` means defaults (as if the file were empty).

    The one entry point for every reader (``config check``, ``farm start``, a SIGHUP reload):
    it reads only a regular file (a FIFO, a device or a directory is refused, never waited
    on), at most MAX_CONFIG_BYTES, and parses within :func:`parse_config`'s bounds. It keeps
    no state, so a reload may run it in a thread (``asyncio.to_thread(load_config, path)``).
    Raises :class:`ConfigError`.
    """
    if path is None:
        return GalileoConfig()
    where = os.fspath(path)
    try:
        data = read_regular_file(where, MAX_CONFIG_BYTES)
    except FileNotFoundError:
        raise ConfigError(where, [ConfigIssue("", "file not found (create one with `galileo config init`)")]) from None
    except FileTooLarge as exc:
        raise ConfigError(where, [ConfigIssue("", _too_large(exc.size))]) from None
    except NotRegularFile as exc:
        raise ConfigError(where, [ConfigIssue("", f"{exc}: give the path of a YAML file")]) from None
    except OSError as exc:
        raise ConfigError(where, [ConfigIssue("", f"cannot read: {exc.strerror or exc}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            where, [ConfigIssue("", f"cannot read: not UTF-8 text ({exc.reason} at byte {exc.start})")]
        ) from None
    return parse_config(text, where)


def json_schema() -> dict[str, Any]:
    """JSON Schema of the config file, for editors (yaml-language-server and friends)."""
    schema: dict[str, Any] = msgspec.json.schema(GalileoConfig)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "galileo.yaml"
    return schema
