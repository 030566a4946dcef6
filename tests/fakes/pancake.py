"""
A fake Pancake realtime server speaking Phoenix Channels v2 (JSON serializer).

It answers heartbeats, accepts or refuses joins as production does (a refused
token gets ``{"status": "error", "response": {"reason": "unauthorized"}}``; a
``pages:<id>`` join of a page whose package has expired gets Pancake's error 122,
and a ``multiple_pages:<userId>`` join naming such a page is refused as a
whole), records every frame and the opening request's headers, and pushes
scripted events to the sessions joined to a topic. The official ``phoenix`` JS
client talks to it in ``tests/interop``.

By hand::

    python -m tests.fakes.pancake --port 4000 [--reject TOKEN ...] [--expire PAGE_ID ...]

then type commands on standard input, one per line::

    push <topic> <event> <json payload>   e.g. push users:1 pages:new_message {"message": {}}
    crash <topic>                         the channel fails (phx_error); clients rejoin
    expire <pageId> / renew <pageId>      the page's package expires / is paid again
    drop                                  close every connection
    status                                print sessions and joined topics

In tests::

    fake = FakePancake(reactor)
    port = fake.listen()          # ws://127.0.0.1:<port>/socket/websocket
    await fake.wait_joined(2)
    fake.push("users:1", "pages:new_message", {...})
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import Any, Callable

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.defer import Deferred
from twisted.logger import Logger

OK = {"status": "ok", "response": {}}
# What Pancake answers a join of a page whose package has expired.
PACKAGE_EXPIRED = {"status": "error",
                   "response": {"success": False, "error_code": 122, "message": "Gói cước hết hạn"}}


class FakePancakeSession(WebSocketServerProtocol):
    """One client connection: its request, frames and joined channels."""

    factory: _FakePancakeFactory

    def onConnect(self, request: Any) -> None:
        self.headers: dict[str, str] = dict(request.headers)
        self.params: dict[str, list[str]] = request.params
        self.frames: list[Any] = []
        self.joins: dict[str, str] = {}  # topic -> join_ref
        self.token: str | None = None
        self.fake._opened(self)

    @property
    def fake(self) -> FakePancake:
        return self.factory.fake

    def send_frame(
        self, join_ref: str | None, ref: str | None, topic: str, event: str, payload: Any
    ) -> None:
        self.sendMessage(json.dumps([join_ref, ref, topic, event, payload]).encode())

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        try:
            frame = json.loads(payload)
            join_ref, ref, topic, event, body = frame
        except (ValueError, TypeError):
            self.frames.append(payload)  # kept as bytes: tests look for it
            self.fake._changed()
            return
        self.frames.append(frame)
        self.fake._changed()
        if self.fake.silent:
            return
        if topic == "phoenix" and event == "heartbeat":
            self.send_frame(None, ref, "phoenix", "phx_reply", OK)
        elif event == "phx_join":
            self._join(join_ref, ref, topic, body)
        elif event == "phx_leave" and topic in self.joins:
            self.send_frame(join_ref, ref, topic, "phx_reply", OK)
            self.send_frame(self.joins.pop(topic), None, topic, "phx_close", {})
        elif topic in self.joins:
            self.send_frame(join_ref, ref, topic, "phx_reply", OK)
        else:
            self.send_frame(join_ref, ref, topic, "phx_reply",
                            {"status": "error", "response": {"reason": "unmatched topic"}})

    def _join(self, join_ref: str, ref: str, topic: str, params: Any) -> None:
        token = params.get("accessToken") if isinstance(params, dict) else None
        if token in self.fake.rejected_tokens:
            self.send_frame(join_ref, ref, topic, "phx_reply", {
                "status": "error", "response": {"reason": self.fake.rejected_tokens[token]}})
            return
        if self.fake.expired_among(topic, params):
            self.send_frame(join_ref, ref, topic, "phx_reply", PACKAGE_EXPIRED)
            return
        if topic in self.joins:
            # Phoenix closes the earlier channel process of a duplicate join.
            self.send_frame(self.joins[topic], None, topic, "phx_close", {})
        self.joins[topic] = join_ref
        self.token = self.token or token
        self.send_frame(join_ref, ref, topic, "phx_reply", OK)
        self.fake.join_count += 1
        self.fake._changed()

    def connectionLost(self, reason: Any) -> None:
        super().connectionLost(reason)
        self.fake._closed(self)


class _FakePancakeFactory(WebSocketServerFactory):
    protocol = FakePancakeSession

    def __init__(self, fake: FakePancake, reactor: Any) -> None:
        super().__init__(reactor=reactor)
        self.fake = fake
        # No Autobahn timers: they would run on txaio's global reactor even
        # when the tests drive this server with a fake clock.
        self.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0)


class FakePancake:
    log = Logger()

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.factory = _FakePancakeFactory(self, reactor)
        self.rejected_tokens: dict[str, str] = {}  # token -> the reason its joins get
        self.expired_pages: set[str] = set()
        self.sessions: list[FakePancakeSession] = []  # every session ever opened
        self.open_sessions: list[FakePancakeSession] = []
        self.join_count = 0
        self.silent = False  # True: record frames but answer nothing, like a hung server
        self.peak_concurrent: Counter[str] = Counter()  # token -> most sessions at once
        self._waiters: list[tuple[Callable[[], bool], Deferred[None]]] = []
        self._port: Any = None

    # Control.

    def listen(self, port: int = 0, interface: str = "127.0.0.1") -> int:
        self._port = self.reactor.listenTCP(port, self.factory, interface=interface)
        return self._port.getHost().port

    def url(self) -> str:
        return f"ws://127.0.0.1:{self._port.getHost().port}/socket/websocket"

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        self.drop_all()
        if self._port is not None:
            await self._port.stopListening()

    def reject_token(self, token: str, reason: str = "unauthorized") -> None:
        """Refuse every join with ``token``, giving ``reason`` (some upstreams echo the token)."""
        self.rejected_tokens[token] = reason

    def expire_page(self, page_id: str) -> None:
        """The page's package expires: its joins are refused with error 122."""
        self.expired_pages.add(page_id)

    def renew_page(self, page_id: str) -> None:
        self.expired_pages.discard(page_id)

    def expired_among(self, topic: str, params: Any) -> bool:
        """Whether a join of ``topic`` names an expired page (``multiple_pages``
        names its pages in ``pageIds``, and fails as a whole)."""
        kind, _, page_id = topic.partition(":")
        if kind == "pages":
            return page_id in self.expired_pages
        if kind == "multiple_pages" and isinstance(params, dict):
            pages = params.get("pageIds")
            return isinstance(pages, list) and any(str(p) in self.expired_pages for p in pages)
        return False

    def push(self, topic: str, event: str, payload: Any) -> int:
        """Send an event to every session joined to ``topic``; return how many."""
        receivers = [s for s in self.open_sessions if topic in s.joins]
        for session in receivers:
            session.send_frame(session.joins[topic], None, topic, event, payload)
        return len(receivers)

    def crash(self, topic: str) -> None:
        """The channel process dies: joined clients get phx_error."""
        for session in self.open_sessions:
            join_ref = session.joins.pop(topic, None)
            if join_ref is not None:
                session.send_frame(join_ref, join_ref, topic, "phx_error", {})

    def drop_all(self) -> None:
        for session in list(self.open_sessions):
            session.dropConnection(abort=True)

    # Observation.

    @property
    def joined_topics(self) -> set[str]:
        return {topic for s in self.open_sessions for topic in s.joins}

    @property
    def frames(self) -> list[Any]:
        return [frame for s in self.sessions for frame in s.frames]

    def concurrent(self, token: str) -> int:
        return sum(1 for s in self.open_sessions if s.token == token)

    def wait_for(self, condition: Callable[[], bool]) -> Deferred[None]:
        """A Deferred that fires once ``condition()`` holds."""
        d: Deferred[None] = Deferred()
        self._waiters.append((condition, d))
        self._changed()
        return d

    def wait_joined(self, n: int) -> Deferred[None]:
        """Fires once ``n`` joins in all have succeeded."""
        return self.wait_for(lambda: self.join_count >= n)

    def wait_sessions(self, n: int) -> Deferred[None]:
        """Fires once ``n`` sessions in all have been opened."""
        return self.wait_for(lambda: len(self.sessions) >= n)

    def wait_frame(self, event: str) -> Deferred[None]:
        """Fires once some client has sent an ``event`` frame."""
        return self.wait_for(
            lambda: any(isinstance(f, list) and f[3] == event for f in self.frames)
        )

    # Called by sessions.

    def _opened(self, session: FakePancakeSession) -> None:
        self.sessions.append(session)
        self.open_sessions.append(session)
        self._changed()

    def _closed(self, session: FakePancakeSession) -> None:
        if session in self.open_sessions:
            self.open_sessions.remove(session)
        self._changed()

    def _changed(self) -> None:
        for session in self.open_sessions:
            if session.token is not None:
                self.peak_concurrent[session.token] = max(
                    self.peak_concurrent[session.token], self.concurrent(session.token)
                )
        ready = [(c, d) for c, d in self._waiters if c()]
        self._waiters = [(c, d) for c, d in self._waiters if (c, d) not in ready]
        for _, d in ready:
            d.callback(None)


