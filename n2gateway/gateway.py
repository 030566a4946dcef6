"""The gateway as one Twisted service: HTTP first, then the database, then the plugins.

Start-up order: listen on the HTTP port (``/health`` answers ``degraded`` at once),
start the embedded PostgreSQL when no URL is configured, wait for the database with
backoff, apply migrations, open the shared LISTEN connection, then start the plugins'
services. Stopping runs the same steps backwards and waits for each.
"""

from __future__ import annotations

import signal
from typing import Any, Callable, Sequence

import pluggy
from twisted.application import service
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger

from n2gateway import __version__
from n2gateway.config import Settings
from n2gateway.context import PluginContext
from n2gateway.db import Database, DatabaseUnavailable, retry_delay
from n2gateway.db.embedded import EmbeddedKeeper, EmbeddedPostgres
from n2gateway.db.listen import Listener
from n2gateway.db.migrations import apply_migrations
from n2gateway.downstream.auth import Authenticator
from n2gateway.downstream.close_codes import CLOSE_GOING_AWAY
from n2gateway.downstream.jsonws import JsonSocketFactory
from n2gateway.downstream.engineio_polling import PollingSweeper, PollingTransport
from n2gateway.downstream.engineio_store import CHANNEL as POLLING_CHANNEL
from n2gateway.downstream.engineio_store import PollingStore
from n2gateway.downstream.engineio_websocket import MAX_PAYLOAD, SocketIoFactory
from n2gateway.downstream.socketio import SocketIoResource
from n2gateway.downstream.socketio_namespace import SocketIoServer
from n2gateway.downstream.socketio_sessions import SessionKeeper, SessionStore
from n2gateway.http.health import add_health_route
from n2gateway.http.hub_routes import add_hub_routes
from n2gateway.hub import Hub
from n2gateway.http.routes import Routes
from n2gateway.http.site import GatewaySite
from n2gateway.journal import DOORBELL, Event, PostgresJournal, RetentionService
from n2gateway.http.metrics import add_metrics_route
from n2gateway.http.openapi import add_openapi_route
from n2gateway.http.status_page import add_status_page_routes
from n2gateway.pause import Pause
from n2gateway.plugins import call_each, migration_folders, plugin_names, with_plugin_defaults
from n2gateway.leadership import Leadership, new_node_id
from n2gateway.http.operations import DatabaseProbe, Operations



