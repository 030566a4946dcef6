"""The status page in a real browser (headless Chromium) against a running gateway."""

from __future__ import annotations

import json
import subprocess

import pytest_twisted

from tests.support.gateway import ROOT, GatewayProcess

ADMIN = "status-page-admin-token"


@pytest_twisted.ensureDeferred
async def test_status_page_shows_providers_traffic_and_live_events(
        database_url, tmp_path, artifacts_dir) -> None:
    gateway = GatewayProcess(tmp_path, "--admin-token", ADMIN,
                             "--plugin", "tests.support.status_plugin",
                             database_url=database_url).start()
    try:
        await gateway.wait_healthy()
        screenshot = artifacts_dir / "status-page.png"
        done = subprocess.run(
            ["node", "tests/interop/status_page.mjs", gateway.url, ADMIN, str(screenshot)],
            cwd=ROOT, capture_output=True, text=True, timeout=90)
    finally:
        gateway.ensure_stopped()
    assert done.returncode == 0, done.stderr
    verdict = json.loads(done.stdout)
    assert "failure" not in verdict, verdict
    assert verdict["steps"][-1] == "event recent"
    assert verdict["errors"] == []
    assert "[redacted]" in verdict["recentText"]
    assert "hunter2-do-not-show" not in verdict["recentText"]
    assert screenshot.stat().st_size > 10_000
