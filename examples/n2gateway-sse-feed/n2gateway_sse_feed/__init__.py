"""
An n2gateway provider plugin for a JSON-over-SSE feed: one long-lived
``GET <url>?channel=<channel>`` with ``Authorization: Bearer <token>``, each
``event:``/``data:`` block relayed as ``feed:<event>`` into rooms ``feed`` and
``feed:<channel>``. Started by ``POST /api/realtime/feed/start``
``{"token": ..., "channel": ...}``; option ``--feed-url`` (``N2GATEWAY_FEED_URL``).

The model of docs/plugins.md in the n2gateway repository: the hooks come from
:class:`ProviderPlugin`, the provider (credentials in and out) is in ``provider.py``,
the source (the upstream link) in ``sse.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from n2gateway.context import PluginContext
from n2gateway.credentials import CredentialStore
from n2gateway.hookspecs import hookimpl
from n2gateway.plugin_options import PluginOption, url
from n2gateway.provider_plugin import ProviderPlugin
from n2gateway.upstream.relay import EventRelay

from .provider import CHANNEL_PATTERN, FeedCredentials, FeedProvider

ROOM = "feed"

START_BODY = {
    "type": "object",
    "required": ["token", "channel"],
    "additionalProperties": False,
    "properties": {
        # Printable only: the token goes into an HTTP header.
        "token": {"type": "string", "minLength": 1, "maxLength": 4096,
                  "pattern": "^[^\\u0000-\\u001f\\u007f]*$"},
        "channel": {"type": "string", "pattern": CHANNEL_PATTERN},
    },
}
STATUS_PROPERTIES = {"channel": {"type": ["string", "null"]},
                     "lastEventId": {"type": ["string", "null"]}}


@hookimpl
def n2gateway_migrations(register: Callable[[Path], None]) -> None:
    register(Path(__file__).parent / "migrations")


@hookimpl
def n2gateway_options(register: Callable[[PluginOption], None]) -> None:
    register(PluginOption("url", "The feed's SSE endpoint.", "https://feed.example/events",
                          url("http", "https")))


class FeedRelay(EventRelay):
    """Every feed event into rooms ``feed`` and ``feed:<channel>``, as ``feed:<event>``."""

    def __init__(self, publish: Any) -> None:
        super().__init__("feed", publish)

    def __call__(self, channel: str, event: str, payload: Any) -> None:
        self.publish([ROOM, f"{ROOM}:{channel}"], f"feed:{event}", payload)


def _provider(context: PluginContext, store: CredentialStore) -> FeedProvider:
    return FeedProvider(store, context.reactor, url=context.settings.plugin_options["feed-url"],
                        on_event=FeedRelay(context.publish))


def _credentials(body: dict[str, Any]) -> FeedCredentials:
    return FeedCredentials(token=body["token"], channel=body["channel"])


plugin = ProviderPlugin(_provider, prefix="/api/realtime/feed", start_body=START_BODY,
                        credentials_from_body=_credentials, status_properties=STATUS_PROPERTIES)
n2gateway_routes = plugin.n2gateway_routes
n2gateway_sources = plugin.n2gateway_sources
n2gateway_status = plugin.n2gateway_status
