"""Chat sync: rows written to the chat tables by any backend become ``message:new``,
``message:read`` and ``users:updated`` events (SPEC §6), relayed exactly once.

Of the gateways sharing the database one runs the sync (the leadership source
``chat``); the cursor lives in the database, so the next owner goes on from it.

Options (``n2gateway_options``): ``--chat-users-table``, ``--chat-messages-table``,
``--chat-gap-grace`` (``N2GATEWAY_CHAT_USERS_TABLE``, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from twisted.application.service import IService

from n2gateway.hookspecs import hookimpl
from n2gateway.plugin_options import PluginOption, duration

from n2gateway_plugins.chat.schema import Tables, quote_table
from n2gateway_plugins.chat.store import GRACE, ChatStore
from n2gateway_plugins.chat.sync import ChatSync

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SOURCE = "chat"

# One sync per gateway (tests run several in one process), keyed by its context.
_syncs: dict[int, ChatSync] = {}


def _table_name(text: str) -> str:
    quote_table(text)  # ValueError for anything but [schema.]table
    return text


@hookimpl
def n2gateway_options(register: Callable[[PluginOption], None]) -> None:
    register(PluginOption("users-table", "The users table (may be schema.table).", "users",
                          _table_name))
    register(PluginOption("messages-table", "The chat messages table (may be schema.table).",
                          "chats", _table_name))
    register(PluginOption("gap-grace", "Seconds a missing message id is waited for before it "
                          "is taken as rolled back.", f"{GRACE:g}", duration))


@hookimpl
def n2gateway_migrations(register: Callable[[Path], None]) -> None:
    register(MIGRATIONS)


@hookimpl
def n2gateway_sources(context: Any,
                      register: Callable[[str, Callable[[], IService]], None]) -> None:
    options = context.settings.plugin_options
    tables = Tables(users=options["chat-users-table"], messages=options["chat-messages-table"])
    grace = options["chat-gap-grace"]
    sync = _syncs[id(context)] = ChatSync(context.reactor, context.listener,
                                          ChatStore(context.db, context.journal, tables, grace=grace))
    register(SOURCE, lambda: sync)


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
