"""
An OAuth2 token endpoint client: one form-encoded POST, one token answer.

Whatever the endpoint answers, the caller gets a :class:`TokenGrant` or one of two
exceptions with a short reason fit for a log line and the status: never the
answer's body, never a field of the form (they hold the password and the
refresh token).

  - :class:`GrantRefused`: the endpoint said no to these credentials (an OAuth2
    error such as ``invalid_grant``); asking again with them will not help.
  - :class:`GrantFailed`: anything else (unreachable, 5xx, HTML, garbage, a body
    over :data:`MAX_ANSWER_BYTES`); worth retrying later.

The whole request is bounded by the caller (:class:`TokenRenewal` cancels it on its
timeout); the connection attempt by ``connect_timeout``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, ResponseDone, ResponseNeverReceived
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgent, IBodyProducer
from zope.interface import implementer

from .status import safe_reason

MAX_ANSWER_BYTES = 1024 * 1024
# A token goes into an upstream request's headers: no control characters.
_HEADER_SAFE = re.compile(r"[^\x00-\x1f\x7f]{1,16384}")


class GrantFailed(Exception):
    """No token this time; ``str()`` is a short reason without secrets."""


class GrantRefused(GrantFailed):
    """The endpoint refused the credentials themselves."""


@dataclass(frozen=True)
class TokenGrant:
    access_token: str = field(repr=False)
    expires_in: float
    refresh_token: str | None = field(default=None, repr=False)


class _TooLarge(Exception):
    pass


class _BoundedBody(Protocol):
    """Collects a response body, giving up (and closing) past ``limit`` bytes."""

    def __init__(self, limit: int, done: Deferred[bytes]) -> None:
        self._limit = limit
        self._done = done
        self._parts: list[bytes] = []
        self._size = 0

    def dataReceived(self, data: bytes) -> None:
        if self._done.called:
            return
        self._size += len(data)
        if self._size > self._limit:
            self._done.errback(_TooLarge())
            self.transport.stopProducing()
            return
        self._parts.append(data)

    def connectionLost(self, reason: Failure = ResponseDone()) -> None:  # type: ignore[assignment]
        if self._done.called:
            return
        if reason.check(ResponseDone):
            self._done.callback(b"".join(self._parts))
        else:
            self._done.errback(GrantFailed("answer cut short"))


@implementer(IBodyProducer)
class _FormBody:
    """A small body written at once (FileBodyProducer would need the global reactor)."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body) if body else UNKNOWN_LENGTH

    def startProducing(self, consumer: Any) -> Deferred[None]:
        consumer.write(self._body)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class TokenEndpoint:
    """Asks ``url`` for tokens through ``agent`` (by default Twisted's own)."""

    def __init__(self, url: str, reactor: Any, *, agent: IAgent | None = None,
                 connect_timeout: float = 10.0) -> None:
        self.url = url
        self._agent = agent or Agent(reactor, connectTimeout=connect_timeout)

    async def grant(self, form: dict[str, str]) -> TokenGrant:
        """POST ``form`` (e.g. ``grant_type=password``, ...) and read the token answer."""
        try:
            response = await self._agent.request(
                b"POST", self.url.encode("ascii"),
                Headers({"Content-Type": ["application/x-www-form-urlencoded"],
                         "Accept": ["application/json"]}),
                _FormBody(urlencode(form).encode("ascii")))
            reader: _BoundedBody
            # Cancelled (the caller's timeout, a stop): stop reading the body too.
            done: Deferred[bytes] = Deferred(lambda d: reader.transport.stopProducing())
            reader = _BoundedBody(MAX_ANSWER_BYTES, done)
            response.deliverBody(reader)
            body = await done
        except (GrantFailed, CancelledError):
            raise
        except ResponseNeverReceived as e:
            if any(reason.check(CancelledError) for reason in e.reasons):
                raise CancelledError() from None  # the caller's timeout, or a stop
            raise GrantFailed("token endpoint unreachable: ResponseNeverReceived") from None
        except _TooLarge:
            raise GrantFailed("answer over 1 MiB") from None
        except Exception as e:  # unreachable, refused, reset: the kind is enough
            raise GrantFailed(f"token endpoint unreachable: {type(e).__name__}") from None
        return token_answer(response.code, body)


def token_answer(code: int, body: bytes) -> TokenGrant:
    """The grant in an answer of HTTP status ``code``, or why there is none."""
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):
        answer = None
    if not isinstance(answer, dict):
        raise GrantFailed(f"HTTP {code}, answer is not a JSON object")
    if 400 <= code < 500 and isinstance(answer.get("error"), str):
        raise GrantRefused(safe_reason(answer["error"], f"refused (HTTP {code})"))
    if code != 200:
        raise GrantFailed(f"HTTP {code}")
    token, expires_in = answer.get("access_token"), answer.get("expires_in")
    refresh = answer.get("refresh_token")
    if isinstance(expires_in, str) and expires_in.isdigit():
        expires_in = int(expires_in)
    if not isinstance(token, str) or not _HEADER_SAFE.fullmatch(token):
        raise GrantFailed("answer has no access_token")
    if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)) or expires_in <= 0:
        raise GrantFailed("answer has no valid expires_in")
    return TokenGrant(token, float(expires_in), refresh if isinstance(refresh, str) and refresh
                      else None)
