"""What the database layer raises: its own errors, never the driver's.

Code outside ``db/`` catches these and needs no psycopg2. Their messages are safe to
log: PostgreSQL's own text (its DETAIL, and often its primary message) quotes the
rows and values involved, secrets among them, so it is never part of the message,
and the driver's exception is not chained (tracebacks would print it).
"""

from __future__ import annotations

from typing import NoReturn

import psycopg2
from psycopg2.extensions import TransactionRollbackError
from twisted.internet import defer

from n2gateway.redact import scrub_text


class DatabaseUnavailable(Exception):
    """The database cannot be reached right now; the message is safe to show."""


class DatabaseError(Exception):
    """The database refused a statement. ``kind`` (the error's name, such as
    ``CheckViolation``) and ``code`` (its SQLSTATE) are the message; ``primary`` is
    PostgreSQL's primary message, which may quote values: shown only where the caller
    knows it does not (a constraint's name)."""

    def __init__(self, kind: str, code: str | None, primary: str | None = None) -> None:
        super().__init__(f"{kind} {code or ''}".strip())
        self.kind = kind
        self.code = code
        self.primary = primary


class SerializationConflict(DatabaseError):
    """A concurrent transaction won (a serialization failure, a deadlock): running the
    transaction again may succeed."""


class ConstraintViolation(DatabaseError):
    """A row broke a constraint of its table."""


def describe_error(error: BaseException) -> str:
    """One line about a database error, without connection strings or passwords."""
    if isinstance(error, defer.TimeoutError | defer.CancelledError):
        return "timed out"
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    # libpq messages name host and port, never the password; scrub connection
    # strings anyway, in case one is quoted ("password authentication failed" stays).
    return scrub_text(first_line).strip() or type(error).__name__


def is_connection_error(error: BaseException) -> bool:
    # A transaction rolled back by a concurrent one is an OperationalError to the
    # driver too, on a connection that is fine.
    return (isinstance(error, psycopg2.OperationalError | psycopg2.InterfaceError)
            and not isinstance(error, TransactionRollbackError))


def raise_ours(error: Exception) -> NoReturn:
    """Raise ``ours(error)``: ``error`` itself when it is not the driver's, else the
    layer's own, not chained to the driver's (a traceback would print its text)."""
    mapped = ours(error)
    if mapped is error:
        raise error
    raise mapped from None


def ours(error: Exception) -> Exception:
    """The layer's own error for a driver's (anything else is returned as it is)."""
    if isinstance(error, defer.TimeoutError | defer.CancelledError) or is_connection_error(error):
        return DatabaseUnavailable(describe_error(error))
    if not isinstance(error, psycopg2.Error):
        return error
    code = error.pgcode
    diag = getattr(error, "diag", None)
    primary = diag.message_primary if diag is not None else None
    kind = type(error).__name__
    if isinstance(error, TransactionRollbackError):
        return SerializationConflict(kind, code, primary)
    if isinstance(error, psycopg2.IntegrityError):
        return ConstraintViolation(kind, code, primary)
    return DatabaseError(kind, code, primary)
