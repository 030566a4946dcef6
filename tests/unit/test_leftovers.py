"""The end-of-run check finds what a test left running, and only that."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil

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


def run_that_leaves_a_server(tmp_path, ending: str) -> int:
    """A test run (a process of its own) that starts its watcher and a server from
    its folder (in a session of its own, as pg_ctl starts PostgreSQL), then ends with
    ``ending``; returns the server's pid."""
    script = f"""
import os, subprocess, sys
from pathlib import Path
from tests.support.leftovers import close_watcher, watch
root = Path({str(tmp_path)!r})
watcher = watch(root)
server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                           str(root / "pgdata")], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
print(server.pid, flush=True)
{ending}
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=30, cwd=Path(__file__).resolve().parents[2])
    return int(run.stdout.split()[0])


def test_the_watcher_stops_what_a_run_that_died_left_running(tmp_path):
    server = run_that_leaves_a_server(tmp_path, "os._exit(1)  # as a hung test's timeout")
    try:
        alive = psutil.wait_procs([psutil.Process(server)], timeout=10)[1]
    except psutil.NoSuchProcess:
        alive = []  # stopped already
    stop(alive)
    assert alive == []


def test_a_run_that_ended_is_left_to_its_own_check(tmp_path):
    server = run_that_leaves_a_server(tmp_path, "close_watcher(watcher)")
    process = psutil.Process(server)
    try:
        assert psutil.wait_procs([process], timeout=1)[1] == [process]
    finally:
        stop([process])
