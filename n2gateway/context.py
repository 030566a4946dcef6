"""What a plugin receives at start-up: everything it may use, nothing global."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Sequence

from n2gateway.config import Settings
from n2gateway.db import Database
from n2gateway.db.listen import Listener
from n2gateway.journal import Journal
from n2gateway.leadership import Leadership


# eq=False: contexts compare and hash by identity, so a plugin can key its
# per-gateway objects by context (several gateways run in one test process).
@dataclass(frozen=True, eq=False)
class PluginContext:
    """``reactor`` is also the clock: plugins schedule with ``reactor.callLater``."""

    settings: Settings
    reactor: Any
    db: Database
    #: ``await publish(rooms, event, payload)`` appends to the journal and returns
    #: the event's offset once it is durable; the hub fans it out.
    publish: Callable[[Sequence[str], str, Any], Awaitable[int]]
    #: For sources that publish inside their own transaction: ``journal.append_in``
    #: (or ``journal.commit_with``, the append in the COMMIT's round trip), then
    #: ``journal.ring()`` once it has committed.
    journal: Journal
    #: The gateway's one LISTEN connection: ``listener.subscribe(channel, ...)``.
    listener: Listener
    #: Who holds which source (``await leadership.owner(name)``) and this gateway's
    #: ``node_id``; sources are registered through the ``n2gateway_sources`` hook.
    leadership: Leadership
