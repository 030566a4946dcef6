"""
The TPOS plugin: one Socket.IO session per gateway for the shop's TPOS room,
started from its stored credentials at start-up and by
``POST /api/realtime/tpos/start``; order and invoice events go to rooms ``tpos``
and ``tpos:<room>`` under the names of SPEC §9. Given a username and password
(or a refresh token) it renews its tokens at ``N2GATEWAY_TPOS_TOKEN_URL``.
"""

from __future__ import annotations

from typing import Callable

from n2gateway.context import PluginContext
from n2gateway.credentials import CredentialStore
from n2gateway.hookspecs import hookimpl
from n2gateway.plugin_options import PluginOption, duration, url
from n2gateway.provider_plugin import ProviderPlugin
from n2gateway.upstream.oauth2 import TokenEndpoint

from .api import START_BODY, STATUS_PROPERTIES, credentials_from_body
from .provider import TposProvider
from .relay import TposRelay
from .session import TPOS_URL
from .tokens import TOKEN_URL, TposTokens


@hookimpl
def n2gateway_options(register: Callable[[PluginOption], None]) -> None:
    register(PluginOption("url", "TPOS Socket.IO URL.", TPOS_URL, url("ws", "wss")))
    register(PluginOption("token-url", "TPOS's OAuth2 token endpoint, for token renewal.",
                          TOKEN_URL, url("http", "https")))
    register(PluginOption("renewal-margin", "Renew a token this long before it expires (at "
                          "most half its life).", "5m", duration))
    register(PluginOption("renewal-timeout", "Give up on a token request after this long "
                          "(and retry with backoff while the token is valid).", "30s",
                          duration))


def _provider(context: PluginContext, store: CredentialStore) -> TposProvider:
    options = context.settings.plugin_options
    endpoint = TokenEndpoint(options["tpos-token-url"], context.reactor)
    provider = TposProvider(store, context.reactor, url=options["tpos-url"],
                            on_event=TposRelay(context.publish), tokens=TposTokens(endpoint))
    provider.renewal_margin = options["tpos-renewal-margin"]
    provider.renewal_timeout = options["tpos-renewal-timeout"]
    return provider


plugin = ProviderPlugin(_provider, prefix="/api/realtime/tpos", start_body=START_BODY,
                        credentials_from_body=credentials_from_body,
                        status_properties=STATUS_PROPERTIES)
n2gateway_routes = plugin.n2gateway_routes
n2gateway_sources = plugin.n2gateway_sources
n2gateway_status = plugin.n2gateway_status
