"""The gateway's settings: one frozen object built from command-line options and
environment variables (an option wins over its variable), validated once at start-up.

Every option of SPEC §9 is here; a bad value is a ``usage.UsageError`` with a one-line
message, so ``twistd n2gateway`` prints it and exits instead of showing a traceback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import urlsplit

from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IReactorCore
from twisted.python import usage

from n2gateway.plugin_options import (DeclaredOption, duration, parse_plugin_options, pick,
                                      positive_int)


@dataclass(frozen=True)
class Option:
    """One setting: its command-line name, its environment variable and its help."""

    name: str
    env: str
    help: str
    default: str | None = None


# The configuration table of the README is this tuple; keep them in step.
OPTIONS: tuple[Option, ...] = (
    Option("http", "N2GATEWAY_HTTP",
           "Endpoint for HTTP and WebSocket (default tcp:$PORT when PORT is set, else tcp:8080)."),
    Option("database-url", "DATABASE_URL",
           "PostgreSQL URL; unset runs an embedded PostgreSQL in the data dir."),
    Option("data-dir", "N2GATEWAY_DATA_DIR", "Directory for local state.", "./.n2gateway"),
    Option("admin-token", "N2GATEWAY_ADMIN_TOKEN",
           "Bearer token (at least 16 bytes) required by /api/... routes; unset leaves them "
           "open (warned at start)."),
    Option("jwt-secret", "N2GATEWAY_JWT_SECRET",
           "HS256 secret (at least 16 bytes) for downstream client tokens; unset is "
           "development mode (warned)."),
    Option("credentials-key", "N2GATEWAY_CREDENTIALS_KEY",
           "Fernet key: upstream tokens are encrypted at rest when set."),
    Option("token-warning", "N2GATEWAY_TOKEN_WARNING",
           "Warn (status page, a log line a day) when an upstream token expires within this.",
           "7d"),
    Option("disable-plugin", "N2GATEWAY_DISABLE_PLUGINS",
           "Comma list of plugin names not to load (e.g. tpos,chat)."),
    Option("retention", "N2GATEWAY_RETENTION",
           "How long the journal keeps events for resuming clients (e.g. 90s, 30m, 24h).", "24h"),
    Option("retention-rows", "N2GATEWAY_RETENTION_ROWS",
           "At most this many events are kept in the journal.", "1000000"),
    Option("log-format", "N2GATEWAY_LOG_FORMAT",
           "text (twistd's own) or json: one JSON object per line, secrets redacted.", "text"),
    Option("node-id", "N2GATEWAY_NODE_ID",
           "This gateway's name among several on one database (default: random per start)."),
    Option("poll-interval", "N2GATEWAY_POLL_INTERVAL",
           "Seconds between journal polls, the bound on delivery delay when a NOTIFY is lost.",
           "1"),
    Option("recovery-ttl", "N2GATEWAY_RECOVERY_TTL",
           "How long a Socket.IO client may be away and still recover its rooms and missed "
           "events (e.g. 2m).", "2m"),
    Option("cors-origins", "N2GATEWAY_CORS_ORIGINS",
           "Comma list of browser origins (https://app.example) allowed to use Socket.IO "
           "long-polling from other sites; unset allows the same origin only."),
    Option("max-subscriptions", "N2GATEWAY_MAX_SUBSCRIPTIONS",
           "Rooms one downstream connection may be in at once, its own user: room included; "
           "a subscribe past it is refused.", "1000"),
)


@dataclass(frozen=True)
class Settings:
    http: str = "tcp:8080"
    database_url: str | None = None
    data_dir: Path = Path(".n2gateway")
    admin_token: str | None = None
    jwt_secret: str | None = None
    credentials_key: str | None = None
    token_warning: float = 7 * 86400.0
    plugins: tuple[str, ...] = ()
    disabled_plugins: tuple[str, ...] = ()
    retention: float = 86400.0
    retention_rows: int = 1_000_000
    poll_interval: float = 1.0
    recovery_ttl: float = 120.0
    cors_origins: tuple[str, ...] = ()
    max_subscriptions: int = 1000
    log_format: str = "text"
    node_id: str | None = None
    #: The plugins' declared options (``n2gateway_options``), parsed, by full name
    #: (``pancake-url``); the gateway fills in the defaults of any it lacks.
    plugin_options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def database_kind(self) -> str:
        return "external" if self.database_url else "embedded"

    def describe_database(self) -> str:
        """The database for the start-up banner: host and name, never a password."""
        if not self.database_url:
            return f"embedded PostgreSQL in {self.data_dir / 'pgdata'}"
        parts = urlsplit(self.database_url)
        return f"PostgreSQL at {parts.hostname or 'local socket'}:{parts.port or 5432}{parts.path}"


def comma_list(value: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in (value or "").split(",") if item.strip())


def build_settings(
    options: Mapping[str, Any], environ: Mapping[str, str], reactor: IReactorCore,
    declared: Sequence[DeclaredOption] = (),
) -> Settings:
    """Merge options over environment, validate, and freeze; ``declared`` are the
    loaded plugins' options.

    ``reactor`` is only used to parse the endpoint string; nothing listens here.
    """
    values = {option.name: pick(options, environ, option) for option in OPTIONS}

    http = values["http"] or (f"tcp:{environ['PORT']}" if environ.get("PORT") else "tcp:8080")
    try:
        serverFromString(reactor, http)
    except Exception as e:
        raise usage.UsageError(f"--http: bad endpoint {http!r}: {e}") from None

    database_url = values["database-url"]
    if database_url is not None:
        _check_database_url(database_url)

    data_dir = Path(values["data-dir"]).expanduser()
    _check_data_dir(data_dir)

    for option in OPTIONS:
        if option.name in SECRETS:
            given = options.get(option.name)
            _check_secret(option.name, environ.get(option.env) if given is None else given)

    credentials_key = values["credentials-key"]
    if credentials_key is not None:
        _check_fernet_key(credentials_key)

    if values["log-format"] not in ("text", "json"):
        raise usage.UsageError("--log-format: expected text or json")

    plugins = tuple(options.get("plugin") or ()) or comma_list(environ.get("N2GATEWAY_PLUGINS"))
    return Settings(
        http=http,
        database_url=database_url,
        data_dir=data_dir,
        admin_token=values["admin-token"],
        jwt_secret=values["jwt-secret"],
        credentials_key=credentials_key,
        token_warning=parse_duration("token-warning", values["token-warning"]),
        plugins=plugins,
        disabled_plugins=comma_list(values["disable-plugin"]),
        retention=parse_duration("retention", values["retention"]),
        retention_rows=_positive_int("retention-rows", values["retention-rows"]),
        poll_interval=parse_duration("poll-interval", values["poll-interval"]),
        recovery_ttl=parse_duration("recovery-ttl", values["recovery-ttl"]),
        cors_origins=_origins(values["cors-origins"]),
        max_subscriptions=_positive_int("max-subscriptions", values["max-subscriptions"]),
        log_format=values["log-format"],
        node_id=values["node-id"],
        plugin_options=MappingProxyType(parse_plugin_options(declared, options, environ)),
    )


def _origins(text: str | None) -> tuple[str, ...]:
    origins = comma_list(text)
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
            raise usage.UsageError(f"--cors-origins: {origin!r} is not an origin like"
                                   " https://app.example or http://localhost:3000")
    return tuple(origin.rstrip("/") for origin in origins)


#: Secrets shorter than this are refused: an empty --admin-token would open the API.
MIN_SECRET_BYTES = 16
SECRETS = ("admin-token", "jwt-secret")


def _check_secret(name: str, value: str | None) -> None:
    """A secret given (even empty: ``--admin-token ''``, ``N2GATEWAY_ADMIN_TOKEN=``) must
    be at least ``MIN_SECRET_BYTES`` long; the message never repeats it."""
    if value is not None and len(value.encode()) < MIN_SECRET_BYTES:
        raise usage.UsageError(
            f"--{name}: {'empty' if not value else 'too short'}; use at least "
            f"{MIN_SECRET_BYTES} bytes (e.g. python3 -c 'import secrets; "
            "print(secrets.token_urlsafe(32))')")


def parse_duration(name: str, text: str) -> float:
    """Seconds from ``90``, ``90s``, ``30m``, ``24h`` or ``7d``."""
    return _checked(name, duration, text)


def _positive_int(name: str, text: str) -> int:
    return _checked(name, positive_int, text)


def _checked(name: str, parse: Callable[[str], Any], text: str) -> Any:
    try:
        return parse(text)
    except ValueError as e:
        raise usage.UsageError(f"--{name}: {e}") from None


def _check_database_url(url: str) -> None:
    # Never echo the URL: it may carry a password.
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise usage.UsageError(
            "--database-url: expected postgresql://user:password@host:port/dbname")
    try:
        parts.port
    except ValueError:
        raise usage.UsageError("--database-url: the port is not a number") from None
    if not (parts.hostname or "host=" in parts.query):
        raise usage.UsageError("--database-url: no host (use host=/socket/dir for a socket)")


def _check_data_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise usage.UsageError(f"--data-dir: cannot create {path}: {e.strerror}") from None
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise usage.UsageError(f"--data-dir: {path} is not readable and writable")


def _check_fernet_key(key: str) -> None:
    from cryptography.fernet import Fernet

    try:
        Fernet(key)
    except (ValueError, TypeError):
        raise usage.UsageError(
            "--credentials-key: not a Fernet key (32 url-safe base64-encoded bytes)") from None
