"""Send bytes to a client's socket at once when nothing is queued before them, or
what was just queued without waiting for the reactor's next pass.

Twisted's ``transport.write`` only buffers: the bytes leave on the reactor's next
pass, and each receiver of a broadcast then costs a writer registration in epoll,
a poll event, a ``doWrite`` call and a deregistration besides the ``send`` itself:
in the 1,000-client Socket.IO broadcast benchmark, two fifths of the gateway's
CPU. Node (libuv) tries the write straight away; so does this. Whatever does not
go out at once (a full socket, anything already queued, TLS, a transport that is
not Twisted's plain TCP one) takes ``transport.write``'s path, so byte order,
producer pauses and the handling of a broken connection stay Twisted's.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp


def _open_plain_tcp(transport: Any) -> bool:
    """Whether ``transport`` is itself a connected, unencrypted Twisted TCP connection
    that is not closing. Exactly a ``tcp.Connection``: a TLS wrapper passes attribute
    reads through to the TCP connection under it."""
    return (isinstance(transport, tcp.Connection) and not transport.TLS
            and transport.connected and not transport.disconnecting)


def write_now(transport: Any, data: bytes) -> None:
    sent = 0
    # Nothing queued before these bytes; checked inline, as this runs for every delivery.
    if _open_plain_tcp(transport) and not transport.dataBuffer and not transport._tempDataBuffer:
        try:
            sent = transport.getHandle().send(data)
        except OSError:
            # Full (EAGAIN) or broken: transport.write queues it, and the reactor's
            # own write finds a broken connection and closes it the usual way.
            sent = 0
    if sent < len(data):
        transport.write(data[sent:] if sent else data)


def flush_now(transport: Any) -> None:
    """Send what ``transport.write`` queued (an HTTP answer written through
    twisted.web) now, saving the epoll round of a reactor pass. A plain TCP connection
    that is not closing only: a connection's end stays the reactor's. What does not go
    out (a full or broken socket) stays queued for the reactor's own write, which
    then meets the error and closes the connection the usual way."""
    if (_open_plain_tcp(transport) and not transport._writeDisconnecting
            and (transport.dataBuffer or transport._tempDataBuffer)):
        transport.doWrite()
