"""Floors run one way: landing never imports strategy; strategy uses landing only through its package.

Below both: the upstream job builders (galileo.upstreams), the farm seam (galileo.client) and
the chain state, which import neither. Strategy and landing reach the farm only through
:class:`galileo.client.FarmClient`: never its modules, its hub or its policy.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "galileo"


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports (``from a.b import c`` counts as ``a.b`` and ``a.b.c``), lazy ones too."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def modules(*parts: str) -> list[Path]:
    base = ROOT.joinpath(*parts)
    return sorted(base.rglob("*.py")) if base.is_dir() else [base.with_suffix(".py")]


def under(names: set[str], package: str) -> set[str]:
    return {n for n in names if n == package or n.startswith(package + ".")}


@pytest.mark.parametrize("path", modules("landing"), ids=lambda p: p.name)
def test_landing_never_imports_strategy(path: Path) -> None:
    assert not under(imports_of(path), "galileo.strategy")


@pytest.mark.parametrize("path", modules("strategy"), ids=lambda p: p.name)
def test_strategy_uses_landing_only_through_its_package(path: Path) -> None:
    internals = {n for n in under(imports_of(path), "galileo.landing") if n.count(".") >= 2}
    # ``from galileo.landing import LanderStack`` names galileo.landing.LanderStack: an export, fine.
    exported = {f"galileo.landing.{name}" for name in __import__("galileo.landing", fromlist=["*"]).__all__}
    assert internals <= exported, internals - exported


@pytest.mark.parametrize("path", [*modules("strategy"), *modules("landing")], ids=lambda p: p.name)
def test_strategy_and_landing_reach_the_farm_only_through_the_client(path: Path) -> None:
    names = imports_of(path)
    assert not under(names, "galileo.farm") and not under(names, "broker.hub"), names
    assert "farm.hub" not in path.read_text() and "farm.policy" not in path.read_text()


@pytest.mark.parametrize(
    "path", [*modules("upstreams"), *modules("client"), *modules("chain"), *modules("policy")], ids=lambda p: p.name
)
def test_the_floor_below_imports_neither(path: Path) -> None:
    names = imports_of(path)
    assert not under(names, "galileo.strategy") and not under(names, "galileo.landing"), names
    assert not under(names, "galileo.farm"), names
