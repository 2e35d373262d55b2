"""YAML for config files: safe, bounded, strict about keys, and kind to numbers.

* **Safe**: PyYAML's SafeLoader (libyaml's parser when PyYAML has it): no tag builds an object.
* **Bounded**: at most :data:`MAX_DEPTH` levels and :data:`MAX_VALUES` values *once aliases are
  expanded*, checked on the event stream before anything is built. A 380-byte alias bomb
  expands to billions of values; here it costs a few milliseconds and names its line.
* **Strict**: a key given twice is an error, not "the last one wins".
* **Numbers as people write them**: YAML 1.1 reads ``2e9`` and ``0.1e9`` as strings. Here any
  decimal number with a fraction or an exponent is a number, ``_`` may group digits
  (``2_000_000_000``), and a whole one is an ``int``, so it fits an integer amount.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from decimal import Decimal, InvalidOperation
from typing import Any

import yaml

try:  # libyaml's parser: ~10x faster, same documents
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]

__all__ = ["MAX_DEPTH", "MAX_VALUES", "ConfigLoader", "YamlLimit", "check_shape", "load_yaml"]

MAX_DEPTH = 64  # a galileo config is a few levels deep; far deeper nesting is a mistake (or an attack)
# A full config is a few hundred values; 4096 manual_ips are ~4100. Parsing 20,000 takes ~0.1 s.
MAX_VALUES = 20_000

_FLOAT_TAG = "tag:yaml.org,2002:float"
# YAML 1.2's decimal floats plus 1.1's `_` digit groups: 2e9, 0.1e9, 1.5, .5, 1e-3, 2_000.5, .inf, .nan
_NUMBER = (
    r"^(?:[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_WHOLE_DIGITS = 30  # a whole number beyond 10^30 stays a float: no amount is that large, and 1e999999 stays cheap


class YamlLimit(Exception):
    """The document is too deep, too large once expanded, or refers to itself. ``line`` is 1-based."""

    def __init__(self, message: str, mark: Any) -> None:  # a yaml.Mark (PyYAML's or libyaml's), or None
        super().__init__(message)
        self.message = message
        self.line: int | None = mark.line + 1 if mark is not None else None


class ConfigLoader(_SafeLoader):
    """SafeLoader that refuses duplicate keys and reads ``2e9`` / ``0.1e9`` as numbers."""


def _construct_mapping(loader: ConfigLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, Hashable):
            continue  # a list or mapping as a key: construct_mapping reports it, with its line
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


def _construct_number(loader: ConfigLoader, node: yaml.ScalarNode) -> int | float:
    text = str(loader.construct_scalar(node)).replace("_", "").lower()
    if text.endswith((".inf", ".nan")):
        return float(text.replace(".", ""))  # "-inf", "+inf", "nan"
    try:
        value = Decimal(text)
    except InvalidOperation:  # an explicit `!!float` on something that is not a number
        raise yaml.constructor.ConstructorError(None, None, f"{text!r} is not a number", node.start_mark) from None
    if value.is_finite() and value.adjusted() < _WHOLE_DIGITS and value == value.to_integral_value():
        return int(value)
    return float(value)


ConfigLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# Replace YAML 1.1's float resolver (which wants a dot and a signed exponent) with ours.
ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _FLOAT_TAG]
    for first, resolvers in _SafeLoader.yaml_implicit_resolvers.items()
}
ConfigLoader.add_implicit_resolver(_FLOAT_TAG, re.compile(_NUMBER), list("-+0123456789."))
ConfigLoader.add_constructor(_FLOAT_TAG, _construct_number)


def check_shape(text: str) -> None:
    """Raise :class:`YamlLimit` for a document deeper than MAX_DEPTH or larger than MAX_VALUES expanded.

    Reads events only (the parser does not recurse and builds nothing), so its cost is
    bounded by the text's size and MAX_VALUES, whatever the aliases multiply.
    """
    open_: list[tuple[str | None, list[int]]] = []  # per open collection: its anchor, [values so far]
    sizes: dict[str, int | None] = {}  # anchor -> expanded size; None while its collection is open
    events = 0
    for event in yaml.parse(text, Loader=ConfigLoader):
        events += 1
        if events > 2 * MAX_VALUES + 8:  # each value is at most 2 events: the count below would pass MAX_VALUES
            raise YamlLimit(_too_many(), event.start_mark)
        if isinstance(event, yaml.CollectionStartEvent):
            if len(open_) >= MAX_DEPTH:
                raise YamlLimit(f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
            if event.anchor is not None:
                sizes[event.anchor] = None
            open_.append((event.anchor, [1]))
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            anchor, (size,) = open_.pop()
            if anchor is not None:
                sizes[anchor] = size
        elif isinstance(event, yaml.ScalarEvent):
            size = 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor in sizes and sizes[event.anchor] is None:
                raise YamlLimit(f"alias *{event.anchor} is inside the collection it names (endless)", event.start_mark)
            size = sizes.get(event.anchor or "") or 1  # an undefined alias: loading reports it
        else:
            continue
        if open_:
            count = open_[-1][1]
            count[0] += size
            size = count[0]
        if size > MAX_VALUES:
            raise YamlLimit(_too_many(), event.start_mark)


def _too_many() -> str:
    return (
        f"more than {MAX_VALUES} values (counting each repeat of a YAML alias); "
        "a galileo config has a few hundred: the wrong file, or an alias bomb?"
    )


def load_yaml(text: str) -> Any:
    """``text`` as Python data, within the limits. Raises YamlLimit or yaml.YAMLError."""
    check_shape(text)
    return yaml.load(text, Loader=ConfigLoader)
