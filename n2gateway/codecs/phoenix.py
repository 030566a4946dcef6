"""
Phoenix Channels v2 JSON frames: ``[join_ref, ref, topic, event, payload]``.

Pure functions, no I/O, so the wire format is tested on its own.
"""

import json
from dataclasses import dataclass
from typing import Any

# Events of the Phoenix protocol itself, as opposed to application events.
JOIN = "phx_join"
LEAVE = "phx_leave"
REPLY = "phx_reply"
ERROR = "phx_error"
CLOSE = "phx_close"
CONTROL_PREFIX = "phx_"
SOCKET_TOPIC = "phoenix"
HEARTBEAT = "heartbeat"


class InvalidFrame(ValueError):
    """
    A frame that is not a Phoenix v2 message. The message is a short fixed
    description; it never quotes the frame, which may carry secrets.
    """


@dataclass(frozen=True)
class PhoenixMessage:
    join_ref: str | None
    ref: str | None
    topic: str
    event: str
    payload: Any

    @property
    def is_control(self) -> bool:
        return self.topic == SOCKET_TOPIC or self.event.startswith(CONTROL_PREFIX)


def encode_frame(message: PhoenixMessage) -> bytes:
    return json.dumps(
        [message.join_ref, message.ref, message.topic, message.event, message.payload],
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")


def decode_frame(data: bytes) -> PhoenixMessage:
    try:
        frame = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidFrame("not JSON") from None
    if not isinstance(frame, list) or len(frame) != 5:
        raise InvalidFrame("not a 5-element array")
    join_ref, ref, topic, event, payload = frame
    if not all(r is None or isinstance(r, str) for r in (join_ref, ref)):
        raise InvalidFrame("ref is neither a string nor null")
    if not isinstance(topic, str) or not topic:
        raise InvalidFrame("topic is not a non-empty string")
    if not isinstance(event, str) or not event:
        raise InvalidFrame("event is not a non-empty string")
    return PhoenixMessage(join_ref, ref, topic, event, payload)


def reply_status(payload: Any) -> tuple[str, Any]:
    """
    The ``(status, response)`` of a ``phx_reply`` payload.

    :raises InvalidFrame: the payload is not ``{"status": str, "response": ...}``.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("status"), str):
        raise InvalidFrame("reply without a status")
    return payload["status"], payload.get("response")
