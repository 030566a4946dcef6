"""Socket.IO 5-protocol packets, the data of an Engine.IO MESSAGE:
``<type digit>[<attachments>-][<namespace>,][<ack id>][<JSON>]``, parsed and
validated the way the official socket.io-parser does, so that a frame we accept is
one a Node peer would send and a frame we emit is one a Node peer accepts (a Node
client closes its connection on a frame it cannot parse).

BINARY_* packet headers are decoded so the caller can refuse them with a clear error;
their attachments are not this module's concern. Every packet refused raises
`PacketError`.
"""

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from n2gateway.codecs.text import PacketError, dumps, excerpt, loads, quoting

__all__ = ["PacketError", "SocketPacket", "SocketType", "decode_message", "decode_socket",
           "encode_event_frame", "encode_event_frame_raw", "encode_message", "encode_socket"]


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
        raise quoting(exc.reason, text) from None


def decode_message(frame: str) -> SocketPacket:
    """Decode a whole WebSocket text frame that must be an Engine.IO MESSAGE."""
    if not frame.startswith("4"):
        raise quoting("not an Engine.IO MESSAGE frame", frame)
    try:
        return _parse_socket(frame, 1)
    except PacketError as exc:
        raise quoting(exc.reason, frame) from None


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
        data = loads(text[pos:])
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
    return head if packet.data is None else head + dumps(packet.data)


def encode_message(packet: SocketPacket) -> str:
    """Encode a Socket.IO packet as a whole WebSocket text frame."""
    return "4" + encode_socket(packet)


def encode_event_frame(name: str, *args: Any, namespace: str = "/") -> str:
    """Build the whole '42...' frame of an event without building a packet first."""
    _check_event_name(name)
    return "42" + _namespace_prefix(namespace) + dumps([name, *args])


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
    args = ",".join([dumps(name), *raw_args_json])
    return f"42{_namespace_prefix(namespace)}[{args}]"


def _namespace_prefix(namespace: str) -> str:
    if namespace == "/":
        return ""
    # A comma would end the namespace early on the peer's side.
    valid = isinstance(namespace, str) and namespace.startswith("/")
    if not valid or "," in namespace:
        raise PacketError(
            "namespace must start with '/' and contain no ',':"
            f" {excerpt(str(namespace))}"
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
