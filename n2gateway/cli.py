"""``n2gateway``: the operator's command line.

``n2gateway token`` mints a downstream token, ``n2gateway migrate`` applies every
migration (core and plugins) and exits, ``n2gateway check`` verifies the
configuration and that the database answers. ``migrate`` and ``check`` take the
same options and environment variables as ``twistd n2gateway``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.internet import defer, task
from twisted.python import usage

from n2gateway.config import parse_duration
from n2gateway.db import Database, DatabaseUnavailable
from n2gateway.db.embedded import EmbeddedPostgres
from n2gateway.db.migrations import MigrationError, apply_migrations
from n2gateway.downstream.auth import issue_token
from n2gateway.plugins import migration_folders
from n2gateway.tap import Options as GatewayOptions


class TokenOptions(usage.Options):
    synopsis = "--sub ID [--rooms staff,page:*] [--ttl 1h]"
    optParameters = [
        ["sub", None, None, "Who the token names (the client's user id)."],
        ["rooms", None, "", "Comma list of rooms it may join; a trailing * is a prefix."],
        ["ttl", None, "1h", "How long it is valid (90s, 30m, 24h, 7d)."],
        ["jwt-secret", None, None, "HS256 secret [N2GATEWAY_JWT_SECRET]."],
    ]

    def postOptions(self) -> None:
        if not self["sub"]:
            raise usage.UsageError("--sub is required")
        self["jwt-secret"] = self["jwt-secret"] or os.environ.get("N2GATEWAY_JWT_SECRET")
        if not self["jwt-secret"]:
            raise usage.UsageError("no --jwt-secret (or N2GATEWAY_JWT_SECRET) to sign with")
        self["ttl"] = parse_duration("ttl", self["ttl"])


class CommandOptions(usage.Options):
    synopsis = "n2gateway token|migrate|check [options]"
    subCommands = [
        ["token", None, TokenOptions, "Print a downstream client token."],
        ["migrate", None, GatewayOptions, "Apply database migrations (core and plugins) and exit."],
        ["check", None, GatewayOptions, "Check the configuration and the database; exit 0 or 1."],
    ]

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("name a command: token, migrate or check")


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def migrate(reactor: Any, options: GatewayOptions) -> None:
    settings = options.settings
    embedded = None if settings.database_url else EmbeddedPostgres(reactor, settings.data_dir)
    db = Database(reactor)
    try:
        db.configure(settings.database_url or await embedded.start())
        applied = await apply_migrations(db, migration_folders(options.plugin_manager))
    except (DatabaseUnavailable, MigrationError) as e:
        say(f"migrations: failed: {e}")
        raise SystemExit(1) from None
    finally:
        db.close()
        if embedded is not None:
            await embedded.stop()
    say(f"migrations: applied {len(applied)}" + (f" ({', '.join(applied)})" if applied else
                                                 ", the database was up to date"))


async def check(reactor: Any, options: GatewayOptions) -> None:
    settings = options.settings
    say("configuration: ok")
    if not settings.database_url:
        say(f"database: {settings.describe_database()} (started by the gateway; not checked)")
        return
    db = Database(reactor)
    db.configure(settings.database_url)
    try:
        await db.ping(timeout=5.0)
    except DatabaseUnavailable as e:
        say(f"database: unreachable ({settings.describe_database()}): {e}")
        raise SystemExit(1) from None
    finally:
        db.close()
    say(f"database: ok ({settings.describe_database()})")


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
    run = migrate if command == "migrate" else check
    task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor, sub)))
