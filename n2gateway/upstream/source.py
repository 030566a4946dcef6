"""
What a provider's session is to the core: a :class:`Source`.

A source is one live link to an upstream for one set of credentials: a
reconnecting WebSocket (:class:`n2gateway.upstream.service.UpstreamService`, the
optional helper), an HTTP poller, a Server-Sent Events reader, anything else.
:meth:`n2gateway.upstream.provider.Provider.build_session` makes one; the provider
starts it, stops it before it builds the next, and shows its ``status`` in
``/health``, ``/metrics`` and the status routes.
"""

from __future__ import annotations

from typing import Protocol

from .status import UpstreamStatus


class Source(Protocol):
    #: The status the provider handed to ``build_session``: the source reports
    #: every connect, loss and refusal to it (``session_established``,
    #: ``disconnected(reason)``, ``count_attempt``, ``channel(...)``).
    status: UpstreamStatus

    def start(self) -> None:
        """Connect, and keep reconnecting (with backoff) until :meth:`stop`."""

    async def stop(self) -> None:
        """Close the link and cancel any pending reconnect; done when it returns."""

    def login_needed(self, reason: str) -> None:
        """The credentials are no good (refused upstream, renewal refused): record
        ``status.login_needed(reason)``, close, and stay closed until stopped."""
