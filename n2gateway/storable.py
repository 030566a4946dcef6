"""What the journal can store: JSON that PostgreSQL's ``json`` type accepts, to a depth.

PostgreSQL refuses a string holding ``\\u0000`` (it cannot become text), the numbers
``NaN`` and ``Infinity`` (Python's json reads ``1e400`` as infinity too), and lone
surrogates. Such an event must be refused on its own, before it joins a batch, or
it fails every other publisher's event in that batch. The depth bound keeps every
reader of the journal (previews, replays, clients' parsers) far from recursion limits.
"""

from __future__ import annotations

import math
from typing import Any, Iterator

#: Containers inside containers, at most, in a payload.
MAX_DEPTH = 64


class Unstorable(ValueError):
    """An event the journal cannot store; ``reason`` is a short word for metrics."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class TooDeep(ValueError):
    pass


def nodes(value: Any, limit: int = MAX_DEPTH) -> Iterator[Any]:
    """Every value in decoded JSON, keys included, without recursion; ``TooDeep``
    once containers nest more than ``limit`` deep."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        yield item
        if isinstance(item, dict | list | tuple):
            if depth >= limit:
                raise TooDeep(f"nested deeper than {limit} levels")
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                item = item.values()
            stack.extend((child, depth + 1) for child in item)


def check_depth(text: str | bytes, value: Any, limit: int) -> None:
    """``TooDeep`` if ``value``, decoded from ``text``, nests more than ``limit`` deep.
    Each level opens a bracket, so a text with no more brackets than ``limit`` (nearly
    every body) is not walked."""
    square, curly = ("[", "{") if isinstance(text, str) else (b"[", b"{")
    if text.count(square) + text.count(curly) > limit:
        for _ in nodes(value, limit):
            pass


def check_storable(value: Any, what: str = "payload") -> None:
    """Raise ``Unstorable`` naming the problem in ``value`` (decoded JSON)."""
    try:
        for item in nodes(value):
            if isinstance(item, str) and "\x00" in item:
                raise Unstorable("nul", f"{what} contains a NUL character (\\u0000)")
            if isinstance(item, float) and not math.isfinite(item):
                raise Unstorable("number", f"{what} contains NaN, Infinity or a number "
                                 "too large for JSON (such as 1e400)")
    except TooDeep as e:
        raise Unstorable("depth", f"{what} is {e}") from None


def unstorable_text(value: Any) -> tuple[str, str] | None:
    """The first string in decoded JSON (keys included) that PostgreSQL cannot store as
    text: its field path ("pageIds.1", "" for ``value`` itself) and what is wrong with
    it; None if there is none. ``value`` is bounded in depth already."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return path, "contains a NUL character (\\u0000)"
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return path, "is not valid Unicode (a lone surrogate)"
        elif isinstance(item, dict):
            for key, child in item.items():
                where = f"{path}.{key}" if path else str(key)
                stack.extend([(where, child), (path, key)])
        elif isinstance(item, list):
            stack.extend((f"{path}.{i}" if path else str(i), child) for i, child in enumerate(item))
    return None
