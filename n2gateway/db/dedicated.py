"""A connection of one service's own, outside the pool: for state that lives as long
as a session does (the leadership's advisory locks), where a pooled connection would
hand the state to whoever checks it out next."""

from __future__ import annotations

from typing import Any, Sequence

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

from n2gateway.db.cancellable import cancellable
from n2gateway.db.errors import raise_ours


class DedicatedConnection:
    """Statements on one connection, each bounded by ``timeout`` seconds: a statement
    that fails, times out or finds the connection gone raises ``DatabaseUnavailable``,
    one the database refuses a ``DatabaseError``. A statement past its deadline closes
    the connection: the state it held may be gone. Whoever opened it (see
    ``Database.dedicated``) hears of the socket closing through ``on_lost``."""

    def __init__(self, connection: Any, reactor: IReactorTime, timeout: float) -> None:
        self._connection = connection
        self._reactor = reactor
        self.timeout = timeout

    async def query(self, sql: str, params: Sequence[Any] | dict | None = None) -> list[tuple]:
        return await self._bounded(self._connection.runQuery(sql, params))

    async def execute(self, sql: str, params: Sequence[Any] | dict | None = None) -> None:
        await self._bounded(self._connection.runOperation(sql, params))

    async def _bounded(self, statement: defer.Deferred) -> Any:
        d = cancellable(statement, self.close)
        d.addTimeout(self.timeout, self._reactor)
        try:
            return await d
        except Exception as e:
            raise_ours(e)

    def close(self) -> None:
        """Close it (again: nothing happens); ``on_lost`` is called."""
        self._connection.close()

