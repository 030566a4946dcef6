"""The status page in a real browser (headless Chromium) against a running gateway."""

from __future__ import annotations

import json
import subprocess
import time

import jwt

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from tests.fakes.pancake import FakePancake
from tests.support.gateway import ROOT, GatewayProcess

ADMIN = "status-page-admin-token"


@pytest_twisted.ensureDeferred
async def test_status_page_shows_providers_traffic_and_live_events(
        database_url, tmp_path, artifacts_dir) -> None:
    fake = FakePancake(reactor)
    fake.listen()

    def node(name: str) -> GatewayProcess:
        (tmp_path / name).mkdir()
        return GatewayProcess(tmp_path / name, "--admin-token", ADMIN, "--disable-plugin",
                              "chat,tpos", "--node-id", name, "--pancake-url", fake.url(),
                              database_url=database_url)

    gateway, other = node("node-a"), node("node-b")
    gateway.start()
    try:
        # Held once the leadership's first check hands Pancake to this gateway.
        await gateway.wait_plugin("pancake")
        other.start()  # a second gateway on the database: its page shows who holds Pancake
        await other.wait_healthy()
        screenshot = artifacts_dir / "status-page.png"
        # A Pancake JWT with 2.5 days left: the page warns about it.
        token = jwt.encode({"sub": "42", "exp": int(time.time() + 2.5 * 86400)},
                           "status-page-signing-key-0123456789", algorithm="HS256")
        start = json.dumps({"token": token, "userId": "42", "pageIds": ["101"]})
        # The fake upstream runs on this reactor: the browser script runs in a thread.
        done = await deferToThread(
            subprocess.run,
            ["node", "tests/interop/status_page.mjs", gateway.url, ADMIN, str(screenshot),
             "pancake", "/api/realtime/start", start, other.url],
            cwd=ROOT, capture_output=True, text=True, timeout=90)
    finally:
        gateway.ensure_stopped()
        other.ensure_stopped()
        await fake.close()
    assert done.returncode == 0, done.stderr
    verdict = json.loads(done.stdout)
    assert "failure" not in verdict, verdict
    assert verdict["steps"][-1] == "held elsewhere"
    assert "held by node-a" in verdict["elsewhereText"]
    assert "expires in 2.5 days" in verdict["providerText"]
    assert token not in verdict["pageText"]
    assert verdict["errors"] == []
    assert "[redacted]" in verdict["recentText"]
    assert "hunter2-do-not-show" not in verdict["recentText"]
    # Nowhere on the page, the "try it" panel's live events included.
    assert "hunter2-do-not-show" not in verdict["pageText"]
    assert screenshot.stat().st_size > 10_000
