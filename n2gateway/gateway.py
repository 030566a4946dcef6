"""The gateway as one Twisted service: HTTP first, then the database, then the plugins.

Start-up order: listen on the HTTP port (``/health`` answers ``degraded`` at once),
start the embedded PostgreSQL when no URL is configured, wait for the database with
backoff, apply migrations, open the shared LISTEN connection, then start the plugins'
services. Stopping runs the same steps backwards and waits for each.
"""

from __future__ import annotations

import signal
from typing import Any

import pluggy
from twisted.application import service
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import deferLater
from twisted.logger import Logger

from n2gateway import __version__
from n2gateway.config import Settings
from n2gateway.context import PluginContext
from n2gateway.db import Database, DatabaseUnavailable, retry_delay
from n2gateway.db.embedded import EmbeddedPostgres
from n2gateway.db.listen import Listener
from n2gateway.db.migrations import apply_migrations
from n2gateway.downstream.auth import Authenticator
from n2gateway.downstream.connection import CLOSE_GOING_AWAY
from n2gateway.downstream.jsonws import JsonSocketFactory
from n2gateway.downstream.socketio import SocketIoFactory
from n2gateway.downstream.socketio_sessions import SessionKeeper, SessionStore
from n2gateway.http.health import add_health_route
from n2gateway.http.hub_routes import add_hub_routes
from n2gateway.hub import Hub
from n2gateway.http.routes import Routes
from n2gateway.http.site import GatewaySite
from n2gateway.journal import DOORBELL, Journal, RetentionService
from n2gateway.http.metrics import add_metrics_route
from n2gateway.http.openapi import add_openapi_route
from n2gateway.http.status_page import add_status_page_routes
from n2gateway.plugins import call_each, migration_folders, plugin_names
from n2gateway.leadership import Leadership, new_node_id



