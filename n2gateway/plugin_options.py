"""Options a plugin declares (hook ``n2gateway_options``), as first class as the core's.

A plugin ``feed`` declaring ``PluginOption("url", ...)`` gets ``--feed-url`` on
``twistd n2gateway`` (and ``n2gateway migrate|check|dsn``), the variable
``N2GATEWAY_FEED_URL``, a line in ``--help``, and its parsed value in
``context.settings.plugin_options["feed-url"]``. A value ``parse`` refuses is a
one-line ``UsageError`` at start, like a bad core option.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Protocol
from urllib.parse import urlsplit

from twisted.python import usage


@dataclass(frozen=True)
class PluginOption:
    """One option of a plugin: ``name`` without the plugin's prefix (``url``)."""

    name: str
    help: str
    #: As it would be typed; parsed like a given value. None: unset unless given.
    default: str | None = None
    #: Converts and validates a value: returns what the plugin reads, raises
    #: ``ValueError("expected ...")`` for a bad one (the message must not repeat it).
    parse: Callable[[str], Any] = str


@dataclass(frozen=True)
class DeclaredOption:
    """A plugin's option under its full name (``feed-url``) and variable."""

    plugin: str
    option: PluginOption

    @property
    def name(self) -> str:
        return f"{option_prefix(self.plugin)}-{self.option.name}"

    @property
    def env(self) -> str:
        return "N2GATEWAY_" + self.name.upper().replace("-", "_")

    @property
    def help(self) -> str:
        return self.option.help

    @property
    def default(self) -> str | None:
        return self.option.default


def option_prefix(plugin_name: str) -> str:
    """``pancake`` for the entry point ``pancake``, ``feed`` for ``--plugin my.feed``."""
    return plugin_name.rsplit(".", 1)[-1].replace("_", "-").lower()


class Named(Protocol):
    """An option as ``pick`` reads it: the core's and the plugins' alike."""

    name: str
    env: str
    default: str | None


def pick(options: Mapping[str, Any], environ: Mapping[str, str], option: Named) -> str | None:
    """The option's text as given, else its variable's (unless empty), else its default."""
    value = options.get(option.name)
    if value is None:
        value = environ.get(option.env) or None
    return value if value is not None else option.default


def parse_plugin_options(declared: Iterable[DeclaredOption], options: Mapping[str, Any],
                         environ: Mapping[str, str]) -> dict[str, Any]:
    """Every declared option's value by full name: the option, else its variable,
    else its default, parsed; None when none of them is set."""
    values: dict[str, Any] = {}
    for declared_option in declared:
        name = declared_option.name
        text = pick(options, environ, declared_option)
        if text is None:
            values[name] = None
            continue
        try:
            values[name] = declared_option.option.parse(text)
        except ValueError as e:
            raise usage.UsageError(f"--{name} / {declared_option.env}: {e}") from None
    return values


# Parsers for the usual kinds of value.


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``30m``, ``24h`` or ``7d``."""
    number, unit = (text[:-1], text[-1]) if text and text[-1] in _UNITS else (text, "s")
    try:
        seconds = float(number) * _UNITS[unit]
    except ValueError:
        raise ValueError("expected a duration like 90s, 30m or 24h") from None
    if not seconds > 0:
        raise ValueError("must be more than zero")
    return seconds


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise ValueError("expected a positive whole number")
    return int(text)


def url(*schemes: str) -> Callable[[str], str]:
    """A URL with one of ``schemes`` and a host."""

    def parse(text: str) -> str:
        parts = urlsplit(text)
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(f"expected a {' or '.join(schemes)} URL with a host")
        return text

    return parse
