"""A Socket.IO client in a subprocess, driven with JSON commands on its stdin; its
JSON records are awaited without blocking the reactor. The official socket.io-client
in Node (``tests/interop/socketio_peer.mjs``), or python-socketio's client
(``tests/interop/python_socketio_peer.py``), or socket.io-client 2.x
(``tests/interop/socketio_v2_peer.mjs``)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from twisted.internet import defer, protocol, reactor

from tests.support.node import INTEROP, node


class SocketIoPeer(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.stderr = b""
        self._buffer = b""
        self._waiters: list[tuple[str, defer.Deferred]] = []
        self._read: dict[str, int] = {}  # per type: records taken by `next` so far
        self.ended: defer.Deferred = defer.Deferred()

    @classmethod
    def spawn(cls, client: str = "node") -> "SocketIoPeer":
        peer = cls()
        if client == "python":
            executable, script = sys.executable, "python_socketio_peer.py"
        elif client == "v2":
            executable, script = node("socket.io-client-v2"), "socketio_v2_peer.mjs"
        else:
            executable, script = node("socket.io-client"), "socketio_peer.mjs"
        reactor.spawnProcess(peer, executable, [executable, str(INTEROP / script)],
                             env=dict(os.environ), path=str(INTEROP))
        return peer

    @classmethod
    async def connected(cls, url: str, auth: dict, client: str = "node",
                        **options: Any) -> "SocketIoPeer":
        """A new ``client``, connected (as a fresh session) with ``auth`` and the
        client's own ``options`` (its defaults when none)."""
        peer = cls.spawn(client)
        peer.command("connect", url=url, auth=auth, options=options)
        assert (await peer.next("connect"))["recovered"] is False
        return peer

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self.records.append(json.loads(line))
        self._wake()

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def processEnded(self, reason) -> None:
        self.ended.callback(None)
        for _, waiter in self._waiters:
            waiter.errback(AssertionError(f"node exited: {self.stderr.decode()[-2000:]}"))
        self._waiters.clear()

    def _wake(self) -> None:
        for entry in list(self._waiters):
            record = self._take(entry[0])
            if record is not None:
                self._waiters.remove(entry)
                entry[1].callback(record)

    def _take(self, kind: str) -> dict | None:
        seen = [r for r in self.records if r["type"] == kind]
        taken = self._read.get(kind, 0)
        if taken < len(seen):
            self._read[kind] = taken + 1
            return seen[taken]
        return None

    def command(self, op: str, **fields: Any) -> None:
        self.transport.write(json.dumps({"op": op, **fields}).encode() + b"\n")

    async def next(self, kind: str, timeout: float = 10.0) -> dict:
        """The next record of type ``kind`` after the last one taken."""
        record = self._take(kind)
        if record is not None:
            return record
        waiter: defer.Deferred = defer.Deferred()
        self._waiters.append((kind, waiter))
        waiter.addTimeout(timeout, reactor)
        try:
            return await waiter
        finally:
            # Timed out: a later record must not go to this waiter.
            if (kind, waiter) in self._waiters:
                self._waiters.remove((kind, waiter))

    async def emit(self, event: str, *args: Any, tag: str = "") -> Any:
        self.command("emit", event=event, args=list(args), tag=tag)
        return (await self.next("ack"))["answer"]

    def events(self) -> list[tuple[str, list]]:
        return [(r["event"], r["args"]) for r in self.records if r["type"] == "event"]

    async def close(self) -> None:
        if not self.ended.called:
            self.command("exit")
            self.transport.closeStdin()
            await self.ended
