"""A test plugin: one Pancake session as a claimed source, relayed to room ``pancake``.

Loaded with ``--plugin tests.support.claimed_pancake``; the fake server's URL comes
from ``--pancake-url``. Every gateway claims the source, so the fault tests see
exactly what leadership promises: one session at a time across the nodes.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.application.service import IService

from n2gateway.hookspecs import hookimpl
from n2gateway.upstream.pancake import PancakeCredentials, build_pancake_service
from n2gateway.upstream.status import UpstreamStatus

TOKEN = "fault-test-token"
USER_ID = "1"


@hookimpl
def n2gateway_services(context: Any, register: Callable[[IService], None]) -> None:
    credentials = PancakeCredentials(token=TOKEN, user_id=USER_ID, page_ids=("p1",))

    def relay(topic: str, event: str, payload: Any) -> None:
        context.publish(["pancake"], event, payload)

    context.leadership.claim("pancake", lambda: build_pancake_service(
        credentials, reactor=context.reactor, status=UpstreamStatus(), on_event=relay,
        url=context.settings.pancake_url))
