"""Every WebSocket close code the gateway sends its clients, each once, with what it
means and what a client should do about it.

One code, one meaning: a client (or whoever reads its logs) tells a slow consumer
from a dead link by the code alone. Where two causes call for the same action (the
gateway starting and an upgrade it cannot take now: retry shortly) they share a code.
The README's close-code table is checked against `TABLE`
(``tests/unit/test_close_codes.py``): a new code is added here first.
"""

from __future__ import annotations

from typing import NamedTuple


class CloseCode(NamedTuple):
    code: int
    #: As the README's table says it (Markdown).
    meaning: str
    action: str


CLOSE_NORMAL = 1000
#: Sent by Autobahn for a frame over the endpoints' 64 KiB limit.
CLOSE_TOO_BIG = 1009
CLOSE_UNAUTHORIZED = 4001
CLOSE_PROTOCOL_ERROR = 4002
CLOSE_UNSUPPORTED = 4003
CLOSE_SLOW_CONSUMER = 4008
CLOSE_TIMEOUT = 4012
CLOSE_TRY_AGAIN = 4013
CLOSE_TOO_MANY_PINGS = 4029
CLOSE_GOING_AWAY = 4101

TABLE = (
    CloseCode(CLOSE_NORMAL, "Socket.IO: the client closed its Engine.IO session",
              "nothing"),
    CloseCode(CLOSE_TOO_BIG, "a frame over 64 KiB", "send smaller frames"),
    CloseCode(CLOSE_UNAUTHORIZED, "unauthorized: a bad token, or `token expired`",
              "get a new token, reconnect"),
    CloseCode(CLOSE_PROTOCOL_ERROR, "Socket.IO: a packet the gateway cannot act on (a "
              "broken or unexpected Engine.IO or Socket.IO packet, an upgrade for an "
              "unknown session)",
              "reconnect; fix the client if it recurs"),
    CloseCode(CLOSE_UNSUPPORTED, "Socket.IO: binary attachments", "send JSON only"),
    CloseCode(CLOSE_SLOW_CONSUMER, "slow consumer: the client fell more than 1 MiB behind",
              "reconnect and resume from the last offset"),
    CloseCode(CLOSE_TIMEOUT, "Socket.IO: no pong to a ping, no CONNECT within 45 s, or "
              "no upgrade in time (earlier builds closed these with `4008`)",
              "reconnect (the link or the client stalled)"),
    CloseCode(CLOSE_TRY_AGAIN, "try again: the gateway is starting, cannot take an upgrade "
              "now, or the events a recovery missed expired meanwhile",
              "retry shortly"),
    CloseCode(CLOSE_TOO_MANY_PINGS, "too many pings", "ping less often (browsers never ping)"),
    CloseCode(CLOSE_GOING_AWAY, "the gateway is stopping",
              "reconnect, to another gateway if there are several, and resume"),
)
