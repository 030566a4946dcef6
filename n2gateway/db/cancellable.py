"""Statements that can be cancelled, or given a deadline.

txpostgres' Deferreds cannot: their ``cancel`` raises (``_CancelInProgress``), since
the PostgreSQL protocol wants the exchange finished before the connection is used
again. Raised inside Twisted's cancellation of a coroutine, that error became the
coroutine's result while its statement ran on, and its connection went back to the
pool still busy; raised inside ``addTimeout``'s timer, it left the deadline unmet.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import defer
from twisted.python.failure import Failure


def cancellable(statement: defer.Deferred,
                cancel: Callable[[], None] = lambda: None) -> defer.Deferred:
    """``statement``'s outcome, in a Deferred whose cancellation calls ``cancel`` (ask
    the server to stop, or close the connection) and then fails at once with
    ``CancelledError`` (``TimeoutError``, for a deadline), whatever ``cancel`` made
    ``statement`` do. ``statement`` runs on to its end, its outcome then nobody's:
    without ``cancel``, a wait for work that cannot be interrupted (a thread)."""
    given_up = False

    def cancelled(caller: defer.Deferred) -> None:
        nonlocal given_up
        given_up = True
        cancel()
        caller.errback(Failure(defer.CancelledError()))

    caller: defer.Deferred = defer.Deferred(cancelled)

    def ended(outcome: Any) -> None:
        if not given_up:
            caller.callback(outcome)  # a Failure takes the errback chain

    statement.addBoth(ended)
    return caller
