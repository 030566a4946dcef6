"""Run ``twistd -n n2gateway`` as a real subprocess, without blocking the reactor.

Tests that restart or kill the gateway use this; waiting is done with the real
reactor (the in-process fakes of upstream servers must keep running meanwhile).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
TWISTD = Path(sys.executable).with_name("twistd")
# The built-in source plugins. Tests of the core run without them: their own events
# (chat's users:updated after catch-up, a provider's claim) would shift what is counted.
SOURCE_PLUGINS = ("chat", "pancake", "tpos")
WITHOUT_SOURCES = ("--disable-plugin", ",".join(SOURCE_PLUGINS))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> int:
    """A process's resident memory, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class GatewayProcess:
    """One gateway subprocess; its log goes to ``log_path`` for later assertions."""

    def __init__(self, tmp_path: Path, *args: str, env: dict[str, str] | None = None,
                 port: int | None = None, database_url: str | None = None,
                 twistd: list[str] | None = None, cwd: Path = ROOT) -> None:
        #: How to run twistd: another virtualenv's interpreter, for instance.
        self.twistd = twistd or [str(TWISTD)]
        self.cwd = cwd
        self.port = port or free_port()
        self.data_dir = tmp_path / "data"
        self.log_path = tmp_path / f"gateway-{self.port}.log"
        self.admin_token = args[args.index("--admin-token") + 1] if "--admin-token" in args else None
        self.args = ["--http", f"tcp:{self.port}:interface=127.0.0.1",
                     "--data-dir", str(self.data_dir), *args]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("N2GATEWAY_")}
        self.env.pop("DATABASE_URL", None)
        if database_url:
            self.env["DATABASE_URL"] = database_url
        self.env.update(env or {})
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "GatewayProcess":
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*self.twistd, "--pidfile=", "-n", "n2gateway", *self.args],
            cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def health(self) -> tuple[int, dict] | None:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")
        except OSError:
            return None

    def _running(self) -> bool:
        """True while the process runs; a test waiting on it fails once it exits."""
        if self.process.poll() is not None:
            raise AssertionError(f"gateway exited with {self.process.returncode}:\n{self.log_text()}")
        return True

    async def wait_healthy(self, timeout: float = 60.0) -> dict:
        def healthy() -> dict | None:
            answer = self._running() and self.health()
            return answer[1] if answer and answer[0] == 200 else None

        return await eventually(healthy, timeout, lambda: f"healthy:\n{self.log_text()}", 0.2)

    async def wait_for_log(self, text: str, count: int = 1, timeout: float = 30.0) -> str:
        """Wait until ``text`` is in the log ``count`` times; return the log."""
        def logged() -> str | None:
            log = self.log_text()
            if log.count(text) >= count:
                return log
            self._running()
            return None

        return await eventually(logged, timeout,
                                lambda: f"{text!r} logged {count} times:\n{self.log_text()}", 0.1)

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Healthy, the hub following the journal and every provider held by this node.

        ``admin_token`` is needed for the hub's status route when one is set.
        """
        import urllib.request

        await self.wait_healthy(timeout)

        def ready() -> bool:
            _, health = self.health()
            request = urllib.request.Request(self.url + "/api/hub/status", headers=(
                {"Authorization": f"Bearer {self.admin_token}"} if self.admin_token else {}))
            with urllib.request.urlopen(request, timeout=2) as answer:
                hub = json.loads(answer.read())
            plugins = health.get("plugins", {}).values()
            return hub["ready"] and all(p.get("held", True) for p in plugins if isinstance(p, dict))

        await eventually(ready, timeout, lambda: f"ready:\n{self.log_text()}", 0.1)

    async def wait_plugin(self, plugin: str, timeout: float = 60.0, **wanted: Any) -> dict:
        """``plugin``'s status in /health once it has every ``wanted`` field (by default
        ``held=True``: the leadership, after its grace period, gave this gateway the
        plugin's source)."""
        wanted = wanted or {"held": True}
        status: dict = {}

        async def reached() -> dict | None:
            nonlocal status
            status = (await self.wait_healthy())["plugins"].get(plugin, {})
            return status if all(status.get(k) == v for k, v in wanted.items()) else None

        return await eventually(reached, timeout, lambda: (
            f"{plugin} with {wanted}: {status}\n{self.log_text()}"), 0.1)

    async def wait_exit(self, timeout: float = 30.0) -> int:
        try:
            await eventually(lambda: self.process.poll() is not None, timeout,
                             lambda: f"the gateway to exit:\n{self.log_text()}", 0.1)
        except AssertionError:
            self.process.kill()
            raise
        return self.process.returncode

    async def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return await self.wait_exit()

    async def kill(self) -> None:
        self.process.kill()
        await self.wait_exit()

    def run_to_exit(self, timeout: float = 60.0) -> subprocess.CompletedProcess:
        """Run to completion (for start-up failures): returns its exit code and output."""
        return subprocess.run(
            [*self.twistd, "--pidfile=", "-n", "n2gateway", *self.args], cwd=self.cwd,
            env=self.env, capture_output=True, text=True, timeout=timeout)

    def ensure_stopped(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
