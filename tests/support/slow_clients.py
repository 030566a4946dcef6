"""Slowloris clients: raw loopback connections that send a request's start at once
and then one byte at a time, forever, and note how the server answers. Used by the
adversarial tests and by ``python -m bench.slow_headers``."""

from __future__ import annotations

import selectors
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

#: Headers that never end: the request line, then one more header byte at a time.
SLOW_HEADERS = (b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ", b"a")
#: A body that never ends: complete headers announcing 100 kB, then a byte at a time.
SLOW_BODY = (b"POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", b" ")


@dataclass
class Outcome:
    answered: Counter = field(default_factory=Counter)  # status line -> connections
    bodies: list[bytes] = field(default_factory=list)
    closed_silently: int = 0
    still_open: int = 0
    seconds: float = 0.0  # until the last connection was answered or closed


class SlowClients:
    """``plan``: how many connections send each kind of request (``SLOW_HEADERS``...)."""

    def __init__(self, port: int, plan: list[tuple[int, tuple[bytes, bytes]]]) -> None:
        self._selector = selectors.DefaultSelector()
        self._received: dict[socket.socket, bytes] = {}
        self._drips: dict[socket.socket, bytes] = {}
        for count, (start, drip) in plan:
            for _ in range(count):
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                sock.sendall(start)
                sock.setblocking(False)
                self._selector.register(sock, selectors.EVENT_READ)
                self._received[sock] = b""
                self._drips[sock] = drip

    def run(self, interval: float, limit: float,
            on_tick: Callable[[], None] = lambda: None) -> Outcome:
        """Drip a byte on each open connection every ``interval`` seconds until every
        connection was closed by the server or ``limit`` seconds have passed."""
        outcome, started = Outcome(), time.monotonic()
        next_drip = started + interval
        while self._received and time.monotonic() - started < limit:
            for key, _ in self._selector.select(max(next_drip - time.monotonic(), 0)):
                self._read(key.fileobj, outcome)
            if time.monotonic() >= next_drip:
                next_drip += interval
                on_tick()
                for sock in list(self._received):
                    try:
                        sock.send(self._drips[sock])
                    except OSError:
                        self._read(sock, outcome)
        outcome.seconds = time.monotonic() - started
        outcome.still_open = len(self._received)
        self.close()
        return outcome

    def _read(self, sock: socket.socket, outcome: Outcome) -> None:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._received[sock] += data
            return
        answer = self._received.pop(sock)
        self._selector.unregister(sock)
        sock.close()
        if answer:
            head, _, body = answer.partition(b"\r\n\r\n")
            outcome.answered[head.split(b"\r\n")[0].decode("latin-1")] += 1
            outcome.bodies.append(body)
        else:
            outcome.closed_silently += 1

    def close(self) -> None:
        for sock in self._received:
            self._selector.unregister(sock)
            sock.close()
        self._received.clear()
        self._selector.close()
