"""
The hooks every upstream provider plugin has, written once: its control routes
(start, stop, status), its provider held by the leadership on one gateway of
those sharing the database and following stored-credential changes made
through any of them, and its status in C{/health}.

A provider plugin module builds one L{ProviderPlugin} and exposes its hooks::

    plugin = ProviderPlugin(build, prefix="/api/realtime/tpos", ...)
    n2gateway_routes = plugin.n2gateway_routes
    n2gateway_services = plugin.n2gateway_services
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
from n2gateway.upstream.provider import PerGateway, Provider


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
        """C{build(context, store)} makes the gateway's provider (once per gateway)."""
        self.provider = PerGateway(lambda context: build(context, CredentialStore(
            context.db, context.settings.credentials_key, node=context.leadership.node_id)))
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
    def n2gateway_services(self, context: PluginContext,
                           register: Callable[[IService], None]) -> None:
        # Not registered as a plain service: one gateway of those sharing the
        # database holds the session, and the leadership starts and stops it there.
        provider = self.provider(context)
        context.leadership.claim(provider.client_type, lambda: provider)
        node = context.leadership.node_id

        def changed(payload: str) -> None:
            change = CredentialsChanged.parse(payload)
            if change and change.client_type == provider.client_type and change.node != node:
                provider.follow_stored()

        # A change missed while LISTEN was down: follow the row if it differs.
        context.listener.subscribe(CHANGED_CHANNEL, changed,
                                   lambda: provider.follow_stored(force=False))

    @hookimpl
    def n2gateway_status(self, context: PluginContext) -> dict[str, Any]:
        return self.provider(context).status()
