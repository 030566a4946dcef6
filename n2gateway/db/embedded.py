"""An embedded PostgreSQL for a gateway run without ``DATABASE_URL``.

The ``pgserver`` wheel ships the PostgreSQL binaries and knows how to run them as an
unprivileged user when we are root. Its calls block for seconds (initdb, pg_ctl -w),
so they run in a thread. The server is reused across restarts of the gateway (the data
directory persists) and stopped when the last gateway using it stops.
"""

from __future__ import annotations

from pathlib import Path

from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure


class EmbeddedPostgres:
    log = Logger()

    def __init__(self, reactor, data_dir: Path) -> None:
        self._reactor = reactor
        self.pgdata = (data_dir / "pgdata").resolve()
        self._server = None
        self._starting: defer.Deferred | None = None

    async def start(self) -> str:
        """Start (or reuse) the server; return a DSN for it (a local socket, no password)."""
        self.log.info("starting embedded PostgreSQL in {pgdata}", pgdata=str(self.pgdata))
        self._starting = deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), self._get_server)
        self._starting.addCallback(self._started)
        await _shielded(self._starting)
        return self._server.get_uri()

    def _started(self, server) -> None:
        self._server = server

    def _get_server(self):
        import pgserver

        self.pgdata.mkdir(parents=True, exist_ok=True)
        return pgserver.get_server(self.pgdata, cleanup_mode="stop")

    async def stop(self) -> None:
        # A start cancelled by an early stop (SIGTERM during initdb) goes on in its
        # thread and starts the server anyway: wait for it, then stop that server.
        if self._starting is not None:
            starting, self._starting = self._starting, None
            try:
                await _shielded(starting)
            except Exception:
                pass  # start() reported it; there is no server to stop
        if self._server is None:
            return
        server, self._server = self._server, None
        await deferToThreadPool(self._reactor, self._reactor.getThreadPool(), server.cleanup)
        self.log.info("embedded PostgreSQL released")


def _shielded(d: defer.Deferred) -> defer.Deferred:
    """A Deferred firing with ``d``'s result; cancelling it leaves ``d`` running."""
    copy: defer.Deferred = defer.Deferred()

    def pass_on(result):
        if not copy.called:
            (copy.errback if isinstance(result, Failure) else copy.callback)(result)
        return None  # d's result is delivered (or its waiter left): nothing is unhandled

    d.addBoth(pass_on)
    return copy
