"""Chat sync: rows written to the chat tables by any backend become ``message:new``,
``message:read`` and ``users:updated`` events (SPEC §6), relayed exactly once.

Of the gateways sharing the database one runs the sync (the leadership source
``chat``); the cursor lives in the database, so the next owner goes on from it.

Settings (environment): ``N2GATEWAY_CHAT_USERS_TABLE`` (``users``),
``N2GATEWAY_CHAT_MESSAGES_TABLE`` (``chats``), ``N2GATEWAY_CHAT_GAP_GRACE`` (seconds a
missing id may still be drawn but not yet inserted; 10).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from twisted.application.service import IService

from n2gateway.hookspecs import hookimpl

from plugins.chat.schema import Tables, quote_table
from plugins.chat.store import GRACE, ChatStore
from plugins.chat.sync import ChatSync

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SOURCE = "chat"

# One sync per gateway (tests run several in one process), keyed by its context.
_syncs: dict[int, ChatSync] = {}


@hookimpl
def n2gateway_migrations(register: Callable[[Path], None]) -> None:
    register(MIGRATIONS)


@hookimpl
def n2gateway_services(context: Any, register: Callable[[IService], None]) -> None:
    settings = context.settings
    tables = Tables(users=settings.plugin_setting("chat_users_table", "users"),
                    messages=settings.plugin_setting("chat_messages_table", "chats"))
    quote_table(tables.users), quote_table(tables.messages)  # fail early on a bad name
    grace = float(settings.plugin_setting("chat_gap_grace", str(GRACE)))
    sync = _syncs[id(context)] = ChatSync(context.reactor, context.listener,
                                          ChatStore(context.db, context.journal, tables, grace=grace))
    context.leadership.claim(SOURCE, lambda: sync)


@hookimpl
def n2gateway_status(context: Any) -> dict[str, Any] | None:
    sync = _syncs.get(id(context))
    if sync is None:
        return {"state": "starting"}
    return {
        "held": bool(sync.running),
        "listening": sync.listening,
        "cursor": sync.low,
        "waiting": sync.waiting,
        "relayed": sync.relayed,
        "reads_relayed": sync.reads_relayed,
        "unrelayable": sync.unrelayable,
    }
