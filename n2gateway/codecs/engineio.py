"""Engine.IO 4 packets: ``<type digit><data>``, one per WebSocket text frame, or
several joined by the record separator in an HTTP long-polling body.

Binary packets (``b<base64>`` over polling) are not decoded: the gateway refuses them.
"""

import enum
from dataclasses import dataclass
from typing import Any

from n2gateway.codecs.text import PacketError, dumps, loads, quoting

__all__ = ["CLOSE_FRAME", "EngineType", "EnginePacket", "NOOP_FRAME", "OpenInfo",
           "PING_FRAME", "PacketError", "decode_engine",
           "decode_open", "decode_payload", "encode_engine", "encode_open", "encode_payload"]

#: Separates the packets of one HTTP long-polling body (Engine.IO 4).
RECORD_SEPARATOR = "\x1e"


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
        raise quoting(f"unknown Engine.IO packet type {frame[0]!r}", frame)
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


#: The packets without data, encoded once: sent on every ping and every empty poll.
CLOSE_FRAME = encode_engine(EnginePacket(EngineType.CLOSE))
PING_FRAME = encode_engine(EnginePacket(EngineType.PING))
NOOP_FRAME = encode_engine(EnginePacket(EngineType.NOOP))


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
    return "0" + dumps(
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
        raise quoting(exc.reason, data) from None


def _parse_open(data: str) -> OpenInfo:
    fields = loads(data)
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


def encode_payload(frames: "list[str]") -> str:
    """Join encoded packets into one long-polling body."""
    return RECORD_SEPARATOR.join(frames)


def decode_payload(body: str) -> "list[EnginePacket]":
    """Split a long-polling body into its packets."""
    if not body:
        raise PacketError("empty Engine.IO payload")
    return [decode_engine(frame) for frame in body.split(RECORD_SEPARATOR)]
