"""
The Pancake plugin: one Phoenix session per gateway for the shop's Pancake
account, started from its stored credentials at start-up and by
C{POST /api/realtime/start}; every Pancake event goes to room C{pancake} and to
the rooms of the pages it names.
"""

from __future__ import annotations

from n2gateway.context import PluginContext
from n2gateway.credentials import CredentialStore
from n2gateway.provider_plugin import ProviderPlugin

from .api import START_BODY, STATUS_PROPERTIES, credentials_from_body
from .provider import PancakeProvider
from .relay import PancakeRelay


def _provider(context: PluginContext, store: CredentialStore) -> PancakeProvider:
    return PancakeProvider(store, context.reactor, url=context.settings.pancake_url,
                           on_event=PancakeRelay(context.publish))


plugin = ProviderPlugin(_provider, prefix="/api/realtime", start_body=START_BODY,
                        credentials_from_body=credentials_from_body,
                        status_properties=STATUS_PROPERTIES)
n2gateway_routes = plugin.n2gateway_routes
n2gateway_services = plugin.n2gateway_services
n2gateway_status = plugin.n2gateway_status
