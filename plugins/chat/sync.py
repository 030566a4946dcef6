"""The chat sync service: NOTIFYs are doorbells with hints, the table is the truth.

Every NOTIFY that arrives in one reactor turn (a burst of a thousand inserts arrives
together), or while a sync is running, is served by one sync: one query for all the
new rows, whatever the number of doorbells. A NOTIFY only adds hints (read flags to
relay; chat ids, to log those deleted before they could be read); a bad one is
logged and skipped, since the catch-up finds the row anyway.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from n2gateway.db import DatabaseUnavailable, retry_delay
from n2gateway.db.listen import Listener
from n2gateway.scheduling import Coalescer

from n2gateway_plugins.chat.store import ChatStore

MESSAGES_CHANNEL = "chat_messages"
READ_CHANNEL = "chat_messages_read"
READ_FLAGS = ("user_id", "read_by_student", "read_by_teacher")


def parse_hint(channel: str, payload: str) -> dict[str, Any]:
    """The NOTIFY payload as a dict with an integer ``chat_id``; ``ValueError`` if not."""
    try:
        hint = json.loads(payload)
    except ValueError:
        raise ValueError("not JSON") from None
    if not isinstance(hint, dict) or not isinstance(hint.get("chat_id"), int):
        raise ValueError("no integer chat_id")
    return hint


class ChatSync(service.Service):
    log = Logger()

    def __init__(self, reactor: Any, listener: Listener, store: ChatStore) -> None:
        self._listener = listener
        self._store = store
        self._prepared = False
        self._unsubscribe: list = []
        self._syncs = Coalescer(self._sync_once, reactor, what="chat sync")
        # Work waiting for the next sync.
        self._hinted: set[int] = set()
        self._reads: dict[int, dict | None] = {}
        self._announce = False
        self._failures = 0
        # For n2gateway_status.
        self.relayed = 0
        self.reads_relayed = 0
        self.unrelayable = 0
        self.syncs = 0
        self.low: int | None = None
        self.waiting = 0

    @property
    def listening(self) -> bool:
        return self._listener.connected

    def startService(self) -> None:
        super().startService()
        self._syncs.start()
        # on_recovered fires once LISTEN is in effect (and after each reconnection):
        # that is the catch-up at start-up too.
        self._unsubscribe = [
            self._listener.subscribe(MESSAGES_CHANNEL, self._on_message, self._on_recovered),
            self._listener.subscribe(READ_CHANNEL, self._on_read, self._on_recovered),
        ]

    async def _stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        await self._syncs.stop()

    def stopService(self) -> defer.Deferred:
        super().stopService()
        return defer.Deferred.fromCoroutine(self._stop())

    # -- doorbells --------------------------------------------------------------------

    def _on_message(self, payload: str) -> None:
        try:
            self._hinted.add(parse_hint(MESSAGES_CHANNEL, payload)["chat_id"])
        except ValueError as e:
            self._bad_payload(MESSAGES_CHANNEL, payload, e)
        self._wake()

    def _on_read(self, payload: str) -> None:
        try:
            hint = parse_hint(READ_CHANNEL, payload)
        except ValueError as e:
            self._bad_payload(READ_CHANNEL, payload, e)
            return
        complete = all(key in hint for key in READ_FLAGS)
        self._reads[hint["chat_id"]] = {k: hint[k] for k in READ_FLAGS} if complete else None
        self._wake()

    def _on_recovered(self) -> None:
        # Read flags may have changed while we were not listening: staff refresh.
        self._announce = True
        self._wake()

    def _bad_payload(self, channel: str, payload: str, error: ValueError) -> None:
        self.log.warn("skipped a NOTIFY on {channel} ({reason}): {payload!r}",
                      channel=channel, reason=str(error), payload=payload[:200])

    # -- syncing ----------------------------------------------------------------------

    def _wake(self) -> None:
        # At the end of the turn, so that a burst of doorbells shares one sync; sooner
        # than a settle re-check waiting on the clock.
        self._syncs.request(0)

    async def _sync_once(self) -> float | None:
        """One sync; returns a delay when it must be retried later."""
        hinted, self._hinted = self._hinted, set()
        reads, self._reads = self._reads, {}
        announce, self._announce = self._announce, False
        try:
            if not self._prepared:
                for what in await self._store.prepare():
                    self.log.info("chat sync created {what} on {table}", what=what,
                                  table=self._store.tables.messages)
                self._prepared = True
            result = await self._store.sync(reads=reads, hinted=hinted, announce=announce)
        except Exception as e:
            # Keep the hints for the retry; the table still holds every row.
            self._hinted |= hinted
            self._reads = {**reads, **self._reads}
            self._announce |= announce
            delay = retry_delay(self._failures)
            self._failures += 1
            if isinstance(e, DatabaseUnavailable):
                self.log.warn("chat sync waiting for the database ({reason}); retry in {delay:.1f} s",
                              reason=str(e), delay=delay)
            else:
                self.log.failure("chat sync failed; retry in {delay:.1f} s", delay=delay)
            return delay
        self._failures = 0
        self.syncs += 1
        self.relayed += result.relayed
        self.reads_relayed += result.reads
        self.low, self.waiting = result.low, result.waiting
        self.unrelayable += len(result.unrelayable)
        for chat_id, reason in result.unrelayable:
            self.log.error("chat message {chat_id} cannot be relayed ({reason}); skipped",
                           chat_id=chat_id, reason=reason)
        for chat_id in result.deleted:
            self.log.info("chat message {chat_id} was deleted before it could be relayed",
                          chat_id=chat_id)
        if result.more:
            self._syncs.request()
        elif self.waiting:
            # A gap is waiting to be settled: look again even if no doorbell rings.
            self._syncs.request(self._store.grace)
        return None
