"""``--http reuseport:PORT``: a TCP listening endpoint with ``SO_REUSEPORT``.

Several gateway processes on one host can then listen on the same port and the
kernel spreads new connections across them, so a 2-core machine uses both cores
with no front proxy. Registered as a Twisted endpoint string parser in
``twisted/plugins/n2gateway_dropin.py``.
"""

from __future__ import annotations

import socket

from twisted.internet import defer
from twisted.internet.interfaces import IStreamServerEndpoint, IStreamServerEndpointStringParser
from twisted.plugin import IPlugin
from zope.interface import implementer


@implementer(IStreamServerEndpoint)
class ReusePortEndpoint:
    def __init__(self, reactor, port: int, interface: str = "", backlog: int = 128) -> None:
        self._reactor = reactor
        self._port = port
        self._interface = interface
        self._backlog = backlog

    def listen(self, factory) -> defer.Deferred:
        family = socket.AF_INET6 if ":" in self._interface else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self._interface, self._port))
            sock.listen(self._backlog)
            sock.setblocking(False)
            # adoptStreamPort duplicates the descriptor: ours is closed right after.
            port = self._reactor.adoptStreamPort(sock.fileno(), family, factory)
        except OSError as e:
            return defer.fail(e)
        finally:
            sock.close()
        return defer.succeed(port)


@implementer(IPlugin, IStreamServerEndpointStringParser)
class ReusePortParser:
    prefix = "reuseport"

    def parseStreamServer(self, reactor, port: str, interface: str = "",
                          backlog: str = "128") -> ReusePortEndpoint:
        return ReusePortEndpoint(reactor, int(port), interface, int(backlog))
