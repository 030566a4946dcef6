"""A front proxy with no affinity at all: every HTTP request goes to the next backend
in turn, WebSocket upgrades are passed through to the backend they were sent to.

Each client connection carries one request: the proxy asks the backend to close
after its answer (``Connection: close``), so a keep-alive client opens a new
connection, and thus meets the next backend, for its next request.

Towards a dead backend it does what nginx does with its defaults
(``proxy_next_upstream error timeout``, ``max_fails=1``, ``fail_timeout=10s``), as a
real load balancer in front of the gateways would:

- a backend that refuses a connection, or closes it before the head of its answer,
  is *down* for `FAIL_TIMEOUT` seconds: requests skip it meanwhile;
- the request then goes to the next backend it has not tried, if it may be sent
  again: always after a refused connection (nothing was sent), after a close only
  for an idempotent method (nginx does not send a POST twice, it may have been
  acted on);
- a request no backend can take is answered ``502 Bad Gateway``, never a reset
  (and, as nginx does when every backend is down, the marks are forgotten so the
  next request tries them all again);
- a backend that dies in the middle of its answer: the client's connection is
  closed, the answer cut short.
"""

from __future__ import annotations

from collections import Counter

from twisted.internet import protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint

HEAD_LIMIT = 64 * 1024
FAIL_TIMEOUT = 10.0
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
BAD_GATEWAY = (b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\n"
               b"Content-Length: 12\r\nConnection: close\r\n\r\nbad gateway\n")


class _Backend(protocol.Protocol):
    def __init__(self, front: "_Front") -> None:
        self.front = front

    def dataReceived(self, data: bytes) -> None:
        self.front.answered = True
        self.front.transport.write(data)

    def connectionLost(self, reason) -> None:
        self.front.backend_lost(self)


class _Front(protocol.Protocol):
    def __init__(self, proxy: "RoundRobinProxy") -> None:
        self.proxy = proxy
        #: Everything the client sent: sent again to the next backend on a retry.
        self.request = b""
        self.head_seen = False
        self.method = ""
        self.upgrade = False
        self.tried: set[int] = set()
        self.port: int | None = None
        self.backend: _Backend | None = None
        self.answered = False
        self.gone = False

    def dataReceived(self, data: bytes) -> None:
        if self.head_seen:
            self.request += data
            if self.backend is not None:
                self.backend.transport.write(data)
            return
        self.request += data
        end = self.request.find(b"\r\n\r\n")
        if end < 0:
            if len(self.request) > HEAD_LIMIT:
                self.transport.loseConnection()
            return
        self.head_seen = True
        head, rest = self.request[:end], self.request[end + 4:]
        lines = head.split(b"\r\n")
        self.method = lines[0].split(b" ", 1)[0].decode("ascii", "replace")
        self.upgrade = any(line.lower().startswith(b"upgrade:") for line in lines[1:])
        if not self.upgrade:
            lines = [lines[0], *(line for line in lines[1:]
                                 if not line.lower().startswith(b"connection:")),
                     b"Connection: close"]
        self.request = b"\r\n".join(lines) + b"\r\n\r\n" + rest
        self._forward()

    def _forward(self) -> None:
        port = self.proxy.next_backend(self.tried)
        if port is None:
            self.transport.write(BAD_GATEWAY)
            self.transport.loseConnection()
            return
        self.tried.add(port)
        self.port = port
        d = TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(
            protocol.Factory.forProtocol(lambda: _Backend(self)))
        d.addCallbacks(self._connected, lambda _: self._failed(port))

    def _connected(self, backend: _Backend) -> None:
        if self.gone:
            backend.transport.loseConnection()
            return
        self.backend = backend
        self.proxy.requests[(self.port, self.method, self.upgrade)] += 1
        backend.transport.write(self.request)

    def _failed(self, port: int) -> None:
        self.proxy.mark_down(port)
        if not self.gone:
            self._forward()

    def backend_lost(self, backend: _Backend) -> None:
        if backend is not self.backend:
            return
        self.backend = None
        if self.gone or self.answered:
            self.transport.loseConnection()
            return
        # Closed before answering: down, as a refused one.
        self.proxy.mark_down(self.port)
        if self.method in IDEMPOTENT:
            self._forward()
        else:
            self.transport.write(BAD_GATEWAY)
            self.transport.loseConnection()

    def connectionLost(self, reason) -> None:
        self.gone = True
        if self.backend is not None:
            self.backend.transport.loseConnection()


class RoundRobinProxy:
    def __init__(self, backend_ports: list[int]) -> None:
        self.backend_ports = backend_ports
        self._turn = 0
        #: (backend port, "GET"/"POST"/..., upgrade?) -> requests sent there.
        self.requests: Counter[tuple[int, str, bool]] = Counter()
        #: backend port -> until when it is left alone.
        self.down: dict[int, float] = {}
        self._listening = None

    async def start(self) -> "RoundRobinProxy":
        self._listening = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            protocol.Factory.forProtocol(lambda: _Front(self)))
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listening.getHost().port}"

    def next_backend(self, tried: set[int]) -> int | None:
        """The next backend in turn that is up and not in ``tried`` (None: none)."""
        now = reactor.seconds()
        count = len(self.backend_ports)
        for step in range(count):
            port = self.backend_ports[(self._turn + step) % count]
            if port not in tried and self.down.get(port, 0) <= now:
                self._turn += step + 1
                return port
        if all(self.down.get(port, 0) > now for port in self.backend_ports):
            self.down.clear()
        return None

    def mark_down(self, port: int) -> None:
        self.down[port] = reactor.seconds() + FAIL_TIMEOUT

    async def stop(self) -> None:
        if self._listening is not None:
            await self._listening.stopListening()
