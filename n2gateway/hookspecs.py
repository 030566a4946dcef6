"""The plugin contract: every hook a plugin (built-in or third-party) may implement.

A plugin is a module or object with ``@hookimpl`` functions, found through the
``n2gateway`` entry-point group (or ``--plugin module.path``). Built-in plugins
(Pancake, TPOS, chat sync) use this same contract and nothing else.

Order of calls at start-up:

1. ``n2gateway_migrations`` while the gateway is being assembled;
2. ``n2gateway_configure`` once, with the plugin context;
3. ``n2gateway_routes`` to add HTTP routes (served from the first request on);
4. ``n2gateway_services`` once the database is reachable and migrated;
5. ``n2gateway_status`` whenever ``/health`` or a status page is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pluggy
from twisted.application.service import IService

if TYPE_CHECKING:
    from n2gateway.context import PluginContext
    from n2gateway.http.routes import Routes

PROJECT = "n2gateway"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def n2gateway_migrations(register: Callable[[Path], None]) -> None:
    """Contribute a folder of ``NNNN_name.sql`` migrations.

    Call ``register(folder)``; the folder's files are applied in order, each exactly
    once, recorded under the plugin's name. Core migrations run before any plugin's.
    """


@hookspec
def n2gateway_configure(context: PluginContext) -> None:
    """Receive the plugin context (settings, database, publish, reactor) at start-up.

    Called once, before routes and services, while the database may still be down:
    keep references here, do not query.
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

    Services start in registration order and stop in reverse order before the
    database closes.
    """


@hookspec
def n2gateway_status(context: PluginContext) -> dict[str, Any] | None:
    """Return this plugin's state for ``/health`` (JSON-able, never a secret).

    It is shown under the plugin's name; only the database decides the health code,
    so a provider waiting for a login does not make a load balancer restart us.
    """
