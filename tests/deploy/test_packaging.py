"""Issue 17.9: a distribution name of our own, the LICENSE it names, a pyproject.toml setuptools reads
without a warning, and the `galileo` command."""

from __future__ import annotations

import re
import tomllib
import warnings
from importlib.metadata import distribution
from pathlib import Path

import pytest

import galileo

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503: how the package index compares names


def test_the_distribution_name_is_not_the_unrelated_galileo() -> None:
    name = PYPROJECT["project"]["name"]
    assert normalized(name) != "galileo"  # `pip install -U galileo` fetches someone else's project
    assert normalized(name) == normalized(galileo.DISTRIBUTION)
    installed = distribution(galileo.DISTRIBUTION)
    assert installed.version == galileo.__version__ != "0.0.0+src"
    scripts = {ep.name: ep.value for ep in installed.entry_points if ep.group == "console_scripts"}
    assert scripts == {"galileo": "galileo.cli:main"}  # the command keeps its name


def test_the_license_is_spdx_and_its_file_exists() -> None:
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"
    for pattern in project["license-files"]:
        (path,) = ROOT.glob(pattern)
        assert "MIT License" in path.read_text()


def test_setuptools_reads_pyproject_without_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    monkeypatch.chdir(ROOT)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dist = apply_configuration(Distribution(), ROOT / "pyproject.toml")
    assert [str(w.message).splitlines()[0] for w in caught] == []
    assert dist.get_name() == PYPROJECT["project"]["name"]
    assert dist.metadata.license_expression == "MIT"