class Gateway(service.MultiService):
    log = Logger()

    def __init__(self, settings: Settings, pm: pluggy.PluginManager, reactor: Any) -> None:
        super().__init__()
        self.settings = settings
        self.pm = pm
        self.reactor = reactor
        self.db = Database(reactor)
        self.embedded = None if settings.database_url else EmbeddedPostgres(reactor, settings.data_dir)
        self.database_state = "starting"
        self.database_error: str | None = None
        self.node_id = settings.node_id or new_node_id()
        self.journal = Journal(self.db, reactor, node=self.node_id)
        self.listener = Listener(self.db, reactor)
        self.hub = Hub(self.journal, reactor, poll_interval=settings.poll_interval)
        self.journal.on_appended = self.hub.wake
        self.listener.subscribe(DOORBELL, self._on_doorbell, on_recovered=self.hub.wake)
        self.authenticator = Authenticator(settings.jwt_secret)
        socketio = SocketIoFactory(self.hub, self.authenticator,
                                   SessionStore(self.db, ttl=settings.recovery_ttl), reactor)
        self.endpoints = {"ws": JsonSocketFactory(self.hub, self.authenticator, reactor),
                          "socket.io": socketio}
        self.leadership = Leadership(self.db, self.listener, reactor, self.node_id)
        # Started in this order after migrations, stopped in reverse after the plugins.
        self.core_services = service.MultiService()
        for core in (self.listener, self.leadership, self.hub,
                     SessionKeeper(socketio.sessions, socketio.live_pids.keys, reactor),
                     RetentionService(self.journal, reactor, settings.retention,
                                      settings.retention_rows)):
            core.setServiceParent(self.core_services)
        self.context = PluginContext(settings=settings, reactor=reactor, db=self.db,
                                     publish=self.journal.append, journal=self.journal,
                                     listener=self.listener, leadership=self.leadership)
        self.routes = Routes(admin_token=settings.admin_token)
        self.plugin_services = service.MultiService()
        self._port = None
        self.site: GatewaySite | None = None
        self._bring_up: defer.Deferred | None = None
        self._stopping = False
        #: Start-up is over (migrated, services started): /health may say "ok".
        self.ready = False
        self._pause: defer.Deferred | None = None

        pm.hook.n2gateway_configure(context=self.context)
        add_health_route(self.routes, self)
        add_hub_routes(self.routes, self)
        add_openapi_route(self.routes)
        add_metrics_route(self.routes, self)
        add_status_page_routes(self.routes, self)
        self.routes.mount("/ws", self.endpoints["ws"].as_resource)
        self.routes.mount("/socket.io/", socketio.as_resource)
        pm.hook.n2gateway_routes(context=self.context, routes=self.routes)

    def _on_doorbell(self, node: str) -> None:
        # Our own appends woke the hub when they committed.
        if node != self.node_id:
            self.hub.wake()

    def connections_by_protocol(self) -> dict[str, int]:
        counts = dict.fromkeys(self.endpoints, 0)
        for session in self.hub.sessions:
            counts[session.wire.protocol_name] += 1
        return counts

    async def node_status(self) -> dict[str, Any]:
        """This node's id, the sources it owns and who owns every source."""
        status = self.leadership.status()
        try:
            status["owners"] = await self.leadership.owners()
        except DatabaseUnavailable:
            status["owners"] = None
        return status

    def plugin_status(self) -> dict[str, Any]:
        return call_each(self.pm, "n2gateway_status", context=self.context)

    # -- lifecycle -------------------------------------------------------------------

    def privilegedStartService(self) -> None:
        # Listening here, before the reactor runs, turns "port in use" into one line
        # and a non-zero exit instead of a gateway that runs without its port.
        site = self.site = GatewaySite(self.routes.app.resource())
        failures: list = []
        d = serverFromString(self.reactor, self.settings.http).listen(site)
        d.addCallbacks(lambda port: setattr(self, "_port", port), failures.append)
        if failures:
            raise SystemExit(
                f"n2gateway: cannot listen on {self.settings.http}: {failures[0].getErrorMessage()}")
        super().privilegedStartService()

    def startService(self) -> None:
        super().startService()
        self._banner()
        self._bring_up = defer.Deferred.fromCoroutine(self._start())
        self._bring_up.addErrback(self._start_failed)

    def _banner(self) -> None:
        self.log.info(
            "n2gateway {version} node {node} on {endpoint}; database: {database}; "
            "plugins: {plugins}",
            version=__version__, node=self.node_id, endpoint=self.settings.http,
            database=self.settings.describe_database(), plugins=", ".join(plugin_names(self.pm)))
        if self.settings.admin_token is None:
            self.log.warn("no --admin-token: the control API (/api/...) is open to anyone "
                          "who can reach this port")
        if self.authenticator.development:
            self.log.warn("no --jwt-secret: DEVELOPMENT MODE, downstream clients name "
                          "themselves with userId and may join any room")

    async def _start(self) -> None:
        # A stop during start-up is not a cancellation: a query in flight cannot be
        # cancelled (txpostgres raises from cancel()) and initdb runs in a thread. Each
        # step finishes, and the next one is skipped once a stop has begun.
        dsn = self.settings.database_url or await self.embedded.start()
        if self._stopping:
            return
        self.db.configure(dsn)
        while not self._stopping:
            await self._wait_for_database()
            if self._stopping:
                return
            try:
                await apply_migrations(self.db, migration_folders(self.pm))
                break
            except DatabaseUnavailable as e:
                # Each migration is its own transaction and applies once: wait, go on.
                self.database_state, self.database_error = "starting", str(e)
                self.log.warn("database lost during migrations ({reason}); waiting for it",
                              reason=str(e))
        if self._stopping:
            return
        self.core_services.setServiceParent(self)
        self.pm.hook.n2gateway_services(context=self.context, register=self._add_plugin_service)
        self.plugin_services.setServiceParent(self)
        self.ready = True
        self.log.info("gateway ready")

    def _add_plugin_service(self, svc: service.IService) -> None:
        svc.setServiceParent(self.plugin_services)

    async def _wait_for_database(self) -> None:
        attempt = 0
        while not self._stopping:
            try:
                await self.db.ping(timeout=5.0)
            except DatabaseUnavailable as e:
                self.database_error = str(e)
                delay = retry_delay(attempt)
                self.log.warn("database unreachable ({reason}); retrying in {delay:.1f} s",
                              reason=str(e), delay=delay)
                self._pause = deferLater(self.reactor, delay)
                try:
                    await self._pause
                except defer.CancelledError:
                    return  # stopping
                finally:
                    self._pause = None
                attempt += 1
                continue
            self.database_state, self.database_error = "up", None
            return

    def _start_failed(self, failure) -> None:
        if failure.check(defer.CancelledError):
            return
        self.log.failure("gateway start-up failed", failure)
        self.reactor.stop()

    async def _stop(self) -> None:
        # Drain: no new clients; hand the sources to another node at once; tell the
        # clients to reconnect (to another node, or to us after a restart).
        if self._port is not None:
            await self._port.stopListening()
        self._stopping = True
        if self._pause is not None:
            self._pause.cancel()
        if self._bring_up is not None and not self._bring_up.called:
            finished: defer.Deferred = defer.Deferred()
            self._bring_up.addBoth(lambda _: finished.callback(None))
            await finished
        await self.leadership.release()
        await self.hub.close_all(CLOSE_GOING_AWAY, "gateway stopping: reconnect and resume")
        if self.plugin_services.parent is not None:
            await self.plugin_services.disownServiceParent()
        if self.core_services.parent is not None:
            await self.core_services.disownServiceParent()
        await defer.maybeDeferred(super().stopService)
        self.journal.close()
        self.db.close()
        if self.embedded is not None:
            await self.embedded.stop()
        self.log.info("gateway stopped")
        # twistd re-raises the signal that stopped the reactor once it has shut down, so
        # even a clean stop on SIGTERM would exit "killed by signal 15" (143), which
        # supervisors report as a failure. A stop that got this far is a normal exit.
        if getattr(self.reactor, "_exitSignal", None) == signal.SIGTERM:
            self.reactor._exitSignal = None

    def stopService(self) -> defer.Deferred:
        return defer.Deferred.fromCoroutine(self._stop())
