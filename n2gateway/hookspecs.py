"""The plugin contract: every hook a plugin (built-in or third-party) may implement.

A plugin is a module or object with ``@hookimpl`` functions, found through the
``n2gateway`` entry-point group (or ``--plugin module.path``). Built-in plugins
(Pancake, TPOS, chat sync) use this same contract and nothing else. A provider
plugin's routes, sources and status hooks are written once, in
``n2gateway.provider_plugin.ProviderPlugin`` (see docs/plugins.md).

Order of calls at start-up:

1. ``n2gateway_options`` while the command line is parsed (before any other hook);
2. ``n2gateway_migrations`` while the gateway is being assembled;
3. ``n2gateway_routes`` to add HTTP routes (served from the first request on);
4. ``n2gateway_services``, then ``n2gateway_sources``, once the database is
   reachable and migrated;
5. ``n2gateway_status`` whenever ``/health`` or a status page is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pluggy
from twisted.application.service import IService

if TYPE_CHECKING:
    from n2gateway.context import PluginContext
    from n2gateway.plugin_options import PluginOption
    from n2gateway.http.routes import Routes
    from n2gateway.upstream.provider import ProviderStatus

PROJECT = "n2gateway"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def n2gateway_options(register: Callable[[PluginOption], None]) -> None:
    """Declare this plugin's options: ``register(PluginOption(name, help, default, parse))``.

    Plugin ``feed``'s option ``url`` is ``--feed-url`` and ``N2GATEWAY_FEED_URL``
    (the option wins), listed by ``--help``; ``parse`` turns the text into the value
    (``ValueError`` for a bad one: a one-line ``UsageError`` at start). Read the
    values from ``context.settings.plugin_options["feed-url"]`` (None when unset
    and without default). A name the core or another plugin has is refused.
    """


@hookspec
def n2gateway_migrations(register: Callable[[Path], None]) -> None:
    """Contribute a folder of ``NNNN_name.sql`` migrations.

    Call ``register(folder)``; the folder's files are applied in order, each exactly
    once, recorded under the plugin's name. Core migrations run before any plugin's.
    """


@hookspec
def n2gateway_routes(context: PluginContext, routes: Routes) -> None:
    """Add HTTP routes with ``routes.add(method, path, handler, ...)``.

    Paths under ``/api/`` are protected by the admin token. Handlers are
    ``async def handler(request) -> dict`` and raise ``n2gateway.http.errors.HttpError``
    for 4xx answers; the JSON encoding, body limits and error shapes are shared.
    """


@hookspec
def n2gateway_services(context: PluginContext, register: Callable[[IService], None]) -> None:
    """Register Twisted services to run once the database is reachable and migrated.

    They run on every gateway. Services start in registration order and stop in
    reverse order before the database closes.
    """


@hookspec
def n2gateway_sources(
    context: PluginContext, register: Callable[[str, Callable[[], IService]], None]
) -> None:
    """Register sources that must run on exactly one gateway of those sharing the database.

    Call ``register(name, make_service)`` once per source (an upstream provider, a
    database catch-up). The gateway holding the PostgreSQL advisory lock of
    ``name`` calls ``make_service()`` and starts the service; when that gateway
    drains or dies, another one takes the lock and starts its own. ``name`` must
    be unique among all plugins; ``/health`` lists under ``node.owners`` which
    gateway holds each.
    """


@hookspec
def n2gateway_status(context: PluginContext) -> dict[str, Any] | ProviderStatus | None:
    """Return this plugin's state for ``/health`` (JSON-able, never a secret).

    It is shown under the plugin's name; only the database decides the health code,
    so a provider waiting for a login does not make a load balancer restart us. An
    upstream provider answers with its ``n2gateway.upstream.provider.ProviderStatus``
    (``Provider.status()``, as ``ProviderPlugin`` does): ``/health`` shows its
    ``as_json()``, and ``/metrics`` reads its fields for the ``n2gateway_upstream_*``
    metrics. Any other answer is shown as it is and is no metric.
    """
