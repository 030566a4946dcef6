"""An embedded PostgreSQL for a gateway run without ``DATABASE_URL``.

The ``pgserver`` wheel ships the PostgreSQL binaries and knows how to run them as an
unprivileged user when we are root. Its calls block for seconds (initdb, pg_ctl -w),
so they run in a thread. The server is reused across restarts of the gateway (the data
directory persists) and stopped when the last gateway using it stops.

pgserver counts its users in ``pgdata/.handle_pids.json`` and stops the server only
when the last one leaves; a gateway that was SIGKILLed never leaves, so its pid would
keep the server alive at every later clean exit. Pids of processes that are gone are
dropped before each start and each stop.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Callable

from twisted.application import service
from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from n2gateway.db.cancellable import cancellable
from n2gateway.db.pool import retry_delay
from n2gateway.pause import Pause
from n2gateway.scheduling import Periodic


def pgdata_of(data_dir: Path) -> Path:
    """Where the embedded PostgreSQL keeps its data in the gateway's ``data_dir``."""
    return (data_dir / "pgdata").resolve()


class EmbeddedPostgres:
    log = Logger()

    def __init__(self, reactor, data_dir: Path) -> None:
        self._reactor = reactor
        self.pgdata = pgdata_of(data_dir)
        self._server = None
        self._starting: defer.Deferred | None = None

    async def start(self) -> str:
        """Start (or reuse) the server; return a DSN for it (a local socket, no password)."""
        self.log.info("starting embedded PostgreSQL in {pgdata}", pgdata=str(self.pgdata))
        self._starting = deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), self._get_server)
        self._starting.addCallback(self._started)
        await cancellable(self._starting)
        uri = self._server.get_uri()
        # The URL holds no password (local socket, trust): psql "$(n2gateway dsn)".
        self.log.info("embedded PostgreSQL ready at {uri}", uri=uri)
        return uri

    def _started(self, server) -> None:
        self._server = server

    def _get_server(self):
        pgserver = import_pgserver()
        self.pgdata.mkdir(parents=True, exist_ok=True)
        gone = forget_dead_users(self.pgdata)
        if gone:
            self.log.info("embedded PostgreSQL: forgot gateways that exited without stopping "
                          "it (pids {pids})", pids=gone)
        return pgserver.get_server(self.pgdata, cleanup_mode="stop")

    def postmaster_alive(self) -> bool:
        """Whether the server's postmaster runs (a look at ``postmaster.pid``)."""
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return False
        import psutil

        return _running(psutil, pid)

    async def restart(self) -> str:
        """Start the server again after its postmaster died; return its DSN."""
        server = self._server
        if server is None:
            raise RuntimeError("the embedded PostgreSQL was not started")
        await deferToThreadPool(self._reactor, self._reactor.getThreadPool(),
                                self._start_again, server)
        return server.get_uri()

    @staticmethod
    def _start_again(server) -> None:
        from pgserver.postgres_server import PostgresServer

        with PostgresServer._lock:
            server.ensure_postgres_running()

    def _release(self, server) -> None:
        forget_dead_users(self.pgdata)
        server.cleanup()

    async def stop(self) -> None:
        # A start cancelled by an early stop (SIGTERM during initdb) goes on in its
        # thread and starts the server anyway: wait for it, then stop that server.
        if self._starting is not None:
            starting, self._starting = self._starting, None
            try:
                await cancellable(starting)
            except Exception:
                pass  # start() reported it; there is no server to stop
        if self._server is None:
            return
        server, self._server = self._server, None
        await deferToThreadPool(self._reactor, self._reactor.getThreadPool(), self._release, server)
        self.log.info("embedded PostgreSQL released")


