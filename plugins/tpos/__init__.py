"""
The TPOS plugin: one Socket.IO session per gateway for the shop's TPOS room,
started from its stored credentials at start-up and by
C{POST /api/realtime/tpos/start}; order and invoice events go to rooms C{tpos}
and C{tpos:<room>} under the names of SPEC §9.
"""

from __future__ import annotations

from n2gateway.context import PluginContext
from n2gateway.credentials import CredentialStore
from n2gateway.provider_plugin import ProviderPlugin

from .api import START_BODY, STATUS_PROPERTIES, credentials_from_body
from .provider import TposProvider
from .relay import TposRelay


def _provider(context: PluginContext, store: CredentialStore) -> TposProvider:
    return TposProvider(store, context.reactor, url=context.settings.tpos_url,
                        on_event=TposRelay(context.publish))


plugin = ProviderPlugin(_provider, prefix="/api/realtime/tpos", start_body=START_BODY,
                        credentials_from_body=credentials_from_body,
                        status_properties=STATUS_PROPERTIES)
n2gateway_routes = plugin.n2gateway_routes
n2gateway_services = plugin.n2gateway_services
n2gateway_status = plugin.n2gateway_status
