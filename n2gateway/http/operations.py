"""What the operations routes (``/health``, ``/api/hub/status``, ``/metrics``) read of a
running gateway, typed: the HTTP layer gets this facade, never the gateway itself.

Routes only read here. The one state a route changes is the database's, and that
belongs to the ``DatabaseProbe``: ``/health`` asks the database through it, and
start-up reports through it what it found.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

from n2gateway.db import Database, DatabaseUnavailable
from n2gateway.upstream.provider import ProviderStatus

if TYPE_CHECKING:
    from n2gateway.config import Settings
    from n2gateway.db.listen import Listener
    from n2gateway.http.site import GatewaySite
    from n2gateway.hub import Hub
    from n2gateway.journal import Journal
    from n2gateway.leadership import Leadership


class Endpoint(Protocol):
    """A downstream endpoint (``/ws``, Socket.IO), as far as operators see it."""

    #: Close frames sent to its clients, by close code.
    closes: Mapping[int, int]
    #: Clients closed as too slow to follow (4008).
    slow_closed: int


class DatabaseProbe:
    """The database's state as operators see it: ``starting`` until start-up first
    reaches it, then ``up`` or ``down`` as the last look found, with the reason."""

    def __init__(self, db: Database, kind: str) -> None:
        self._db = db
        self.kind = kind
        self.state = "starting"
        self.error: str | None = None

    @property
    def up(self) -> bool:
        return self.state == "up"

    async def check(self) -> None:
        """Ask the database now (``SELECT 1`` with a short timeout), once it is configured."""
        if not self._db.configured:
            return
        try:
            await self._db.ping()
        except DatabaseUnavailable as e:
            self.state, self.error = "down", str(e)
        else:
            self.reached()

    def reached(self) -> None:
        self.state, self.error = "up", None

    def unreachable(self, reason: str) -> None:
        """Start-up could not reach it; the state stays what the last look said."""
        self.error = reason

    def lost_during_start(self, reason: str) -> None:
        """Lost while start-up was migrating: start-up waits for it again."""
        self.state, self.error = "starting", reason

    def as_json(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"kind": self.kind, "state": self.state}
        if self.error:
            answer["error"] = self.error
        return answer


@dataclass(eq=False)
class Operations:
    """One gateway's parts, as the operations routes and ``/metrics`` read them."""

    settings: Settings
    #: The clock route deadlines are kept on.
    reactor: Any
    hub: Hub
    journal: Journal
    db: Database
    listener: Listener
    leadership: Leadership
    #: The downstream endpoints by protocol name.
    endpoints: Mapping[str, Endpoint]
    database: DatabaseProbe
    #: The plugins' ``n2gateway_status`` answers, by plugin name.
    plugin_answers: Callable[[], Mapping[str, Any]]
    #: Start-up is over (migrated, services started): ``/health`` may say "ok".
    ready: bool = False
    #: The HTTP site, once listening: its answers are counted for ``/metrics``.
    site: GatewaySite | None = None

    def connections_by_protocol(self) -> dict[str, int]:
        counts = dict.fromkeys(self.endpoints, 0)
        for session in self.hub.sessions:
            counts[session.wire.protocol_name] += 1
        return counts

    def closes(self) -> dict[str, Mapping[int, int]]:
        """``Endpoint.closes``, by endpoint."""
        return {name: endpoint.closes for name, endpoint in self.endpoints.items()}

    def slow_closed(self) -> dict[str, int]:
        """``Endpoint.slow_closed``, by endpoint."""
        return {name: endpoint.slow_closed for name, endpoint in self.endpoints.items()}

    async def node_status(self) -> dict[str, Any]:
        """This node's id, the sources it owns and who owns every source."""
        status = self.leadership.status()
        try:
            status["owners"] = await self.leadership.owners()
        except DatabaseUnavailable:
            status["owners"] = None
        return status

    def plugin_status(self) -> dict[str, Any]:
        """Every plugin's status, as JSON, by plugin name."""
        return {name: answer.as_json() if isinstance(answer, ProviderStatus) else answer
                for name, answer in self.plugin_answers().items()}
