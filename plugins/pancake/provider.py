"""
The Pancake provider: stored credentials in, one Phoenix session out.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IStreamClientEndpoint

from n2gateway.credentials import CredentialStore, StoredCredentials
from n2gateway.upstream.pancake import PancakeCredentials, build_pancake_service
from n2gateway.upstream.phoenix import EventCallback
from n2gateway.upstream.provider import BadCredentials, Provider
from n2gateway.upstream.service import UpstreamService
from n2gateway.upstream.status import UpstreamStatus

CLIENT_TYPE = "pancake"


class PancakeProvider(Provider[PancakeCredentials]):
    def __init__(
        self,
        store: CredentialStore,
        reactor: Any,
        *,
        url: str,
        on_event: EventCallback,
        endpoint: IStreamClientEndpoint | None = None,
        **options: Any,
    ) -> None:
        super().__init__(CLIENT_TYPE, store, reactor, **options)
        self._url = url
        self._on_event = on_event
        self._endpoint = endpoint

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
            credentials, reactor=self._reactor, status=status, on_event=self._on_event,
            url=self._url, endpoint=self._endpoint, backoff=self.backoff)

    def describe(self, credentials: PancakeCredentials | None) -> dict[str, Any]:
        page_ids = list(credentials.page_ids) if credentials else []
        return {"userId": credentials.user_id if credentials else None,
                "pageCount": len(page_ids), "pageIds": page_ids}
