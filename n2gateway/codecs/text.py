"""What the packet codecs share: their error, quoting untrusted input, and JSON
written and read the way Node's JSON.stringify and JSON.parse do."""

import json
import math
from typing import Any

__all__ = ["PacketError", "dumps", "excerpt", "loads", "quoting"]


class PacketError(ValueError):
    """A frame that is not a valid packet, or a packet that cannot go on the wire.

    The message is one line and quotes at most the first 100 characters of the
    offending input. ``reason`` is the same message without the quote, for logs
    about frames from a peer that may echo a secret back.
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


def quoting(reason: str, text: str) -> PacketError:
    return PacketError(f"{reason}: {excerpt(text)}", reason)




_EXCERPT_CHARS = 100


def excerpt(text: str) -> str:
    """Quote the start of untrusted input for an error message: one line, bounded."""
    more = "..." if len(text) > _EXCERPT_CHARS else ""
    return repr(text[:_EXCERPT_CHARS]) + more


# Compact and non-ASCII, as Node's JSON.stringify writes it; built once because
# json.dumps with options builds a new encoder on every call.
#: ``json.dumps`` so, raising as it does (the journal encodes with it too).
compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_ASCII_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def dumps(value: Any) -> str:
    try:
        text = compact(value)
        # A lone surrogate (JSON "\ud800" decodes to one) cannot be sent as UTF-8;
        # escaping everything keeps the same JSON value, as JSON.stringify does.
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                text = _ASCII_ENCODER.encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise PacketError(f"data cannot be encoded as JSON: {exc!s:.100}") from None
    return text


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON.parse on the peer does not.
    raise PacketError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    # 1e400 parses to infinity, which no JSON encoder can write back.
    if math.isinf(value):
        raise PacketError("number out of range")
    return value


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def loads(text: str) -> Any:
    try:
        return _DECODER.decode(text)
    except PacketError:
        raise
    except json.JSONDecodeError as exc:
        raise PacketError(f"invalid JSON ({exc.msg} at JSON char {exc.pos})") from None
    except ValueError:  # Python's limit on digits in an int
        raise PacketError("invalid JSON (integer too long)") from None
    except RecursionError:
        raise PacketError("invalid JSON (nested too deeply)") from None
