"""``n2gateway``: the operator's command line.

``n2gateway token`` mints a downstream token, ``n2gateway migrate`` applies every
migration (core and plugins) and exits, ``n2gateway check`` verifies the
configuration and that the database answers (starting the embedded one when there
is no ``DATABASE_URL``), ``n2gateway dsn`` prints the database's URL for ``psql``.
``migrate``, ``check`` and ``dsn`` take the same options and environment variables
as ``twistd n2gateway``.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Awaitable, Callable, TypeVar

from twisted.internet import defer, task
from twisted.python import usage

from n2gateway.config import Settings, parse_duration
from n2gateway.db import Database, DatabaseUnavailable
from n2gateway.db.embedded import EmbeddedPostgres, pgdata_of, running_uri
from n2gateway.db.migrations import MigrationError, apply_migrations
from n2gateway.downstream.auth import issue_token
from n2gateway.plugins import migration_folders
from n2gateway.tap import Options as GatewayOptions


T = TypeVar("T")


class TokenOptions(usage.Options):
    synopsis = "--sub ID [--rooms staff,pancake:page:*] [--ttl 1h]"
    optParameters = [
        ["sub", None, None, "Who the token names (the client's user id)."],
        ["rooms", None, "", "Comma list of rooms it may join; a trailing * is a prefix."],
        ["ttl", None, "1h", "How long it is valid (90s, 30m, 24h, 7d)."],
        ["jwt-secret", None, None, "HS256 secret [N2GATEWAY_JWT_SECRET]."],
    ]
    opt_version = GatewayOptions.opt_version

    def postOptions(self) -> None:
        if not self["sub"]:
            raise usage.UsageError("--sub is required")
        self["jwt-secret"] = self["jwt-secret"] or os.environ.get("N2GATEWAY_JWT_SECRET")
        if not self["jwt-secret"]:
            raise usage.UsageError("no --jwt-secret (or N2GATEWAY_JWT_SECRET) to sign with")
        self["ttl"] = parse_duration("ttl", self["ttl"])


class CommandOptions(usage.Options):
    synopsis = "n2gateway token|migrate|check|dsn [options]"
    subCommands = [
        ["token", None, TokenOptions, "Print a downstream client token."],
        ["migrate", None, GatewayOptions, "Apply database migrations (core and plugins) and exit."],
        ["check", None, GatewayOptions, "Check the configuration and the database; exit 0 or 1."],
        ["dsn", None, GatewayOptions,
         "Print the database URL: DATABASE_URL, or the running embedded PostgreSQL's."],
    ]

    opt_version = GatewayOptions.opt_version

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("name a command: token, migrate, check or dsn")


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def with_database(reactor: Any, settings: Settings,
                        work: Callable[[Database], Awaitable[T]]) -> T:
    """Run ``work`` on the configured database: ``DATABASE_URL``, or the embedded
    PostgreSQL of the data dir, started (or found running) and released after.
    A failure to start the embedded server is ``DatabaseUnavailable`` too."""
    embedded = None if settings.database_url else EmbeddedPostgres(reactor, settings.data_dir)
    db = Database(reactor)
    try:
        if embedded is not None:
            try:
                db.configure(await embedded.start())
            except Exception as e:
                raise DatabaseUnavailable(f"the embedded server did not start: {e}") from e
        else:
            db.configure(settings.database_url)
        return await work(db)
    finally:
        db.close()
        if embedded is not None:
            await embedded.stop()


async def migrate(reactor: Any, options: GatewayOptions) -> None:
    folders = migration_folders(options.plugin_manager)
    try:
        applied = await with_database(reactor, options.settings,
                                      lambda db: apply_migrations(db, folders))
    except (DatabaseUnavailable, MigrationError) as e:
        say(f"migrations: failed: {e}")
        raise SystemExit(1) from None
    say(f"migrations: applied {len(applied)}" + (f" ({', '.join(applied)})" if applied else
                                                 ", the database was up to date"))


async def check(reactor: Any, options: GatewayOptions) -> None:
    settings = options.settings
    say("configuration: ok")
    try:
        await with_database(reactor, settings, lambda db: db.ping(timeout=5.0))
    except DatabaseUnavailable as e:
        say(f"database: unreachable ({settings.describe_database()}): {e}")
        raise SystemExit(1) from None
    say(f"database: ok ({settings.describe_database()})")


def dsn(settings: Settings) -> None:
    uri = settings.database_url or running_uri(settings.data_dir)
    if uri is None:
        # On stderr: psql "$(n2gateway dsn)" must not take the complaint for a URL.
        sys.stderr.write(f"n2gateway: no embedded PostgreSQL is running in "
                         f"{pgdata_of(settings.data_dir)} (start the gateway first)\n")
        raise SystemExit(1)
    say(uri)


def main(argv: list[str] | None = None) -> None:
    options = CommandOptions()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as e:
        say(f"configuration: {e}" if options.subCommand in ("migrate", "check") else f"n2gateway: {e}")
        raise SystemExit(1) from None
    command, sub = options.subCommand, options.subOptions
    if command == "token":
        rooms = [r.strip() for r in sub["rooms"].split(",") if r.strip()]
        say(issue_token(sub["jwt-secret"], sub["sub"], rooms, sub["ttl"]))
        return
    if command == "dsn":
        dsn(sub.settings)
        return
    run = migrate if command == "migrate" else check
    task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor, sub)))
