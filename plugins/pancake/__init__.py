"""
The Pancake plugin: one Phoenix session per gateway for the shop's Pancake
account, started from its stored credentials at start-up and by
C{POST /api/realtime/start}; every Pancake event goes to room C{pancake} and to
the rooms of the pages it names.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.application.service import IService

from n2gateway.context import PluginContext
from n2gateway.credentials import CredentialStore
from n2gateway.hookspecs import hookimpl
from n2gateway.http.provider_routes import add_provider_routes
from n2gateway.http.routes import Routes
from n2gateway.upstream.provider import PerGateway

from .api import START_BODY, STATUS_PROPERTIES, credentials_from_body
from .provider import CLIENT_TYPE, PancakeProvider
from .relay import PancakeRelay


def _provider(context: PluginContext) -> PancakeProvider:
    return PancakeProvider(
        CredentialStore(context.db, context.settings.credentials_key),
        context.reactor,
        url=context.settings.pancake_url,
        on_event=PancakeRelay(context.publish),
    )


provider = PerGateway(_provider)


@hookimpl
def n2gateway_routes(context: PluginContext, routes: Routes) -> None:
    add_provider_routes(routes, provider(context), prefix="/api/realtime",
                        start_body=START_BODY, credentials_from_body=credentials_from_body,
                        status_properties=STATUS_PROPERTIES)


@hookimpl
def n2gateway_services(context: PluginContext, register: Callable[[IService], None]) -> None:
    # Not registered as a plain service: one gateway of those sharing the database
    # holds the session, and the leadership starts and stops it there.
    context.leadership.claim(CLIENT_TYPE, lambda: provider(context))


@hookimpl
def n2gateway_status(context: PluginContext) -> dict[str, Any]:
    return provider(context).status()
