"""Processes a test run left behind: its own children still running, and PostgreSQL
servers (daemonized by pg_ctl, so nobody's children) whose data lives in the run's
temporary folder. The run fails when there are any (see tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import psutil


def leftover_processes(temp_root: Path, grace: float = 5.0) -> list[psutil.Process]:
    """What still runs after ``grace`` seconds (children may be exiting right now)."""
    me = psutil.Process()
    candidates = set(me.children(recursive=True))
    root = str(temp_root)
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.pid != me.pid and any(arg.startswith(root) for arg in cmdline):
            candidates.add(process)
    _, alive = psutil.wait_procs(list(candidates), timeout=grace)
    return sorted(alive, key=lambda p: p.pid)


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
