"""Upstream credentials kept in ``realtime_credentials``, one row per client type.

Every provider (Pancake, TPOS, ...) stores what it needs to reconnect on its own
after a restart here. The table is the seed's, unchanged, so an existing database
keeps working.

A provider's fields beyond the seed's columns (TPOS: username, password, refresh
token) go in the added ``extra`` column as one JSON object, a secret like the token.

Encryption at rest: when ``settings.credentials_key`` (a Fernet key) is set, the
token, the cookie and ``extra`` are written as ``fernet:<Fernet token>``. Values without that
prefix are read as plaintext, so rows written by the original system, or before a
key was configured, keep working (they are encrypted the next time they are saved).
A row that cannot be decrypted (no key, or another key) is logged without its
secrets and skipped, as if it were not there.

Every save and deactivation NOTIFYs ``n2_credentials`` in the same statement, with
the client type and the node that made it, so the gateway holding that provider
follows a change made through any gateway on the database.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Sequence

from cryptography.fernet import Fernet, InvalidToken
from twisted.logger import Logger

from n2gateway.db import ConstraintViolation, Database

ENCRYPTED_PREFIX = "fernet:"
CHANGED_CHANNEL = "n2_credentials"

_COLUMNS = "client_type, token, user_id, page_ids, cookie, room, is_active, extra"


class CredentialsRefused(Exception):
    """The database refused a row (a constraint); says which, never the row's values."""


class UndecryptableCredentials(Exception):
    """A stored secret is encrypted and this gateway cannot decrypt it."""


@dataclass(frozen=True)
class StoredCredentials:
    """One row, decrypted. ``page_ids`` is None when the column is empty, ``extra``
    an empty dict when the row has none."""

    client_type: str
    token: str = field(repr=False)
    user_id: str | None
    page_ids: Any
    cookie: str | None = field(repr=False)
    room: str | None
    is_active: bool
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class CredentialsChanged:
    """What a ``n2_credentials`` NOTIFY says: whose row changed, through which node."""

    client_type: str
    node: str | None

    @classmethod
    def parse(cls, payload: str) -> CredentialsChanged | None:
        """The change ``payload`` announces, or None if it is not one of ours."""
        try:
            note = json.loads(payload)
        except ValueError:
            return None
        if not isinstance(note, dict) or not isinstance(note.get("client_type"), str):
            return None
        node = note.get("node")
        return cls(note["client_type"], node if isinstance(node, str) else None)


class CredentialStore:
    log = Logger()

    def __init__(self, db: Database, key: str | None = None, *, node: str | None = None) -> None:
        """``node`` names this gateway in the changes it announces."""
        self._db = db
        self._fernet = Fernet(key) if key else None
        self._node = node

    async def save(self, client_type: str, token: str, user_id: str | None = None,
                   page_ids: Sequence[str] | None = None, cookie: str | None = None,
                   room: str | None = None, extra: dict[str, Any] | None = None) -> None:
        """Insert or replace the row of ``client_type`` and mark it active."""
        await self._announced(
            "INSERT INTO realtime_credentials"
            " (client_type, token, user_id, page_ids, cookie, room, extra, is_active, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, TRUE, NOW())"
            " ON CONFLICT (client_type) DO UPDATE SET token = EXCLUDED.token,"
            " user_id = EXCLUDED.user_id, page_ids = EXCLUDED.page_ids,"
            " cookie = EXCLUDED.cookie, room = EXCLUDED.room, extra = EXCLUDED.extra,"
            " is_active = TRUE, updated_at = NOW()",
            (client_type, self._seal(token), user_id,
             None if page_ids is None else json.dumps(list(page_ids)),
             self._seal(cookie), room, self._seal_extra(extra)))

    async def save_renewed(self, client_type: str, token: str,
                           extra: dict[str, Any] | None) -> bool:
        """Store a token the gateway renewed itself, if the row is still active
        (a stop wins over a renewal finishing after it). Not announced: only
        the gateway holding the provider renews, and it already uses the token."""
        rows = await self._db.query(
            "UPDATE realtime_credentials SET token = %s, extra = %s, updated_at = NOW()"
            " WHERE client_type = %s AND is_active RETURNING client_type",
            (self._seal(token), self._seal_extra(extra), client_type))
        return bool(rows)

    async def deactivate(self, client_type: str) -> None:
        """Keep the row but stop reconnecting with it at start-up."""
        await self._announced(
            "UPDATE realtime_credentials SET is_active = FALSE, updated_at = NOW()"
            " WHERE client_type = %s", (client_type,))

    async def _announced(self, change: str, params: tuple) -> None:
        """Run ``change`` (ending in no RETURNING) and NOTIFY it, in one statement."""
        try:
            await self._db.query(
                f"WITH changed AS ({change} RETURNING client_type)"
                f" SELECT pg_notify('{CHANGED_CHANNEL}', json_build_object("
                "'client_type', client_type, 'node', %s::text)::text) FROM changed",
                (*params, self._node))
        except ConstraintViolation as e:
            # Its DETAIL quotes the failing row, secrets and all: neither it nor the
            # exception it came from (chained into tracebacks) goes any further.
            raise CredentialsRefused(f"the database refused the row: {e.primary}") from None

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
        for client_type, token, user_id, page_ids, cookie, room, is_active, extra in rows:
            try:
                readable.append(StoredCredentials(
                    client_type, self._open(token), user_id, _parse_page_ids(page_ids),
                    self._open(cookie), room, bool(is_active), self._open_extra(extra)))
            except UndecryptableCredentials as e:
                self.log.error("stored {client_type} credentials skipped: {why}",
                               client_type=client_type, why=str(e))
        return readable

    def _seal(self, secret: str | None) -> str | None:
        if secret is None or self._fernet is None:
            return secret
        return ENCRYPTED_PREFIX + self._fernet.encrypt(secret.encode()).decode("ascii")

    def _seal_extra(self, extra: dict[str, Any] | None) -> str | None:
        return self._seal(json.dumps(extra)) if extra else None

    def _open_extra(self, stored: str | None) -> dict[str, Any]:
        text = self._open(stored)
        try:
            extra = json.loads(text) if text else {}
        except ValueError:
            raise UndecryptableCredentials("extra fields damaged") from None
        return extra if isinstance(extra, dict) else {}

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
