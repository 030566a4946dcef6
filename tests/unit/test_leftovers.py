"""The end-of-run check finds what a test left running, and only that."""

from __future__ import annotations

import subprocess
import sys

from tests.support.leftovers import leftover_processes, stop


def test_a_child_left_running_is_found_and_stopped(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                              str(tmp_path / "marker")])
    try:
        left = leftover_processes(tmp_path, grace=0.1)
        assert child.pid in [p.pid for p in left]
        stop(left)
        assert child.wait(timeout=10) is not None
    finally:
        child.kill()
        child.wait()
    assert child.pid not in [p.pid for p in leftover_processes(tmp_path, grace=0.1)]