class Gateway(service.MultiService):
    log = Logger()

    def __init__(self, settings: Settings, pm: pluggy.PluginManager, reactor: Any,
                 on_ready: Callable[[], None] = lambda: None) -> None:
        """``on_ready`` runs once start-up is over: the process's garbage collector
        settings (`n2gateway.collector`) when twistd runs the gateway, nothing in a
        test's process."""
        super().__init__()
        self.on_ready = on_ready
        self.settings = settings = with_plugin_defaults(settings, pm)
        self.pm = pm
        self.reactor = reactor
        self.db = Database(reactor)
        self.embedded = None if settings.database_url else EmbeddedPostgres(reactor, settings.data_dir)
        self.node_id = settings.node_id or new_node_id()
        self.journal = PostgresJournal(self.db, reactor, node=self.node_id)
        self.listener = Listener(self.db, reactor)
        self.hub = Hub(self.journal, reactor, poll_interval=settings.poll_interval,
                       max_subscriptions=settings.max_subscriptions)
        self.listener.subscribe(DOORBELL, self._on_doorbell, on_recovered=self.hub.wake)
        self.authenticator = Authenticator(settings.jwt_secret, reactor.seconds)
        server = SocketIoServer(self.hub, self.authenticator,
                                SessionStore(self.db, ttl=settings.recovery_ttl))
        polling_store = PollingStore(self.db, reactor, self.node_id)
        socketio = SocketIoFactory(server, polling_store, reactor)
        polling = PollingTransport(server, polling_store, reactor,
                                   ping_interval=socketio.ping_interval,
                                   ping_timeout=socketio.ping_timeout, max_payload=MAX_PAYLOAD)
        self.listener.subscribe(POLLING_CHANNEL, polling.on_notify)
        #: Served before Klein's routing (see `GatewaySite`).
        self.direct_resources = {"/socket.io/": SocketIoResource(socketio, polling,
                                                                 settings.cors_origins)}
        self.endpoints = {"ws": JsonSocketFactory(self.hub, self.authenticator, reactor),
                          "socket.io": socketio}
        self.leadership = Leadership(self.db, self.listener, reactor, self.node_id)
        # Started in this order after migrations, stopped in reverse after the plugins.
        self.core_services = service.MultiService()
        self.retention = RetentionService(self.journal, reactor, settings.retention,
                                          settings.retention_rows)
        if self.embedded is not None:
            EmbeddedKeeper(self.embedded, reactor, self.db.configure).setServiceParent(
                self.core_services)
        for core in (self.listener, self.leadership, self.hub,
                     SessionKeeper(server.sessions, socketio.live_pids.keys, reactor),
                     PollingSweeper(polling_store, reactor, interval=socketio.ping_timeout / 4,
                                    recovery_ttl=settings.recovery_ttl),
                     self.retention):
            core.setServiceParent(self.core_services)
        self.journal.on_appended = self._on_appended
        self.context = PluginContext(settings=settings, reactor=reactor, db=self.db,
                                     publish=self.journal.append, journal=self.journal,
                                     listener=self.listener, leadership=self.leadership)
        self.routes = Routes(admin_token=settings.admin_token)
        self.plugin_services = service.MultiService()
        self._port = None
        self._bring_up: defer.Deferred | None = None
        self._stopping = False
        self._pause = Pause(reactor)
        self.operations = Operations(
            settings=settings, reactor=reactor, hub=self.hub, journal=self.journal, db=self.db,
            listener=self.listener, leadership=self.leadership, endpoints=self.endpoints,
            database=DatabaseProbe(self.db, settings.database_kind),
            plugin_answers=lambda: call_each(pm, "n2gateway_status", context=self.context))

        add_health_route(self.routes, self.operations)
        add_hub_routes(self.routes, self.operations)
        add_openapi_route(self.routes)
        add_metrics_route(self.routes, self.operations)
        add_status_page_routes(self.routes, self.journal)
        self.routes.mount("/ws", self.endpoints["ws"].as_resource)
        pm.hook.n2gateway_routes(context=self.context, routes=self.routes)

    def _on_appended(self, committed: Sequence[Event]) -> None:
        # After each commit: the hub sends (or reads) at once, and --retention-rows holds.
        self.hub.committed(committed)
        self.retention.appended(committed)

    def _on_doorbell(self, node: str) -> None:
        # Our own appends woke the hub when they committed.
        if node != self.node_id:
            self.hub.wake()

    # -- lifecycle -------------------------------------------------------------------

    def privilegedStartService(self) -> None:
        # Listening here, before the reactor runs, turns "port in use" into one line
        # and a non-zero exit instead of a gateway that runs without its port.
        site = GatewaySite(self.routes.app.resource(), reactor=self.reactor,
                           direct=self.direct_resources)
        self.operations.site = site
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
        # cancelled (the driver raises from cancel()) and initdb runs in a thread. Each
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
                self.operations.database.lost_during_start(str(e))
                self.log.warn("database lost during migrations ({reason}); waiting for it",
                              reason=str(e))
        if self._stopping:
            return
        self.core_services.setServiceParent(self)
        self.pm.hook.n2gateway_services(context=self.context, register=self._add_plugin_service)
        self.pm.hook.n2gateway_sources(context=self.context, register=self.leadership.claim)
        self.plugin_services.setServiceParent(self)
        self.operations.ready = True
        self.on_ready()
        self.log.info("gateway ready")

    def _add_plugin_service(self, svc: service.IService) -> None:
        svc.setServiceParent(self.plugin_services)

    async def _wait_for_database(self) -> None:
        attempt = 0
        while not self._stopping:
            try:
                await self.db.ping(timeout=5.0)
            except DatabaseUnavailable as e:
                self.operations.database.unreachable(str(e))
                delay = retry_delay(attempt)
                self.log.warn("database unreachable ({reason}); retrying in {delay:.1f} s",
                              reason=str(e), delay=delay)
                if not await self._pause(delay):
                    return  # stopping
                attempt += 1
                continue
            self.operations.database.reached()
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