def import_pgserver():
    """``pgserver``, imported with a private runtime directory named.

    pgserver keeps its lock file (and the socket, when the data dir's path is too long
    for one) in the user's runtime directory, ``XDG_RUNTIME_DIR``. Without a login
    session (containers, services, ``make run`` over ssh as root) it is unset, or it
    names a directory others may read (a ``mkdir -p`` leaves it 0755); platformdirs
    then warns at every command before falling back to ``<tmp>/runtime-<uid>``. We make
    that same directory private and name it, so every pgserver user on the machine
    still shares one lock, and nothing is printed.

    As root, pgserver runs the server as a user of its own, who must reach the socket.
    It would put the socket of a data directory too deep for a socket path below the
    runtime directory and open that directory to everyone; the next import anywhere
    closes it to 0700 again, the server cannot remove its socket's lock file when it
    stops, and that file refuses the next start. Such sockets get a directory of their
    own instead."""
    if not _is_private_dir(os.environ.get("XDG_RUNTIME_DIR", "")):
        runtime = _own_directory(Path(tempfile.gettempdir()) / f"runtime-{os.geteuid()}", 0o700)
        runtime.chmod(0o700)  # created 0755 by a parent mkdir, which is refused now
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    import pgserver
    from pgserver.postgres_server import PostgresServer

    if os.geteuid() == 0:
        PostgresServer.runtime_path = _own_directory(
            Path(tempfile.gettempdir()) / "n2gateway-pgserver-sockets", 0o755)
    return pgserver


def _own_directory(path: Path, mode: int) -> Path:
    """``path``, created with ``mode`` if missing, refused unless it is a real directory
    of ours (a name in a shared temporary directory may have been taken by someone else)."""
    path.mkdir(mode=mode, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise PermissionError(f"{path} is not a directory of uid {os.geteuid()}; remove it")
    return path


def _is_private_dir(path: str) -> bool:
    """The test platformdirs applies to a runtime directory: ours, a real directory, 0700."""
    try:
        info = os.lstat(path) if path else None
    except OSError:
        return False
    return (info is not None and stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
            and stat.S_IMODE(info.st_mode) == 0o700)


def running_uri(data_dir: Path) -> str | None:
    """The URL of the embedded PostgreSQL running on ``data_dir``, or None when none is
    (no ``postmaster.pid``, or one left by a server that is gone)."""
    import_pgserver()
    from pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata_of(data_dir))
    if info is None or not info.is_running() or info.status != "ready":
        return None
    return info.get_uri()


def forget_dead_users(pgdata: Path) -> list[int]:
    """Drop the pids of processes that no longer run from pgserver's list of the
    server's users (under pgserver's own lock); return the pids dropped."""
    import psutil
    import_pgserver()
    from pgserver.postgres_server import PostgresServer
    from pgserver.utils import DiskList

    users = DiskList(pgdata / ".handle_pids.json")
    with PostgresServer._lock:
        pids = users.get()
        alive = [pid for pid in pids if _running(psutil, pid)]
        if alive != pids:
            users.put(alive)
    return [pid for pid in pids if pid not in alive]


def _running(psutil, pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class EmbeddedKeeper(service.MultiService):
    """Restarts the embedded PostgreSQL when its postmaster dies (killed, crashed), with
    growing delays between attempts; ``on_restarted(dsn)`` after each restart. The
    pool heals on its own once the server answers again."""

    log = Logger()

    def __init__(self, embedded: EmbeddedPostgres, reactor, on_restarted: Callable[[str], None],
                 interval: float = 2.0) -> None:
        super().__init__()
        self._embedded = embedded
        self._on_restarted = on_restarted
        Periodic(interval, self._check, reactor,
                 what="embedded PostgreSQL check").setServiceParent(self)
        self._restarting: defer.Deferred | None = None
        self._pause = Pause(reactor)
        #: Times the server was restarted, for tests and the log.
        self.restarts = 0

    def stopService(self) -> defer.Deferred:
        super().stopService()
        self._pause.cancel()
        # A restart running in a thread cannot be interrupted: it finishes first.
        return cancellable(self._restarting) if self._restarting else defer.succeed(None)

    def _check(self) -> None:
        if self._restarting is None and not self._embedded.postmaster_alive():
            self._restarting = defer.Deferred.fromCoroutine(self._restart())

    async def _restart(self) -> None:
        attempt = 0
        try:
            while self.running:
                self.log.warn("embedded PostgreSQL is not running; restarting it "
                              "(attempt {attempt})", attempt=attempt + 1)
                try:
                    dsn = await self._embedded.restart()
                except Exception as e:
                    delay = retry_delay(attempt)
                    attempt += 1
                    self.log.warn("embedded PostgreSQL restart failed ({reason}); "
                                  "next attempt in {delay:.1f} s",
                                  reason=type(e).__name__, delay=delay)
                    if not await self._pause(delay):
                        return  # stopping
                    continue
                self.restarts += 1
                self.log.info("embedded PostgreSQL restarted")
                self._on_restarted(dsn)
                return
        finally:
            self._restarting = None
