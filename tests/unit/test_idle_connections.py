"""What an idle downstream connection keeps, on both WebSocket endpoints, through
Autobahn's real handshake on an in-memory transport: the factory's options hold for
it without being copied onto it, its opening handshake is forgotten once it is open,
and it still behaves as before (a compression offer is declined, a ping answered,
frames queued while the socket is full still leave in order)."""

from __future__ import annotations

import sys

import pytest

from n2gateway.downstream.connection import HANDSHAKE_LEFTOVERS
from tests.unit.test_downstream_limits import Connection, dev  # noqa: F401 (fixture)

DEFLATE_OFFER = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"


def open_endpoint(setup, endpoint: str, headers: str = "") -> Connection:
    if endpoint == "ws":
        connection = Connection(setup.ws, "/ws?userId=u1", headers)
        assert connection.json_frames()[0]["type"] == "welcome"
    else:
        connection = Connection(setup.socketio, "/socket.io/?EIO=4&transport=websocket",
                                headers)
        assert connection.texts()[0].startswith("0{")
    return connection


@pytest.mark.parametrize("endpoint", ["ws", "socket.io"])
def test_an_open_connection_keeps_no_handshake_and_no_copied_options(dev, endpoint) -> None:
    protocol = open_endpoint(dev, endpoint).protocol
    kept = vars(protocol)
    assert not set(HANDSHAKE_LEFTOVERS) & set(kept)
    assert not set(protocol.CONFIG_ATTRS) & set(kept)
    # The options still hold: they are the factory's, as Autobahn would have copied them.
    factory = dev.ws if endpoint == "ws" else dev.socketio
    assert all(getattr(protocol, name) == getattr(factory, name) for name in protocol.CONFIG_ATTRS)
    # About 90 attributes in a table sized for 170 before: 3.3 KB.
    assert sys.getsizeof(kept) < 2048


@pytest.mark.parametrize("endpoint", ["ws", "socket.io"])
def test_a_compression_offer_is_declined(dev, endpoint) -> None:
    connection = open_endpoint(dev, endpoint, DEFLATE_OFFER)
    assert b"sec-websocket-extensions" not in connection.head.lower()


def test_options_changed_on_the_factory_hold_for_the_next_connection(dev) -> None:
    first = open_endpoint(dev, "ws").protocol
    dev.ws.setProtocolOptions(autoPingInterval=7)
    second = open_endpoint(dev, "ws").protocol
    assert (first.autoPingInterval, second.autoPingInterval) == (25, 7)
    assert type(second) is not type(first)


def test_frames_written_while_the_socket_is_full_leave_in_order(dev) -> None:
    connection = open_endpoint(dev, "ws")
    outbox = connection.protocol.outbox
    connection.stop_reading()
    for n in range(3):
        connection.protocol.send_control({"type": "note", "n": n})
    assert connection.take() == []
    outbox.resumeProducing()
    assert [frame["n"] for frame in connection.json_frames()] == [0, 1, 2]
