"""Waiting on the real reactor for something another party does (a subprocess, a
peer, a database), the one polling helper of the tests and the benchmarks."""

from __future__ import annotations

import inspect
import time
from typing import Awaitable, Callable, TypeVar

from twisted.internet import reactor
from twisted.internet.task import deferLater

T = TypeVar("T")


async def sleep(seconds: float) -> None:
    """Let the reactor run for ``seconds`` (to see that nothing more happens)."""
    await deferLater(reactor, seconds)


async def eventually(condition: Callable[[], T | Awaitable[T]], timeout: float = 10.0,
                     what: str | Callable[[], str] = "", interval: float = 0.02) -> T:
    """Poll ``condition`` every ``interval`` seconds until it returns something truthy,
    and return that.

    :param condition: a plain function or a coroutine function (an HTTP request, say);
        it may raise to end the wait early (a subprocess that exited).
    :param timeout: seconds after which the test fails.
    :param what: what was awaited, for the failure; a function is called only then,
        so that it can describe the state at that moment (a log, the frames seen).
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            described = what() if callable(what) else what
            raise AssertionError(f"not within {timeout} s: {described or condition}")
        await sleep(interval)


async def time_until(condition: Callable[[], object], timeout: float = 10.0,
                     what: str | Callable[[], str] = "") -> float:
    """Seconds until ``condition`` holds (see :func:`eventually`), for a test that
    bounds how long something takes."""
    started = time.monotonic()
    await eventually(condition, timeout, what)
    return time.monotonic() - started
