"""Node.js for the interop tests, with the npm packages pinned in tests/interop."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

INTEROP = Path(__file__).resolve().parents[1] / "interop"


def node(package: str) -> str:
    """The ``node`` executable, once ``package`` is installed in tests/interop."""
    if not (INTEROP / "node_modules" / package).is_dir():
        pytest.fail("tests/interop/node_modules is missing: run `npm ci --prefix tests/interop`")
    found = shutil.which("node")
    if found is None:
        pytest.fail("node is not installed (Node 20 or later is needed)")
    return found
