"""An embedded PostgreSQL for a gateway run without ``DATABASE_URL``.

The ``pgserver`` wheel ships the PostgreSQL binaries and knows how to run them as an
unprivileged user when we are root. Its calls block for seconds (initdb, pg_ctl -w),
so they run in a thread. The server is reused across restarts of the gateway (the data
directory persists) and stopped when the last gateway using it stops.
"""

from __future__ import annotations

from pathlib import Path

from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger


class EmbeddedPostgres:
    log = Logger()

    def __init__(self, reactor, data_dir: Path) -> None:
        self._reactor = reactor
        self.pgdata = (data_dir / "pgdata").resolve()
        self._server = None

    async def start(self) -> str:
        """Start (or reuse) the server; return a DSN for it (a local socket, no password)."""
        self.log.info("starting embedded PostgreSQL in {pgdata}", pgdata=str(self.pgdata))
        self._server = await deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), self._get_server)
        return self._server.get_uri()

    def _get_server(self):
        import pgserver

        self.pgdata.mkdir(parents=True, exist_ok=True)
        return pgserver.get_server(self.pgdata, cleanup_mode="stop")

    async def stop(self) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        await deferToThreadPool(self._reactor, self._reactor.getThreadPool(), server.cleanup)
        self.log.info("embedded PostgreSQL released")
