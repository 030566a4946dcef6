"""The two service hooks as hookspecs.py documents them, on gateways sharing one
database: ``n2gateway_services`` run on every gateway and stop while the database is
still open; a ``n2gateway_sources`` source runs on one gateway, then on the other."""

from __future__ import annotations

import pytest_twisted
from twisted.application.service import Service
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from n2gateway.config import Settings
from n2gateway.gateway import Gateway
from n2gateway.hookspecs import hookimpl
from n2gateway.plugins import load_plugins
from tests.support.waiting import eventually


class Recorder(Service):
    def __init__(self, name: str, db, log: list[str]) -> None:
        self.name, self._db, self._log = name, db, log

    def startService(self) -> None:
        super().startService()
        self._log.append(f"{self.name} started")

    async def _stopped(self) -> None:
        # Still able to query: plugin services stop before the database closes.
        rows = await self._db.query("SELECT 1")
        self._log.append(f"{self.name} stopped, query gave {rows[0][0]}")

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return Deferred.fromCoroutine(self._stopped())


class Plugin:
    def __init__(self, node: str, log: list[str]) -> None:
        self._node, self._log = node, log

    @hookimpl
    def n2gateway_services(self, context, register):
        register(Recorder(f"{self._node} service", context.db, self._log))

    @hookimpl
    def n2gateway_sources(self, context, register):
        register("the-source", lambda: Recorder(f"{self._node} source", context.db, self._log))


def gateway(node: str, database_url: str, tmp_path, log: list[str]) -> Gateway:
    pm = load_plugins(disabled=("chat", "pancake", "tpos"))
    pm.register(Plugin(node, log), name="recorder")
    settings = Settings(http="tcp:0:interface=127.0.0.1", database_url=database_url,
                        data_dir=tmp_path / node, node_id=node)
    made = Gateway(settings, pm, reactor)
    made.privilegedStartService()
    made.startService()
    return made


@pytest_twisted.ensureDeferred
async def test_services_run_everywhere_and_a_source_on_one_gateway_at_a_time(
        database_url, tmp_path) -> None:
    log: list[str] = []
    a = gateway("a", database_url, tmp_path, log)
    await eventually(lambda: "a source started" in log, 30, "a to hold the source")
    b = gateway("b", database_url, tmp_path, log)
    try:
        await eventually(lambda: "b service started" in log, 30, "b's service")
        assert "a service started" in log and "b source started" not in log
        await a.stopService()
        assert log.index("a source stopped, query gave 1") < log.index(
            "a service stopped, query gave 1")
        await eventually(lambda: "b source started" in log, 30, "b to take the source over")
    finally:
        await b.stopService()
    assert log.count("b service stopped, query gave 1") == 1
