"""
The hooks every upstream provider plugin has, written once: its control routes
(start, stop, status), its provider registered as a source (held on one
gateway of those sharing the database) and following stored-credential
changes made through any of them, and its status in ``/health``.

A provider plugin module builds one :class:`ProviderPlugin` and exposes its hooks::

    plugin = ProviderPlugin(build, prefix="/api/realtime/feed", ...)
    n2gateway_routes = plugin.n2gateway_routes
    n2gateway_sources = plugin.n2gateway_sources
    n2gateway_status = plugin.n2gateway_status
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.application.service import IService

from n2gateway.context import PluginContext
from n2gateway.credentials import CHANGED_CHANNEL, CredentialsChanged, CredentialStore
from n2gateway.hookspecs import hookimpl
from n2gateway.http.provider_routes import add_provider_routes
from n2gateway.http.routes import Routes
from n2gateway.upstream.provider import PerGateway, Provider, ProviderStatus


class ProviderPlugin:
    def __init__(
        self,
        build: Callable[[PluginContext, CredentialStore], Provider[Any]],
        *,
        prefix: str,
        start_body: dict[str, Any],
        credentials_from_body: Callable[[Any], Any],
        status_properties: dict[str, Any],
    ) -> None:
        """``build(context, store)`` makes the gateway's provider (once per gateway)."""

        def provider(context: PluginContext) -> Provider[Any]:
            made = build(context, CredentialStore(
                context.db, context.settings.credentials_key, node=context.leadership.node_id))
            made.token_warning = context.settings.token_warning
            return made

        self.provider = PerGateway(provider)
        self._routes = dict(prefix=prefix, start_body=start_body,
                            credentials_from_body=credentials_from_body,
                            status_properties=status_properties)

    @hookimpl
    def n2gateway_routes(self, context: PluginContext, routes: Routes) -> None:
        provider = self.provider(context)
        add_provider_routes(routes, provider,
                            owner=lambda: context.leadership.owner(provider.client_type),
                            **self._routes)

    @hookimpl
    def n2gateway_sources(self, context: PluginContext,
                          register: Callable[[str, Callable[[], IService]], None]) -> None:
        provider = self.provider(context)
        register(provider.client_type, lambda: provider)
        node = context.leadership.node_id

        def changed(payload: str) -> None:
            change = CredentialsChanged.parse(payload)
            if change and change.client_type == provider.client_type and change.node != node:
                provider.follow_stored()

        # A change missed while LISTEN was down: follow the row if it differs.
        context.listener.subscribe(CHANGED_CHANNEL, changed,
                                   lambda: provider.follow_stored(force=False))

    @hookimpl
    def n2gateway_status(self, context: PluginContext) -> ProviderStatus:
        return self.provider(context).status()
