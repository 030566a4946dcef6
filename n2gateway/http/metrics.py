"""``GET /metrics``: Prometheus metrics, read from the gateway's own state at scrape time.

One custom collector reads the counters the hub, the endpoints, the pool, the
site and the plugins already keep, so nothing on the hot path knows about
Prometheus. Every label value comes from a bounded set: protocols, sources (see
``n2gateway.traffic``), plugin names, route templates, methods, status codes.
Never a token, a room, a user or a raw path.

Each gateway has its own registry (tests run several in one process). Like the
control API, the endpoint wants the admin token when one is set (Prometheus sends
it with ``authorization: {credentials: ...}`` in the scrape config).
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from n2gateway.db import DatabaseUnavailable
from n2gateway.http.routes import JsonRequest, RawAnswer, Routes
from n2gateway.http.operations import Operations
from n2gateway.upstream.provider import ProviderStatus


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _labelled(family: Any, values: Mapping[Any, float]) -> Any:
    """``family`` with a sample per key: its one label's value, or a tuple of them."""
    for key, value in sorted(values.items()):
        family.add_metric(list(key) if isinstance(key, tuple) else [key], value)
    return family


class GatewayCollector(Collector):
    def __init__(self, ops: Operations) -> None:
        self._ops = ops
        #: The shared journal's newest offset, read by ``refresh`` before each scrape.
        self.journal_head: int | None = None

    async def refresh(self) -> None:
        try:
            self.journal_head = await self._ops.journal.head()
        except DatabaseUnavailable:
            self.journal_head = None

    def collect(self) -> Iterator[Metric]:
        g = self._ops
        hub = g.hub
        yield _labelled(GaugeMetricFamily(
            "n2gateway_connections", "Downstream connections by protocol", labels=["protocol"]),
            g.connections_by_protocol())
        yield _gauge("n2gateway_subscriptions", "Room subscriptions of all downstream sessions",
                     sum(len(s.subscriptions) for s in hub.sessions))
        yield _gauge("n2gateway_rooms", "Rooms with at least one session", len(hub.rooms))
        yield _labelled(CounterMetricFamily(
            "n2gateway_events_published", "Events this node's hub dispatched, by source "
            "(the first room's prefix)", labels=["source"]), hub.traffic.published)
        yield _labelled(CounterMetricFamily(
            "n2gateway_events_delivered", "Event deliveries to downstream sessions, by source",
            labels=["source"]), hub.traffic.delivered)
        yield _labelled(CounterMetricFamily(
            "n2gateway_events_refused", "Events the journal could not store (NUL, NaN, too "
            "deep, refused by the database...), by source and reason",
            labels=["source", "reason"]), g.journal.refusals.refused)
        yield CounterMetricFamily("n2gateway_events_replayed",
                                  "Events replayed to resuming sessions", value=hub.replayed)
        yield _labelled(CounterMetricFamily(
            "n2gateway_slow_consumer_disconnects", "Sessions closed for not keeping up",
            labels=["protocol"]), g.slow_closed())
        yield _labelled(CounterMetricFamily(
            "n2gateway_downstream_closes", "Close frames sent to clients, by protocol and "
            "close code", labels=["protocol", "code"]),
            {(protocol, str(code)): count for protocol, by_code in g.closes().items()
             for code, count in by_code.items()})
        yield _gauge("n2gateway_hub_head", "Newest journal offset this node has dispatched",
                     hub.head)
        yield _gauge("n2gateway_journal_pending_appends",
                     "Appends waiting for the database", g.journal.pending)
        if self.journal_head is not None:
            yield _gauge("n2gateway_journal_head", "Newest offset in the shared journal",
                         self.journal_head)
            yield _gauge("n2gateway_hub_lag_events", "Journal events this node has not "
                         "dispatched yet", max(self.journal_head - hub.head, 0))
        yield from self._database(g)
        yield from self._upstreams(g.plugin_answers())
        requests = CounterMetricFamily("n2gateway_http_requests", "HTTP answers",
                                       labels=["method", "route", "status"])
        site = g.site
        for (method, route, status), count in sorted((site.answered if site else {}).items()):
            requests.add_metric([method, route, str(status)], count)
        yield requests

    @staticmethod
    def _database(g: Operations) -> Iterator[Metric]:
        yield _gauge("n2gateway_database_up", "1 while the database answers",
                     1 if g.database.up else 0)
        pool = GaugeMetricFamily("n2gateway_database_pool_connections",
                                 "Database pool connections by state", labels=["state"])
        stats = g.db.stats()
        yield _labelled(pool, {"open": stats["open"], "idle": stats["idle"],
                               "max": stats["size"]})
        yield _gauge("n2gateway_database_pool_waiting", "Callers waiting for a pool connection",
                     stats["waiting"])
        yield _gauge("n2gateway_listen_connected", "1 while the shared LISTEN connection is up",
                     1 if g.listener.connected else 0)
        yield CounterMetricFamily("n2gateway_listen_reconnects",
                                  "Times the shared LISTEN connection was re-established",
                                  value=g.listener.reconnects)

    @staticmethod
    def _upstreams(answers: Mapping[str, object]) -> Iterator[Metric]:
        # The plugins that are upstream providers answer with a ProviderStatus.
        providers = {name: s for name, s in answers.items() if isinstance(s, ProviderStatus)}
        families = (
            (GaugeMetricFamily, "n2gateway_upstream_connected", "1 while the upstream session "
             "is up", lambda s: 1 if s.session.connected else 0),
            (GaugeMetricFamily, "n2gateway_upstream_needs_login", "1 while the provider waits "
             "for a new token", lambda s: 1 if s.session.needs_login else 0),
            (GaugeMetricFamily, "n2gateway_upstream_reconnect_attempts", "Reconnect attempts "
             "since the last session", lambda s: s.session.reconnect_attempts),
        )
        for kind, name, doc, read in families:
            yield _labelled(kind(name, doc, labels=["provider"]),
                            {provider: read(s) for provider, s in providers.items()})
        yield _labelled(GaugeMetricFamily(
            "n2gateway_upstream_pages_not_joined", "Pages of the session not joined now "
            "(refused, or waiting for their retry)", labels=["provider"]),
            {provider: s.channels_not_joined for provider, s in providers.items()
             if s.channels_not_joined is not None})
        yield _labelled(GaugeMetricFamily(
            "n2gateway_upstream_token_expiry_timestamp_seconds", "When the provider's token "
            "expires (Unix time), for the providers whose token says", labels=["provider"]),
            {provider: s.expiry.expires_at for provider, s in providers.items()
             if s.expiry.expires_at is not None})


def add_metrics_route(routes: Routes, ops: Operations) -> GatewayCollector:
    registry = CollectorRegistry(auto_describe=False)
    collector = GatewayCollector(ops)
    registry.register(collector)
    ProcessCollector(registry=registry)

    async def metrics(request: JsonRequest) -> RawAnswer:
        await collector.refresh()
        return RawAnswer(generate_latest(registry), CONTENT_TYPE_LATEST)

    routes.add("GET", "/metrics", metrics, summary="Prometheus metrics",
               response={"type": "string"}, tags=("operations",), protected=True,
               content_type="text/plain")
    return collector
