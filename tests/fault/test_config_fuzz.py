"""Issue 9.6: any YAML at all as a config: a config, or exit 2 naming where; never a traceback.

Random documents (nested mappings, lists and scalars of every YAML type) and mutations of the
real template (keys renamed, values swapped for other types, keys deleted, lines duplicated)
go through :func:`galileo.config.parse_config` by the hundred and through
``galileo config check FILE`` (a real process) a handful of times. Every problem is reported
at a key path (``upstreams.jito.endpoints[2]: ...``) or, for the document itself, a YAML line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from galileo.config import ConfigError, GalileoConfig, parse_config
from galileo.config.template import TEMPLATE
from tests.conftest import run_galileo

pytestmark = [pytest.mark.fault]

_LINE = re.compile(r"^line \d+")
_BASE = yaml.safe_load(TEMPLATE)

_keys = st.one_of(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12),
    st.sampled_from(["bot", "farm", "network", "manual_ips", "listen", "upstreams", "jito", "lander", "mode"]),
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["1e5", "5", "-3", "0.5", "0x1f", "inf", "nan", "true", "127.0.0.1", "tcp://x:1"]),  # look alike
    st.dates(),
    st.binary(max_size=8),
)
_docs = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys | st.integers(), inner, max_size=5),
    max_leaves=25,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        doc = doc[part]
    return doc


@st.composite
def mutated_template(draw: st.DrawFn) -> str:
    """The template with 1-4 mutations: a key renamed or deleted, a value of the wrong type, a line twice."""
    doc = yaml.safe_load(TEMPLATE)  # a fresh copy every time
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, last = _parent(doc, path), path[-1]
        how = draw(st.sampled_from(["rename", "retype", "delete"]))
        if how == "rename" and isinstance(parent, dict):
            parent[f"{last}{draw(st.sampled_from(['s', '_', 'x', '_ms', '_env']))}"] = parent.pop(last)
        elif how == "delete" and isinstance(parent, dict):
            del parent[last]
        elif how == "delete" and isinstance(parent, list):
            parent.pop(last)
        else:
            parent[last] = draw(_docs)
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    if draw(st.booleans()):  # a line written twice: a duplicate key, or a list item more
        lines = text.splitlines()
        i = draw(st.integers(0, len(lines) - 1))
        lines.insert(i, lines[i])
        text = "\n".join(lines) + "\n"
    return text


documents = st.one_of(
    _docs.map(lambda d: yaml.safe_dump(d, sort_keys=False, allow_unicode=True)),
    st.dictionaries(st.sampled_from(sorted(_BASE)), _docs, max_size=4).map(lambda d: yaml.safe_dump(d)),
    mutated_template(),
    st.text(max_size=200),  # not even YAML, most of the time
)

NASTY = [
    "- 1\n- 2\n",
    "{1: 2, bot: {}}\n",
    "&a [*a]\n",
    "bot: &b {network: *b}\n",
    "[" * 1000 + "]" * 1000,
    "bot:\n  network:\n    manual_ips: " + "[" * 1000 + "]" * 1000 + "\n",
    "bot: !!python/object/apply:os.system ['true']\n",
    "a: \x00\n",
    "a: 1\n---\nb: 2\n",
    "bot: {network: {manual_ips: !!binary aGVsbG8=}}\n",
    "lander: {follow_timeout_s: .nan, tip_lamports: .inf}\n",
    "upstreams: {jupiter: {timeout_ms: 1e400}}\n",
    "? [a, b]\n: 1\n",
    "bot:\n  network: {}\n  network: {}\n",
    "upstreams: {jupiter: {base_url: 'https://x.example', rate_limit_per_ip: '1e5'}}\n",  # quoted: a string
    "lander: {tip_lamports: 12345.5}\n",  # a number, not whole
    "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n",  # an alias bomb, small
    "lander: {follow_timeout_s: '5', cu_limit_multiplier: '1.5'}\n",
]


def check_issues(exc: ConfigError) -> None:
    """Each problem names its key path, or the YAML line it is about."""
    assert exc.issues
    for issue in exc.issues:
        assert issue.path or _LINE.match(issue.located()), f"no key path or line: {issue!r}"


def parse(text: str) -> GalileoConfig | ConfigError:
    try:
        return parse_config(text, "fuzz.yaml")
    except ConfigError as exc:  # anything else escaping is the failure this test looks for
        return exc


@pytest.mark.fault
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=documents)
@example(text=TEMPLATE)
def test_parse_config_returns_a_config_or_every_problem_with_its_location(text: str) -> None:
    got = parse(text)
    if isinstance(got, ConfigError):
        check_issues(got)


@pytest.mark.fault
@pytest.mark.parametrize("text", NASTY, ids=range(len(NASTY)))
def test_hostile_yaml_is_a_config_error_with_a_location(text: str) -> None:
    got = parse(text)
    assert isinstance(got, ConfigError), got
    check_issues(got)


@pytest.mark.fault
@pytest.mark.slow
@settings(
    max_examples=4,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(text=st.one_of(mutated_template(), st.sampled_from(NASTY)))
@example(text=TEMPLATE)
@example(text="[" * 1000 + "]" * 1000)
def test_galileo_config_check_exits_0_or_2_with_locations_never_a_traceback(tmp_path: Path, text: str) -> None:
    path = tmp_path / "galileo.yaml"
    path.write_text(text, encoding="utf-8")
    proc = run_galileo("config", "check", str(path))
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output
    expected = parse(text)
    if isinstance(expected, GalileoConfig):
        assert proc.returncode == 0 and f"{path}: ok" in proc.stdout, output
        return
    assert proc.returncode == 2, output
    head, *lines = proc.stderr.splitlines()
    assert head == f"{path}: {len(expected.issues)} problem(s)", output
    assert len(lines) == len(expected.issues), output
    for line, issue in zip(lines, expected.issues, strict=True):
        shown = line.strip()
        assert shown.startswith(f"{issue.path}:") if issue.path else _LINE.match(shown), (shown, issue)
