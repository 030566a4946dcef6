"""Engine.IO 4 / Socket.IO 5-protocol packet codec, the only one in the project.

Both the downstream Socket.IO server endpoint and the upstream TPOS client speak
through this module, so every packet either side sends can be encoded and decoded
here. It turns WebSocket text frames into packet values and back, nothing more: no
I/O, no Twisted, no session state. Binary attachments travel in separate WebSocket
binary frames, which are not this module's concern; BINARY_* packet headers are
decoded anyway so the caller can refuse them with a clear error.

Wire formats (text frames only):

- Engine.IO packet: ``<type digit><data>``.
- Socket.IO packet, the data of an Engine.IO MESSAGE:
  ``<type digit>[<attachments>-][<namespace>,][<ack id>][<JSON>]``, parsed and
  validated the way the official socket.io-parser does, so that a frame we accept is
  one a Node peer would send and a frame we emit is one a Node peer accepts (a Node
  client closes its connection on a frame it cannot parse).

Every frame or packet the codec refuses raises `PacketError`.
"""

import enum
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "EngineType",
    "EnginePacket",
    "OpenInfo",
    "PacketError",
    "SocketPacket",
    "SocketType",
    "decode_engine",
    "decode_message",
    "decode_open",
    "decode_socket",
    "encode_engine",
    "encode_event_frame",
    "encode_event_frame_raw",
    "encode_message",
    "encode_open",
    "encode_socket",
]


