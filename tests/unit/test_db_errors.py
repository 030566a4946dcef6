"""The database layer's own errors: what the driver raises becomes ours, without the
values PostgreSQL quotes; a dedicated connection's statement that hangs times out."""

from __future__ import annotations

import psycopg2
import psycopg2.errors
import pytest
from twisted.internet import defer, task

from n2gateway.db import (ConstraintViolation, DatabaseError, DatabaseUnavailable,
                          DedicatedConnection, SerializationConflict)
from n2gateway.db.errors import ours

QUOTED = "a-secret-value-postgres-quotes"


def test_driver_errors_become_the_layers_own_without_quoting_values() -> None:
    refused = ours(psycopg2.errors.InvalidTextRepresentation(
        f'invalid input syntax for type integer: "{QUOTED}"'))
    assert type(refused) is DatabaseError
    assert (refused.kind, str(refused)) == ("InvalidTextRepresentation",
                                            "InvalidTextRepresentation")
    assert QUOTED not in str(refused)
    assert isinstance(ours(psycopg2.errors.SerializationFailure("could not serialize")),
                      SerializationConflict)
    assert isinstance(ours(psycopg2.errors.CheckViolation(f"DETAIL: {QUOTED}")),
                      ConstraintViolation)
    lost = ours(psycopg2.OperationalError("server closed the connection unexpectedly"))
    assert type(lost) is DatabaseUnavailable
    assert str(ours(defer.TimeoutError())) == "timed out"
    bug = RuntimeError("not the database's")
    assert ours(bug) is bug


class Hanging:
    """A driver connection whose statements never answer until told to."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.pending: list[defer.Deferred] = []
        self.closed = False

    def runQuery(self, sql, params=None) -> defer.Deferred:
        self.statements.append(sql)
        self.pending.append(defer.Deferred())
        return self.pending[-1]

    runOperation = runQuery

    def close(self) -> None:
        self.closed = True


def test_a_dedicated_statement_not_answered_in_time_is_unavailable_and_closed() -> None:
    clock, driver = task.Clock(), Hanging()
    connection = DedicatedConnection(driver, clock, timeout=3.0)
    d = defer.Deferred.fromCoroutine(connection.query("SELECT 1"))
    clock.advance(2.9)
    assert not d.called
    assert not driver.closed
    clock.advance(0.1)
    assert isinstance(d.result.value, DatabaseUnavailable) and "timed out" in str(d.result.value)
    d.addErrback(lambda _: None)
    assert driver.closed  # whatever state the connection held may be gone
    assert clock.getDelayedCalls() == []


def test_a_dedicated_statement_the_database_refuses_is_a_database_error() -> None:
    clock, driver = task.Clock(), Hanging()
    connection = DedicatedConnection(driver, clock, timeout=3.0)
    d = defer.Deferred.fromCoroutine(connection.execute("INSERT ..."))
    driver.pending[0].errback(psycopg2.errors.UniqueViolation(f"DETAIL: {QUOTED}"))
    failure = d.result
    d.addErrback(lambda _: None)
    assert isinstance(failure.value, ConstraintViolation)
    assert QUOTED not in str(failure.value) and failure.value.__cause__ is None
    assert clock.getDelayedCalls() == []


def test_answers_pass_through() -> None:
    clock, driver = task.Clock(), Hanging()
    connection = DedicatedConnection(driver, clock, timeout=3.0)
    d = defer.Deferred.fromCoroutine(connection.query("SELECT 1"))
    driver.pending[0].callback([(1,)])
    assert d.result == [(1,)] and clock.getDelayedCalls() == []


@pytest.mark.parametrize("code", ["23505", "23514"])
def test_every_constraint_class_code_is_a_constraint_violation(code) -> None:
    error = psycopg2.errors.lookup(code)("refused")
    assert isinstance(ours(error), ConstraintViolation)
