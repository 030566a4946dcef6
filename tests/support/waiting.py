"""Waiting on the real reactor for something another party does."""

from typing import Callable

from twisted.internet import reactor
from twisted.internet.task import deferLater


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Return once C{condition()} holds; fail the test after C{timeout} seconds."""
    waited = 0.0
    while not condition():
        assert waited < timeout, "condition not met in time"
        await deferLater(reactor, 0.02)
        waited += 0.02
