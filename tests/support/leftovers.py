"""Processes a test run left behind: its own children still running, and PostgreSQL
servers (daemonized by pg_ctl, so nobody's children) whose data lives in the run's
temporary folder. The run fails when there are any (see tests/conftest.py).

A run that dies without ending (a hung test's timeout exits at once, and so does a
SIGKILL) cannot look: its watcher, a process of its own, stops those left then.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil


def leftover_processes(temp_root: Path, grace: float = 5.0) -> list[psutil.Process]:
    """What still runs after ``grace`` seconds (children may be exiting right now)."""
    me = psutil.Process()
    children = {child for child in me.children(recursive=True) if not _is_watcher(child)}
    candidates = children | set(running_from(temp_root))
    _, alive = psutil.wait_procs(list(candidates), timeout=grace)
    return sorted(alive, key=lambda p: p.pid)


def running_from(temp_root: Path) -> list[psutil.Process]:
    """Processes (other than this one) whose command line names ``temp_root``."""
    root = str(temp_root)
    return [process for process in psutil.process_iter(["cmdline"])
            if process.pid != os.getpid()
            and any(arg.startswith(root) for arg in process.info["cmdline"] or [])]


def _is_watcher(process: psutil.Process) -> bool:
    try:
        return __file__ in process.cmdline()  # it ends on its own, with its run
    except psutil.Error:
        return False


GOODBYE = b"the run ended"


def watch(temp_root: Path) -> subprocess.Popen:
    """Start the watcher of this run (``close_watcher`` says goodbye to it)."""
    return subprocess.Popen([sys.executable, __file__, str(temp_root)], stdin=subprocess.PIPE,
                            start_new_session=True)  # Ctrl-C in a terminal spares it


def close_watcher(watcher: subprocess.Popen) -> None:
    try:
        watcher.stdin.write(GOODBYE)
        watcher.stdin.close()
    except BrokenPipeError:
        pass  # stopped by someone else: nothing to tell it
    watcher.wait()


def describe(process: psutil.Process) -> str:
    try:
        return f"{process.pid} {' '.join(process.cmdline())[:200]}"
    except psutil.Error:
        return f"{process.pid} (gone)"


def stop(processes: list[psutil.Process]) -> None:
    """Terminate what was left (it was this run's), then kill what resists."""
    for process in processes:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(processes, timeout=5)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass


def _watch(temp_root: Path) -> None:
    # The pipe ends when the run closes it or dies; only a run that ended says goodbye.
    if sys.stdin.buffer.read() != GOODBYE:
        stop(running_from(temp_root))


if __name__ == "__main__":
    _watch(Path(sys.argv[1]))
