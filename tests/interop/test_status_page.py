"""The status page in a real browser (headless Chromium) against a running gateway."""

from __future__ import annotations

import json
import subprocess

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from tests.fakes.pancake import FakePancake
from tests.support.gateway import ROOT, GatewayProcess, sleep

ADMIN = "status-page-admin-token"


@pytest_twisted.ensureDeferred
async def test_status_page_shows_providers_traffic_and_live_events(
        database_url, tmp_path, artifacts_dir) -> None:
    fake = FakePancake(reactor)
    fake.listen()
    gateway = GatewayProcess(tmp_path, "--admin-token", ADMIN, "--disable-plugin", "chat,tpos",
                             "--pancake-url", fake.url(), database_url=database_url).start()
    try:
        # Held once the leadership's first check hands Pancake to this gateway.
        while not (await gateway.wait_healthy())["plugins"]["pancake"]["held"]:
            await sleep(0.2)
        screenshot = artifacts_dir / "status-page.png"
        start = json.dumps({"token": "status-page-token", "userId": "42", "pageIds": ["101"]})
        # The fake upstream runs on this reactor: the browser script runs in a thread.
        done = await deferToThread(
            subprocess.run,
            ["node", "tests/interop/status_page.mjs", gateway.url, ADMIN, str(screenshot),
             "pancake", "/api/realtime/start", start],
            cwd=ROOT, capture_output=True, text=True, timeout=90)
    finally:
        gateway.ensure_stopped()
        await fake.close()
    assert done.returncode == 0, done.stderr
    verdict = json.loads(done.stdout)
    assert "failure" not in verdict, verdict
    assert verdict["steps"][-1] == "event recent"
    assert verdict["errors"] == []
    assert "[redacted]" in verdict["recentText"]
    assert "hunter2-do-not-show" not in verdict["recentText"]
    # Nowhere on the page, the "try it" panel's live events included.
    assert "hunter2-do-not-show" not in verdict["pageText"]
    assert screenshot.stat().st_size > 10_000
