"""galileo: a multi-IP execution farm for Solana trading bots."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "galileo-farm"  # the name on the package index; the package and the command are `galileo`

try:
    __version__ = version(DISTRIBUTION)
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+src"

__all__ = ["DISTRIBUTION", "__version__"]
