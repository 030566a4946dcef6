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
from typing import Any, Mapping
from urllib.parse import urlsplit

from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IReactorCore
from twisted.python import usage

DEFAULT_PANCAKE_URL = "wss://pancake.vn/socket/websocket"
DEFAULT_TPOS_URL = "wss://rt-2.tpos.app/socket.io/"


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
           "Bearer token required by /api/... routes; unset leaves them open (warned at start)."),
    Option("jwt-secret", "N2GATEWAY_JWT_SECRET",
           "HS256 secret for downstream client tokens; unset is development mode (warned)."),
    Option("pancake-url", "N2GATEWAY_PANCAKE_URL", "Pancake WebSocket URL.", DEFAULT_PANCAKE_URL),
    Option("tpos-url", "N2GATEWAY_TPOS_URL", "TPOS Socket.IO URL.", DEFAULT_TPOS_URL),
    Option("credentials-key", "N2GATEWAY_CREDENTIALS_KEY",
           "Fernet key: upstream tokens are encrypted at rest when set."),
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
)


@dataclass(frozen=True)
class Settings:
    http: str = "tcp:8080"
    database_url: str | None = None
    data_dir: Path = Path(".n2gateway")
    admin_token: str | None = None
    jwt_secret: str | None = None
    pancake_url: str = DEFAULT_PANCAKE_URL
    tpos_url: str = DEFAULT_TPOS_URL
    credentials_key: str | None = None
    plugins: tuple[str, ...] = ()
    disabled_plugins: tuple[str, ...] = ()
    retention: float = 86400.0
    retention_rows: int = 1_000_000
    poll_interval: float = 1.0
    recovery_ttl: float = 120.0
    log_format: str = "text"
    node_id: str | None = None
    #: Every N2GATEWAY_* variable, for plugin settings (``plugin_setting``).
    plugin_env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def plugin_setting(self, name: str, default: str) -> str:
        """A plugin's own setting, from ``N2GATEWAY_<NAME>`` (plugins add no options)."""
        return self.plugin_env.get(f"N2GATEWAY_{name.upper()}", default)

    @property
    def database_kind(self) -> str:
        return "external" if self.database_url else "embedded"

    def describe_database(self) -> str:
        """The database for the start-up banner: host and name, never a password."""
        if not self.database_url:
            return f"embedded PostgreSQL in {self.data_dir / 'pgdata'}"
        parts = urlsplit(self.database_url)
        return f"PostgreSQL at {parts.hostname or 'local socket'}:{parts.port or 5432}{parts.path}"


def _pick(options: Mapping[str, Any], environ: Mapping[str, str], option: Option) -> str | None:
    value = options.get(option.name)
    if value is None:
        value = environ.get(option.env) or None
    return value if value is not None else option.default


def _comma_list(value: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in (value or "").split(",") if item.strip())


def build_settings(
    options: Mapping[str, Any], environ: Mapping[str, str], reactor: IReactorCore
) -> Settings:
    """Merge options over environment, validate, and freeze.

    ``reactor`` is only used to parse the endpoint string; nothing listens here.
    """
    values = {option.name: _pick(options, environ, option) for option in OPTIONS}

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

    credentials_key = values["credentials-key"]
    if credentials_key is not None:
        _check_fernet_key(credentials_key)

    if values["log-format"] not in ("text", "json"):
        raise usage.UsageError("--log-format: expected text or json")

    plugins = tuple(options.get("plugin") or ()) or _comma_list(environ.get("N2GATEWAY_PLUGINS"))
    return Settings(
        http=http,
        database_url=database_url,
        data_dir=data_dir,
        admin_token=values["admin-token"],
        jwt_secret=values["jwt-secret"],
        pancake_url=values["pancake-url"],
        tpos_url=values["tpos-url"],
        credentials_key=credentials_key,
        plugins=plugins,
        disabled_plugins=_comma_list(values["disable-plugin"]),
        retention=parse_duration("retention", values["retention"]),
        retention_rows=_positive_int("retention-rows", values["retention-rows"]),
        poll_interval=parse_duration("poll-interval", values["poll-interval"]),
        recovery_ttl=parse_duration("recovery-ttl", values["recovery-ttl"]),
        log_format=values["log-format"],
        node_id=values["node-id"],
        plugin_env=MappingProxyType(
            {k: v for k, v in environ.items() if k.startswith("N2GATEWAY_")}),
    )


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(name: str, text: str) -> float:
    """Seconds from ``90``, ``90s``, ``30m``, ``24h`` or ``7d``."""
    number, unit = (text[:-1], text[-1]) if text and text[-1] in _UNITS else (text, "s")
    try:
        seconds = float(number) * _UNITS[unit]
    except ValueError:
        raise usage.UsageError(f"--{name}: expected a duration like 90s, 30m or 24h") from None
    if not seconds > 0:
        raise usage.UsageError(f"--{name}: must be more than zero")
    return seconds


def _positive_int(name: str, text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise usage.UsageError(f"--{name}: expected a positive whole number")
    return int(text)


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
