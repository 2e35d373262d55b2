"""Issue 17.3: every YAML block of README.md, docs/**/*.md and deploy/README.md passes `config check`.

A block that is deliberately partial (a fragment that only makes sense inside another file)
is marked by an HTML comment on the line before its fence, which gives the reason:

    <!-- config-check: skip: a fragment of the netplan file, not a galileo config -->

Such blocks are listed by :func:`test_every_skipped_block_says_why` and not checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import run_galileo

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted({ROOT / "README.md", ROOT / "deploy" / "README.md", *(ROOT / "docs").rglob("*.md")})
_FENCE = re.compile(r"^```(ya?ml)\s*$")
_SKIP = re.compile(r"^<!--\s*config-check:\s*skip:\s*(?P<why>.*?)\s*-->$")


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int  # of the opening fence, 1-based
    text: str
    skip: str | None  # the reason given, when marked

    def __str__(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def yaml_blocks(doc: Path) -> list[Block]:
    lines = doc.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        if _FENCE.match(lines[i].strip()):
            start = i
            body: list[str] = []
            i += 1
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            before = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
            marker = _SKIP.match(before)
            blocks.append(Block(doc, start + 1, "\n".join(body) + "\n", marker.group("why") if marker else None))
        i += 1
    return blocks


BLOCKS = [b for doc in DOCS for b in yaml_blocks(doc)]
CHECKED = [b for b in BLOCKS if b.skip is None]


def test_the_docs_have_config_blocks_to_check() -> None:
    assert ROOT / "README.md" in {b.doc for b in CHECKED}
    assert len(CHECKED) >= 3


def test_every_skipped_block_says_why() -> None:
    for block in BLOCKS:
        if block.skip is not None:
            assert len(block.skip) >= 10, f"{block}: say why this block is not a whole config"


@pytest.mark.parametrize("block", CHECKED, ids=str)
def test_yaml_block_passes_config_check(block: Block, tmp_path: Path) -> None:
    path = tmp_path / "galileo.yaml"
    path.write_text(block.text, encoding="utf-8")
    out = run_galileo("config", "check", str(path))
    assert out.returncode == 0, f"{block} fails `galileo config check`:\n{out.stderr}{out.stdout}"
    assert f"{path}: ok" in out.stdout
