"""Upstream credentials kept in ``realtime_credentials``, one row per client type.

Every provider (Pancake, TPOS, ...) stores what it needs to reconnect on its own
after a restart here. The table is the seed's, unchanged, so an existing database
keeps working.

Encryption at rest: when ``settings.credentials_key`` (a Fernet key) is set, the
token and the cookie are written as ``fernet:<Fernet token>``. Values without that
prefix are read as plaintext, so rows written by the original system, or before a
key was configured, keep working (they are encrypted the next time they are saved).
A row that cannot be decrypted (no key, or another key) is logged without its
secrets and skipped, as if it were not there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Sequence

from cryptography.fernet import Fernet, InvalidToken
from twisted.logger import Logger

from n2gateway.db import Database

ENCRYPTED_PREFIX = "fernet:"

_COLUMNS = "client_type, token, user_id, page_ids, cookie, room, is_active"


class UndecryptableCredentials(Exception):
    """A stored secret is encrypted and this gateway cannot decrypt it."""


@dataclass(frozen=True)
class StoredCredentials:
    """One row, decrypted. ``page_ids`` is None when the column is empty."""

    client_type: str
    token: str = field(repr=False)
    user_id: str | None
    page_ids: Any
    cookie: str | None = field(repr=False)
    room: str | None
    is_active: bool


class CredentialStore:
    log = Logger()

    def __init__(self, db: Database, key: str | None = None) -> None:
        self._db = db
        self._fernet = Fernet(key) if key else None

    async def save(self, client_type: str, token: str, user_id: str | None = None,
                   page_ids: Sequence[str] | None = None, cookie: str | None = None,
                   room: str | None = None) -> None:
        """Insert or replace the row of ``client_type`` and mark it active."""
        await self._db.execute(
            "INSERT INTO realtime_credentials"
            " (client_type, token, user_id, page_ids, cookie, room, is_active, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, TRUE, NOW())"
            " ON CONFLICT (client_type) DO UPDATE SET token = EXCLUDED.token,"
            " user_id = EXCLUDED.user_id, page_ids = EXCLUDED.page_ids,"
            " cookie = EXCLUDED.cookie, room = EXCLUDED.room,"
            " is_active = TRUE, updated_at = NOW()",
            (client_type, self._seal(token), user_id,
             None if page_ids is None else json.dumps(list(page_ids)),
             self._seal(cookie), room))

    async def deactivate(self, client_type: str) -> None:
        """Keep the row but stop reconnecting with it at start-up."""
        await self._db.execute(
            "UPDATE realtime_credentials SET is_active = FALSE, updated_at = NOW()"
            " WHERE client_type = %s", (client_type,))

    async def load(self, client_type: str) -> StoredCredentials | None:
        """The row of ``client_type``, active or not; None if absent or unreadable."""
        rows = await self._db.query(
            f"SELECT {_COLUMNS} FROM realtime_credentials WHERE client_type = %s",
            (client_type,))
        return next(iter(self._readable(rows)), None)

    async def load_active(self) -> list[StoredCredentials]:
        """Every active row this gateway can read."""
        rows = await self._db.query(
            f"SELECT {_COLUMNS} FROM realtime_credentials WHERE is_active"
            " ORDER BY client_type")
        return self._readable(rows)

    def _readable(self, rows: list[tuple]) -> list[StoredCredentials]:
        readable = []
        for client_type, token, user_id, page_ids, cookie, room, is_active in rows:
            try:
                readable.append(StoredCredentials(
                    client_type, self._open(token), user_id, _parse_page_ids(page_ids),
                    self._open(cookie), room, bool(is_active)))
            except UndecryptableCredentials as e:
                self.log.error("stored {client_type} credentials skipped: {why}",
                               client_type=client_type, why=str(e))
        return readable

    def _seal(self, secret: str | None) -> str | None:
        if secret is None or self._fernet is None:
            return secret
        return ENCRYPTED_PREFIX + self._fernet.encrypt(secret.encode()).decode("ascii")

    def _open(self, stored: str | None) -> str | None:
        if stored is None or not stored.startswith(ENCRYPTED_PREFIX):
            return stored
        if self._fernet is None:
            raise UndecryptableCredentials("encrypted, and no --credentials-key is set")
        try:
            return self._fernet.decrypt(stored[len(ENCRYPTED_PREFIX):].encode()).decode()
        except (InvalidToken, UnicodeError):
            raise UndecryptableCredentials(
                "encrypted with another --credentials-key, or damaged") from None


def _parse_page_ids(text: str | None) -> Any:
    """The seed stores page ids as JSON text; anything else is left for the provider
    to judge (it knows whether it needs them)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
