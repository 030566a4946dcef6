"""The gateway process's garbage collector settings, applied once start-up is over."""

from __future__ import annotations

import gc

import pytest
from twisted.application import service
from twisted.internet.task import Clock

from n2gateway import tap
from n2gateway.collector import YOUNG_THRESHOLD, settle_after_start
from n2gateway.config import build_settings
from n2gateway.gateway import Gateway
from n2gateway.plugins import load_plugins
from tests.unit.test_gateway_start import URL, FlakyDatabase


@pytest.fixture
def restored_collector():
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_settling_freezes_what_start_up_left_and_spaces_out_young_collections(
        restored_collector):
    kept = [{"start-up": n} for n in range(100)]
    _, middle, oldest = gc.get_threshold()
    settle_after_start()
    assert gc.get_freeze_count() >= len(kept)
    assert gc.get_threshold() == (YOUNG_THRESHOLD, middle, oldest)


def test_cycles_made_after_settling_are_still_collected(restored_collector):
    settle_after_start()
    cycle: list = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1


def test_the_gateway_settles_its_collector_once_ready_and_not_before(tmp_path, monkeypatch):
    clock = Clock()
    settings = build_settings({"database-url": URL, "data-dir": str(tmp_path)}, {}, clock)
    settled = []
    gateway = Gateway(settings, load_plugins(), clock, lambda: settled.append(gateway.operations.ready))
    gateway.db.ping = FlakyDatabase(failures=1, reason="connection refused").ping

    async def migrations(db, folders):
        return []

    monkeypatch.setattr("n2gateway.gateway.apply_migrations", migrations)
    # The hub and the listener would connect to the database: not what this is about.
    monkeypatch.setattr(gateway, "core_services", service.MultiService())
    gateway.startService()
    assert settled == []  # still waiting for the database
    clock.advance(0.5)
    assert settled == [True]
    gateway.stopService()


def test_twistd_runs_the_gateway_with_the_collector_settled_after_start(tmp_path, monkeypatch):
    options = tap.Options()
    options.parseOptions(["--data-dir", str(tmp_path), "--database-url", URL])
    gateway = tap.makeService(options)
    assert gateway.on_ready is settle_after_start
