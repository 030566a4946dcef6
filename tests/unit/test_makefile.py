"""What a first ``make run`` / ``make test`` says while it installs (``make -n``: the plan
of a fresh clone, nothing is run)."""

from __future__ import annotations

import subprocess

from tests.support.gateway import ROOT


def plan(target: str, tmp_path) -> list[str]:
    done = subprocess.run(["make", "-n", target, f"VENV={tmp_path / 'venv'}",
                           "NODE_MODULES=" + str(tmp_path / "node_modules" / ".package-lock.json")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.splitlines()


def announced(lines: list[str], index: int) -> bool:
    """The command at ``index`` follows an ``echo "==> ..."`` of its own step."""
    before = [line for line in lines[:index] if not line.startswith("#")]
    return bool(before) and before[-1].startswith('echo "==> ')


def test_a_first_make_run_says_each_install_step_and_shows_pips_progress(tmp_path):
    lines = plan("run", tmp_path)
    installs = [i for i, line in enumerate(lines) if " -m venv " in line or "pip install" in line]
    assert len(installs) == 3  # the venv, pip itself, the gateway with its dependencies
    assert all(announced(lines, i) for i in installs[::2])
    assert not any("--quiet" in lines[i] or " -q " in lines[i] for i in installs)
    assert announced(lines, next(i for i, line in enumerate(lines) if "twistd -n n2gateway" in line))


def test_make_test_says_before_it_installs_chromium_or_the_node_peers(tmp_path):
    lines = plan("test", tmp_path)
    apt = next(i for i, line in enumerate(lines) if "apt-get install" in line)
    assert any("apt-get" in line and "==>" in line for line in lines[apt - 3:apt])
    npm = next(i for i, line in enumerate(lines) if line.startswith("npm ci"))
    assert announced(lines, npm)
