"""
An in-memory network for unit tests: a client endpoint whose every
connection reaches a fresh protocol of a server factory through a
``twisted.test.iosim`` pump, with time on a fake clock.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.test import iosim
from zope.interface import implementer


@implementer(IStreamClientEndpoint)
class MemoryEndpoint:
    def __init__(self, server_factory: Any, clock: Clock) -> None:
        self.server_factory = server_factory
        self.clock = clock
        self.attempts = 0
        self.refusing = False
        self.pumps: list[iosim.IOPump] = []

    def connect(self, factory: Any) -> Deferred[Any]:
        self.attempts += 1
        if self.refusing:
            return fail(ConnectionRefusedError())
        client = factory.buildProtocol(None)
        server = self.server_factory.buildProtocol(None)
        pump = iosim.connect(
            server, iosim.makeFakeServer(server), client, iosim.makeFakeClient(client),
            greet=False, clock=self.clock,
        )
        self.pumps.append(pump)
        return succeed(client)

    def flush(self) -> None:
        """Deliver every byte and disconnection in flight, both ways."""
        for pump in self.pumps:
            pump.flush()

    def advance(self, seconds: float) -> None:
        """Let time pass, then deliver what it set moving."""
        self.clock.advance(seconds)
        self.flush()


class ServiceOnMemory:
    """
    An upstream service whose connections go through ``network``, on a fake
    clock. Subclasses set ``clock``, ``network`` and ``service``.
    """

    clock: Clock
    network: MemoryEndpoint
    service: Any

    def start(self) -> None:
        self.service.startService()
        self.network.flush()

    def advance(self, seconds: float) -> None:
        self.network.advance(seconds)

    def stop(self) -> None:
        """Stop the service; it must be done at once and leave no timer behind."""
        stopped = self.service.stopService()
        self.network.flush()
        assert stopped.called
        assert self.clock.getDelayedCalls() == []
