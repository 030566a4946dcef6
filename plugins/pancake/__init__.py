"""
The Pancake plugin: one Phoenix session per gateway for the shop's Pancake
account, started from its stored credentials at start-up and by
``POST /api/realtime/start``; every Pancake event goes to room ``pancake`` and to
the rooms of the pages it names.
"""

from __future__ import annotations

from typing import Callable

from n2gateway.context import PluginContext
from n2gateway.credentials import CredentialStore
from n2gateway.hookspecs import hookimpl
from n2gateway.plugin_options import PluginOption, duration, url
from n2gateway.provider_plugin import ProviderPlugin

from .api import START_BODY, STATUS_PROPERTIES, credentials_from_body
from .provider import PancakeProvider
from .relay import PancakeRelay
from .session import PAGE_RETRY, PANCAKE_URL, page_retry_backoff


@hookimpl
def n2gateway_options(register: Callable[[PluginOption], None]) -> None:
    register(PluginOption("url", "Pancake WebSocket URL.", PANCAKE_URL, url("ws", "wss")))
    register(PluginOption(
        "page-retry", "Seconds (or 5m) before a refused page is asked again; doubles after "
        "each refusal, up to an hour.", f"{PAGE_RETRY:g}", duration))


def _provider(context: PluginContext, store: CredentialStore) -> PancakeProvider:
    options = context.settings.plugin_options
    return PancakeProvider(store, context.reactor, url=options["pancake-url"],
                           on_event=PancakeRelay(context.publish),
                           page_backoff=page_retry_backoff(options["pancake-page-retry"]))


plugin = ProviderPlugin(_provider, prefix="/api/realtime", start_body=START_BODY,
                        credentials_from_body=credentials_from_body,
                        status_properties=STATUS_PROPERTIES)
n2gateway_routes = plugin.n2gateway_routes
n2gateway_sources = plugin.n2gateway_sources
n2gateway_status = plugin.n2gateway_status