def _run_command(fake: FakePancake, line: str) -> str:
    command, _, rest = line.strip().partition(" ")
    if command == "push":
        topic, event, payload = (rest.split(" ", 2) + ["{}"])[:3]
        return f"pushed to {fake.push(topic, event, json.loads(payload))} session(s)"
    if command == "crash":
        fake.crash(rest.strip())
        return "crashed"
    if command in ("expire", "renew"):
        (fake.expire_page if command == "expire" else fake.renew_page)(rest.strip())
        return f"{command}d {rest.strip()}"
    if command == "drop":
        fake.drop_all()
        return "dropped"
    if command == "status":
        joined = sorted(fake.joined_topics)
        return json.dumps({"sessions": len(fake.open_sessions), "joined": joined})
    return ("commands: push <topic> <event> <json> | crash <topic> | expire <pageId>"
            " | renew <pageId> | drop | status")


def main(argv: list[str] | None = None) -> None:
    from twisted.internet import reactor, stdio
    from twisted.protocols.basic import LineReceiver

    parser = argparse.ArgumentParser(description="Fake Pancake (Phoenix v2) server")
    parser.add_argument("--port", type=int, default=4000)
    parser.add_argument("--reject", action="append", default=[], metavar="TOKEN")
    parser.add_argument("--expire", action="append", default=[], metavar="PAGE_ID")
    args = parser.parse_args(argv)

    fake = FakePancake(reactor)
    for token in args.reject:
        fake.reject_token(token)
    for page_id in args.expire:
        fake.expire_page(page_id)
    port = fake.listen(args.port)

    class Console(LineReceiver):
        delimiter = b"\n"

        def connectionMade(self) -> None:
            self.sendLine(f"ws://127.0.0.1:{port}/socket/websocket".encode())

        def lineReceived(self, line: bytes) -> None:
            if line.strip():
                try:
                    answer = _run_command(fake, line.decode())
                except ValueError as e:
                    answer = f"error: {e}"
                self.sendLine(answer.encode())

        def connectionLost(self, reason: Any) -> None:
            if reactor.running:
                reactor.stop()

    stdio.StandardIO(Console())
    reactor.run()


if __name__ == "__main__":
    main()
