"""The Node peers of the interop tests (``tests/interop``, npm packages pinned there)."""

import shutil
from pathlib import Path

import pytest

INTEROP = Path(__file__).resolve().parents[1] / "interop"


def node_executable(package: str) -> str:
    """Node, once the interop packages (``package`` among them) are installed."""
    if not (INTEROP / "node_modules" / package).is_dir():
        pytest.fail("tests/interop/node_modules is missing: run `npm ci --prefix tests/interop`")
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (Node 20 or later is needed)")
    return node