class PacketError(ValueError):
    """A frame that is not a valid packet, or a packet that cannot go on the wire.

    The message is one line and quotes at most the first 100 characters of the
    offending input. ``reason`` is the same message without the quote, for logs
    about frames from a peer that may echo a secret back.
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


def _quoting(reason: str, text: str) -> PacketError:
    return PacketError(f"{reason}: {_excerpt(text)}", reason)


# --- Engine.IO ---------------------------------------------------------------


class EngineType(enum.IntEnum):
    OPEN = 0
    CLOSE = 1
    PING = 2
    PONG = 3
    MESSAGE = 4
    UPGRADE = 5
    NOOP = 6


@dataclass(frozen=True, slots=True)
class EnginePacket:
    type: EngineType
    data: str = ""


_ENGINE_TYPES = {str(t.value): t for t in EngineType}


def decode_engine(frame: str) -> EnginePacket:
    """Decode one WebSocket text frame into an Engine.IO packet."""
    if not frame:
        raise PacketError("empty Engine.IO frame")
    packet_type = _ENGINE_TYPES.get(frame[0])
    if packet_type is None:
        raise _quoting(f"unknown Engine.IO packet type {frame[0]!r}", frame)
    return EnginePacket(packet_type, frame[1:])


def encode_engine(packet: EnginePacket) -> str:
    """Encode an Engine.IO packet as one WebSocket text frame."""
    try:
        packet_type = EngineType(packet.type)
    except ValueError:
        raise PacketError(f"unknown Engine.IO packet type {packet.type!r}") from None
    # An f-string would silently turn a dict or bytes into Python repr on the wire.
    if not isinstance(packet.data, str):
        raise PacketError(
            f"Engine.IO packet data must be str, not {type(packet.data).__name__}"
        )
    return f"{packet_type.value}{packet.data}"


@dataclass(frozen=True, slots=True)
class OpenInfo:
    """The Engine.IO handshake. Durations are seconds here, milliseconds on the wire.

    ``max_payload`` is 0 when the server did not announce it: engine.io added the
    field in 6.2.0 without a protocol bump, so older Engine.IO 4 servers omit it.
    """

    sid: str
    ping_interval: float
    ping_timeout: float
    max_payload: int
    upgrades: tuple[str, ...] = ()


def encode_open(info: OpenInfo) -> str:
    """Encode the whole OPEN frame a server sends first."""
    return "0" + _dumps(
        {
            "sid": info.sid,
            "upgrades": list(info.upgrades),
            "pingInterval": round(info.ping_interval * 1000),
            "pingTimeout": round(info.ping_timeout * 1000),
            "maxPayload": info.max_payload,
        }
    )


def decode_open(data: str) -> OpenInfo:
    """Decode the JSON data of an OPEN packet (the frame without its leading '0').

    Unknown fields are ignored, since the handshake grows by adding fields.
    """
    try:
        return _parse_open(data)
    except PacketError as exc:
        raise _quoting(exc.reason, data) from None


def _parse_open(data: str) -> OpenInfo:
    fields = _loads(data)
    if not isinstance(fields, dict):
        raise PacketError("OPEN data must be a JSON object")
    sid = fields.get("sid")
    if not isinstance(sid, str) or not sid:
        raise PacketError("OPEN data needs a non-empty string 'sid'")
    # Required because the official client fails without it.
    upgrades = fields.get("upgrades")
    if not isinstance(upgrades, list) or not all(isinstance(u, str) for u in upgrades):
        raise PacketError("OPEN data needs 'upgrades', a list of strings")
    max_payload = fields.get("maxPayload", 0)
    if type(max_payload) is not int or max_payload < 0:
        raise PacketError("OPEN 'maxPayload' must be a non-negative integer")
    return OpenInfo(
        sid=sid,
        ping_interval=_positive_ms(fields, "pingInterval") / 1000,
        ping_timeout=_positive_ms(fields, "pingTimeout") / 1000,
        max_payload=max_payload,
        upgrades=tuple(upgrades),
    )


def _positive_ms(fields: dict[str, Any], name: str) -> float:
    value = fields.get(name)
    # bool is an int in Python but not a number in JSON; a zero or negative interval
    # would make a client ping or time out in a tight loop.
    if type(value) not in (int, float) or not value > 0:
        raise PacketError(f"OPEN data needs '{name}', a positive number of ms")
    return value


# --- Socket.IO ---------------------------------------------------------------


class SocketType(enum.IntEnum):
    CONNECT = 0
    DISCONNECT = 1
    EVENT = 2
    ACK = 3
    CONNECT_ERROR = 4
    BINARY_EVENT = 5
    BINARY_ACK = 6


@dataclass(frozen=True, slots=True)
class SocketPacket:
    """A Socket.IO packet; ``data=None`` means the packet carries no JSON at all."""

    type: SocketType
    namespace: str = "/"
    data: Any = None
    id: int | None = None
    attachments: int = 0


_SOCKET_TYPES = {str(t.value): t for t in SocketType}
_BINARY_TYPES = frozenset({SocketType.BINARY_EVENT, SocketType.BINARY_ACK})

# socket.io-parser refuses these as event names: the client and server libraries
# use them for their own lifecycle events.
_RESERVED_EVENTS = frozenset(
    {
        "connect",
        "connect_error",
        "disconnect",
        "disconnecting",
        "newListener",
        "removeListener",
    }
)

# A JavaScript peer holds ack ids and counts as doubles; beyond this they are not
# exact, so neither side can mean them.
_MAX_SAFE_INTEGER = 2**53 - 1

_DIGITS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() accepts '²' and '٣'


def decode_socket(text: str) -> SocketPacket:
    """Decode the data of an Engine.IO MESSAGE packet (without the leading '4')."""
    try:
        return _parse_socket(text, 0)
    except PacketError as exc:
        raise _quoting(exc.reason, text) from None


def decode_message(frame: str) -> SocketPacket:
    """Decode a whole WebSocket text frame that must be an Engine.IO MESSAGE."""
    if not frame.startswith("4"):
        raise _quoting("not an Engine.IO MESSAGE frame", frame)
    try:
        return _parse_socket(frame, 1)
    except PacketError as exc:
        raise _quoting(exc.reason, frame) from None


def _parse_socket(text: str, pos: int) -> SocketPacket:
    if pos >= len(text):
        raise PacketError("empty Socket.IO packet")
    packet_type = _SOCKET_TYPES.get(text[pos])
    if packet_type is None:
        raise PacketError(f"unknown Socket.IO packet type {text[pos]!r}")
    pos += 1

    attachments = 0
    if packet_type in _BINARY_TYPES:
        match = _DIGITS.match(text, pos)
        if match is None or not text.startswith("-", match.end()):
            raise PacketError(
                f"{packet_type.name} needs an attachment count like '1-'"
            )
        attachments = _parse_count(match.group(), "attachment count")
        pos = match.end() + 1

    namespace = "/"
    if text.startswith("/", pos):
        # As in socket.io-parser: the namespace runs to the first comma, or to the
        # end of the packet when there is none.
        comma = text.find(",", pos)
        if comma < 0:
            namespace, pos = text[pos:], len(text)
        else:
            namespace, pos = text[pos:comma], comma + 1

    ack_id = None
    match = _DIGITS.match(text, pos)
    if match is not None:
        ack_id = _parse_count(match.group(), "ack id")
        pos = match.end()

    data = None
    if pos < len(text):
        data = _loads(text[pos:])
        # JSON null is never a valid payload; without this check it would read as
        # "no payload" below.
        if data is None:
            raise PacketError(f"{packet_type.name} data must not be null")
    _check_payload(packet_type, data)
    return SocketPacket(packet_type, namespace, data, ack_id, attachments)


def _parse_count(digits: str, what: str) -> int:
    significant = digits.lstrip("0") or "0"
    # Checking the length first keeps a megabyte of digits from becoming a big int.
    if len(significant) > 16 or (value := int(significant)) > _MAX_SAFE_INTEGER:
        raise PacketError(f"{what} is larger than 2**53 - 1")
    return value


def encode_socket(packet: SocketPacket) -> str:
    """Encode a Socket.IO packet as Engine.IO MESSAGE data (without the leading '4')."""
    try:
        packet_type = SocketType(packet.type)
    except ValueError:
        raise PacketError(f"unknown Socket.IO packet type {packet.type!r}") from None
    head = str(packet_type.value)
    if packet_type in _BINARY_TYPES:
        head += f"{_check_count(packet.attachments, 'attachment count')}-"
    elif packet.attachments != 0:
        raise PacketError(f"{packet_type.name} cannot carry attachments")
    head += _namespace_prefix(packet.namespace)
    if packet.id is not None:
        head += str(_check_count(packet.id, "ack id"))
    _check_payload(packet_type, packet.data)
    return head if packet.data is None else head + _dumps(packet.data)


def encode_message(packet: SocketPacket) -> str:
    """Encode a Socket.IO packet as a whole WebSocket text frame."""
    return "4" + encode_socket(packet)


def encode_event_frame(name: str, *args: Any, namespace: str = "/") -> str:
    """Build the whole '42...' frame of an event without building a packet first."""
    _check_event_name(name)
    return "42" + _namespace_prefix(namespace) + _dumps([name, *args])


def encode_event_frame_raw(
    name: str, raw_args_json: Sequence[str], namespace: str = "/"
) -> str:
    """Build an event frame by splicing arguments that are already JSON text.

    Each element must be exactly one valid JSON value; it is not parsed again,
    which is the point: payloads stored as JSON text go on the wire untouched.
    """
    # A lone string would be spliced character by character into garbage.
    if isinstance(raw_args_json, str):
        raise TypeError("raw_args_json must be a sequence of JSON texts, not a str")
    _check_event_name(name)
    args = ",".join([_dumps(name), *raw_args_json])
    return f"42{_namespace_prefix(namespace)}[{args}]"


def _namespace_prefix(namespace: str) -> str:
    if namespace == "/":
        return ""
    # A comma would end the namespace early on the peer's side.
    valid = isinstance(namespace, str) and namespace.startswith("/")
    if not valid or "," in namespace:
        raise PacketError(
            "namespace must start with '/' and contain no ',':"
            f" {_excerpt(str(namespace))}"
        )
    return namespace + ","


def _check_count(value: int, what: str) -> int:
    if type(value) is not int or not 0 <= value <= _MAX_SAFE_INTEGER:
        raise PacketError(
            f"{what} must be an integer from 0 to 2**53 - 1, not {value!r:.100}"
        )
    return value


def _check_event_name(name: str) -> None:
    # socket.io-parser also accepts a number here; the project does not, so that a
    # handler can always dispatch on a string.
    if not isinstance(name, str):
        raise PacketError(f"event name must be a string, not {type(name).__name__}")
    if name in _RESERVED_EVENTS:
        raise PacketError(f"event name {name!r} is reserved by Socket.IO")


def _check_payload(packet_type: SocketType, data: Any) -> None:
    """Apply socket.io-parser's payload rules; ``None`` means no payload."""
    match packet_type:
        case SocketType.CONNECT:
            valid = data is None or isinstance(data, dict)
            expected = "an object or absent"
        case SocketType.DISCONNECT:
            valid = data is None
            expected = "absent"
        case SocketType.CONNECT_ERROR:
            valid = isinstance(data, (str, dict))
            expected = "a string or an object"
        case SocketType.EVENT | SocketType.BINARY_EVENT:
            if not isinstance(data, (list, tuple)) or not data:
                raise PacketError(
                    f"{packet_type.name} data must be a non-empty array"
                    " starting with the event name"
                )
            _check_event_name(data[0])
            return
        case _:  # ACK, BINARY_ACK
            valid = isinstance(data, (list, tuple))
            expected = "an array"
    if not valid:
        raise PacketError(f"{packet_type.name} data must be {expected}")


# --- JSON and messages -------------------------------------------------------

_EXCERPT_CHARS = 100


def _excerpt(text: str) -> str:
    """Quote the start of untrusted input for an error message: one line, bounded."""
    more = "..." if len(text) > _EXCERPT_CHARS else ""
    return repr(text[:_EXCERPT_CHARS]) + more


# Compact and non-ASCII, as Node's JSON.stringify writes it; built once because
# json.dumps with options builds a new encoder on every call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_ASCII_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def _dumps(value: Any) -> str:
    try:
        text = _ENCODER.encode(value)
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


def _loads(text: str) -> Any:
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
