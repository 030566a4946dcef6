"""
The Pancake provider: stored credentials in, one Phoenix session out.
"""

from __future__ import annotations

from typing import Any

from n2gateway.credentials import StoredCredentials
from n2gateway.upstream.backoff import BackoffPolicy
from .relay import PAGE_TOPIC_PREFIX
from .session import PancakeCredentials, build_pancake_service, page_retry_backoff
from n2gateway.upstream.provider import BadCredentials, Provider
from n2gateway.upstream.service import UpstreamService
from n2gateway.upstream.status import UpstreamStatus

CLIENT_TYPE = "pancake"


class PancakeProvider(Provider[PancakeCredentials]):
    client_type = CLIENT_TYPE

    def __init__(self, *args: Any, page_backoff: BackoffPolicy | None = None,
                 **kwargs: Any) -> None:
        """``page_backoff`` paces the retries of a refused page (default: from 5 min)."""
        super().__init__(*args, **kwargs)
        self.page_backoff = page_backoff or page_retry_backoff()

    def credentials_from_row(self, row: StoredCredentials) -> PancakeCredentials:
        if not row.token:
            raise BadCredentials("no token")
        if not row.user_id:
            raise BadCredentials("no user_id")
        page_ids = row.page_ids
        if not isinstance(page_ids, list) or not page_ids:
            raise BadCredentials("page_ids is not a non-empty JSON list")
        if not all(isinstance(p, (str, int)) and not isinstance(p, bool) and str(p)
                   for p in page_ids):
            raise BadCredentials("page_ids holds something that is not an id")
        return PancakeCredentials(row.token, row.user_id, tuple(map(str, page_ids)),
                                  row.cookie or None)

    def row_for(self, credentials: PancakeCredentials) -> dict[str, Any]:
        return {"token": credentials.token, "user_id": credentials.user_id,
                "page_ids": credentials.page_ids, "cookie": credentials.cookie}

    def build_session(self, credentials: PancakeCredentials,
                      status: UpstreamStatus) -> UpstreamService:
        return build_pancake_service(
            credentials, reactor=self.reactor, status=status, on_event=self.on_event,
            url=self.url, endpoint=self.endpoint, backoff=self.backoff,
            page_backoff=self.page_backoff)

    def channel_topics(self, credentials: PancakeCredentials | None) -> list[str]:
        page_ids = credentials.page_ids if credentials else ()
        return [PAGE_TOPIC_PREFIX + page_id for page_id in page_ids]

    def describe(self, credentials: PancakeCredentials | None) -> dict[str, Any]:
        page_ids = list(credentials.page_ids) if credentials else []
        channels = self._status.channels
        never = {"joined": False, "error": None, "since": None}
        pages = {page_id: channels[topic].as_dict() if topic in channels else never
                 for page_id, topic in zip(page_ids, self.channel_topics(credentials))}
        return {"userId": credentials.user_id if credentials else None,
                "pageCount": len(page_ids), "pageIds": page_ids, "pages": pages}
