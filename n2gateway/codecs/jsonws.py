"""The plain JSON WebSocket's frames (``/ws``, SPEC §9) as text, and the client's
frames read back; the endpoint in ``downstream/jsonws.py`` does the rest.

server → client: ``{"type": <event>, "room": R, "payload": ..., "offset": "<n>"}``,
plus ``subscribed`` / ``unsubscribed`` / ``gap`` / ``refreshed`` / ``error`` control
frames. client → server: ``{"type": "subscribe", "room": R, "offset"?: "<n>"}``,
``{"type": "unsubscribe", "room": R}`` and ``{"type": "refresh", "token": T}``.
"""

from __future__ import annotations

import json
from typing import Any

MAX_OFFSET = 2**63 - 1  # the journal's bigint


class ProtocolError(Exception):
    """A client frame we cannot act on; the message goes back in an error frame."""


# Built once: json.dumps with options builds a new encoder on every call, and this
# runs twice for every event frame prepared.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dumps(value: Any) -> str:
    return _ENCODER.encode(value)


def event_text(name: str, room: str, payload_json: str, offset: int) -> str:
    """An event's frame; its payload, already JSON, is spliced in unchanged."""
    return (f'{{"type":{dumps(name)},"room":{dumps(room)},'
            f'"payload":{payload_json},"offset":"{offset}"}}')


def decode_frame(payload: bytes) -> dict:
    """A client's text frame as the JSON object it must be."""
    try:
        frame = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("malformed JSON") from None
    except RecursionError:
        raise ProtocolError("malformed JSON: nested too deeply") from None
    if not isinstance(frame, dict):
        raise ProtocolError("a frame must be a JSON object")
    return frame


def parse_offset(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_OFFSET:
        return value
    if (isinstance(value, str) and value.isascii() and value.isdigit()
            and len(value) <= 19 and int(value) <= MAX_OFFSET):
        return int(value)
    raise ProtocolError("offset must be a string of at most 19 digits")
