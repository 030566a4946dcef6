"""
The CredentialStore's methods over a dict, for provider tests on a fake clock;
``down`` makes that many calls fail as if the database were away.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from n2gateway.credentials import StoredCredentials
from n2gateway.db import DatabaseUnavailable


class MemoryStore:
    def __init__(self) -> None:
        self.rows: dict[str, StoredCredentials] = {}
        self.down = 0
        self.calls: list[str] = []

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.down:
            self.down -= 1
            raise DatabaseUnavailable("connection refused")

    async def save(self, client_type: str, token: str, user_id: str | None = None,
                   page_ids: Any = None, cookie: str | None = None, room: str | None = None,
                   extra: dict[str, Any] | None = None) -> None:
        self._call("save")
        self.rows[client_type] = StoredCredentials(
            client_type, token, user_id, None if page_ids is None else list(page_ids),
            cookie, room, True, extra or {})

    async def save_renewed(self, client_type: str, token: str,
                           extra: dict[str, Any] | None) -> bool:
        self._call("save_renewed")
        row = self.rows.get(client_type)
        if row is None or not row.is_active:
            return False
        self.rows[client_type] = replace(row, token=token, extra=extra or {})
        return True

    async def deactivate(self, client_type: str) -> None:
        self._call("deactivate")
        self.rows[client_type] = replace(self.rows[client_type], is_active=False)

    async def load(self, client_type: str) -> StoredCredentials | None:
        self._call("load")
        return self.rows.get(client_type)
