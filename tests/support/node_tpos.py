"""Run ``tests/interop/tpos_server.mjs`` (the official socket.io server playing
TPOS) as a child process of the reactor, so tests keep running meanwhile.

Commands go in on stdin; every JSON line it prints is kept in ``messages``::

    server = NodeTpos()
    await server.start()                  # server.url: ws://127.0.0.1:<port>/socket.io/
    await server.wait_for("joined")
    await server.command("emit shop on-events {...}")
    await server.stop()
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol

from tests.support.node import INTEROP, node as find_node
from tests.support.waiting import eventually


class NodeTpos(ProcessProtocol):
    def __init__(self, ping_interval_ms: int = 25000, ping_timeout_ms: int = 20000) -> None:
        self.args = [str(ping_interval_ms), str(ping_timeout_ms)]
        self.messages: list[dict[str, Any]] = []
        self.stderr = b""
        self.port: int | None = None
        self._buffer = b""
        self._ended: Deferred[None] = Deferred()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/socket.io/"

    async def start(self) -> None:
        node = find_node("socket.io")
        reactor.spawnProcess(self, node, [node, str(INTEROP / "tpos_server.mjs"), *self.args],
                             env=dict(os.environ), path=str(INTEROP))
        self.port = (await self.wait_for("listening"))["listening"]

    def outReceived(self, data: bytes) -> None:
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        self.messages.extend(json.loads(line) for line in lines if line.strip())

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def processEnded(self, reason: Any) -> None:
        self._ended.callback(None)

    def seen(self, key: str) -> list[Any]:
        """Every message printed under ``key``, in order."""
        return [m[key] for m in self.messages if key in m]

    async def wait_for(self, key: str, count: int = 1, timeout: float = 10.0) -> Any:
        """The ``count``-th message printed under ``key``, once it is there."""
        def printed() -> bool:
            if len(self.seen(key)) >= count:
                return True
            assert not self._ended.called, self._what(key, count)
            return False

        await eventually(printed, timeout, lambda: self._what(key, count))
        return self.messages[[i for i, m in enumerate(self.messages) if key in m][count - 1]]

    def _what(self, key: str, count: int) -> str:
        return (f"{count}x {key!r} from tpos_server.mjs; saw {self.messages}; "
                f"stderr: {self.stderr.decode(errors='replace')}")

    async def command(self, line: str) -> None:
        done = len(self.seen("done"))
        self.transport.write(line.encode() + b"\n")
        await self.wait_for("done", done + 1)

    async def stop(self) -> None:
        if not self._ended.called:
            self.transport.closeStdin()
            await self._ended
