"""The HTTP route registry every plugin adds to, on one Klein application.

A route is an ``async def handler(request: JsonRequest)`` returning a JSON-able dict
(or ``(status, dict)``). The registry does the parts every route shares: the admin
token on ``/api/...``, the body limit, JSON parsing and JSON-Schema validation with
messages that name the field, and JSON errors for everything (no HTML, no
tracebacks). The declared schemas are also what the OpenAPI description is made of.
"""

from __future__ import annotations

import hmac
import json
from urllib.parse import urlsplit
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

from klein import Klein
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect

from n2gateway.db import DatabaseUnavailable
from n2gateway.http.errors import HttpError
from n2gateway.http.validation import validate
from n2gateway.storable import MAX_DEPTH, TooDeep, check_depth

log = Logger()

#: A body may wrap a payload of the journal's full depth (``MAX_DEPTH``) a few times.
MAX_BODY_DEPTH = MAX_DEPTH + 8


@dataclass(frozen=True)
class JsonRequest:
    """What a handler sees: the parsed body, the path arguments and the raw request."""

    body: Any
    path_args: Mapping[str, str]
    raw: IRequest

    def query(self, name: str) -> str | None:
        values = self.raw.args.get(name.encode())
        return values[0].decode("utf-8", "replace") if values else None


@dataclass(frozen=True)
class RawAnswer:
    """A handler's answer that is not JSON (a page, a script, metrics text)."""

    body: bytes
    content_type: str


Handler = Callable[[JsonRequest], Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str = ""
    body: dict | None = None
    response: dict | None = None
    tags: tuple[str, ...] = ()
    protected: bool = False
    #: Statuses answered with ``response`` (errors answer the JSON error shape).
    statuses: tuple[int, ...] = (200,)
    content_type: str = "application/json"


@dataclass
class Routes:
    """All routes of one gateway, mounted on ``self.app``."""

    admin_token: str | None = None
    app: Klein = field(default_factory=Klein)
    routes: list[Route] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.app.handle_errors(NotFound)(self._not_found)
        self.app.handle_errors(MethodNotAllowed)(self._not_allowed)
        self.app.handle_errors(RequestRedirect)(self._redirect)

    def add(self, method: str, path: str, handler: Handler, *, summary: str = "",
            body: dict | None = None, response: dict | None = None,
            tags: tuple[str, ...] = (), protected: bool | None = None,
            statuses: tuple[int, ...] = (200,),
            content_type: str = "application/json") -> None:
        """Serve ``method path`` with ``handler``; ``body`` is the request's JSON Schema.

        ``protected`` (the admin token, when one is set) defaults to paths under ``/api/``.
        """
        route = Route(method.upper(), path, handler, summary, body, response, tags,
                      protected=path.startswith("/api/") if protected is None else protected,
                      statuses=statuses, content_type=content_type)
        self.routes.append(route)

        async def endpoint(request: IRequest, **path_args: str) -> bytes:
            request.route_template = path  # for metrics: never the raw path
            return await self._serve(route, request, path_args)

        self.app.route(path, methods=[route.method], endpoint=f"{route.method} {path}")(endpoint)

    def mount(self, path: str, resource_factory: Callable[[], Any]) -> None:
        """Serve a Twisted resource (a WebSocket endpoint) under ``path``."""
        def serve(request: IRequest) -> Any:
            request.route_template = path
            return resource_factory()

        self.app.route(path, endpoint=f"resource {path}", branch=True)(serve)

    async def _serve(self, route: Route, request: IRequest, path_args: Mapping[str, str]) -> bytes:
        try:
            if route.protected:
                self._authorize(request)
            body = self._read_body(route, request)
            answer = await route.handler(JsonRequest(body, path_args, request))
        except HttpError as e:
            return write_json(request, e.status, e.body())
        except DatabaseUnavailable as e:
            return write_json(request, 503, HttpError(503, f"database unavailable: {e}").body())
        except Exception:
            log.failure("route {method} {path} failed", method=route.method, path=route.path)
            return write_json(request, 500, HttpError(500, "internal error; see the gateway log").body())
        status, payload = answer if isinstance(answer, tuple) else (200, answer)
        if isinstance(payload, RawAnswer):
            return write_answer(request, status, payload.content_type, payload.body)
        return write_json(request, status, payload)

    def _authorize(self, request: IRequest) -> None:
        if self.admin_token is None:
            return
        # As bytes: a header that is not UTF-8 is a wrong token, not a crash.
        header = request.getHeader(b"authorization") or b""
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(
                token.strip(), self.admin_token.encode()):
            raise HttpError(401, "this route needs 'Authorization: Bearer <admin token>'")

    @staticmethod
    def _read_body(route: Route, request: IRequest) -> Any:
        if getattr(request, "body_too_large", False):
            raise HttpError(413, f"request body over {request.channel.site.max_body} bytes")
        if route.body is None:
            return None
        raw = request.content.read() if request.content is not None else b""
        if not raw.strip():
            raise HttpError(400, "a JSON body is required")
        try:
            data = json.loads(raw)
            # Bounded before anything walks the body recursively (validation, encoding).
            check_depth(raw, data, MAX_BODY_DEPTH)
        except (TooDeep, RecursionError):
            raise HttpError(400, f"JSON nested deeper than {MAX_BODY_DEPTH} levels") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise HttpError(400, f"malformed JSON: {str(e)[:120]}") from None
        validate(route.body, data)
        return data

    @staticmethod
    def _not_found(request: IRequest, failure: Any) -> bytes:
        return write_json(request, 404, HttpError(404, "no such route").body())

    @staticmethod
    def _redirect(request: IRequest, failure: Any) -> bytes:
        # Werkzeug's answer to a path with doubled or missing slashes: an HTML page.
        target = urlsplit(failure.value.new_url)
        query = request.uri.partition(b"?")[2].decode("ascii", "replace")
        location = target.path + (f"?{query}" if query else "")
        request.setHeader("location", location)
        return write_json(request, 308, {"error": "redirect", "message": f"use {target.path}",
                                         "location": location})

    @staticmethod
    def _not_allowed(request: IRequest, failure: Any) -> bytes:
        allowed = sorted(failure.value.valid_methods or ())
        request.setHeader("allow", ", ".join(allowed))
        return write_json(request, 405, HttpError(
            405, f"method not allowed; use {' or '.join(allowed)}").body())


def write_json(request: IRequest, status: int, payload: Any) -> bytes:
    return write_answer(request, status, "application/json",
                        json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())


#: The status page asks for the admin token: no framing (clickjacking), no script,
#: style or connection but its own (a WebSocket to this host is "self" too).
PAGE_POLICY = ("default-src 'self'; img-src 'self' data:; connect-src 'self'; "
               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def write_answer(request: IRequest, status: int, content_type: str, body: bytes) -> bytes:
    request.setResponseCode(status)
    request.setHeader("content-type", content_type)
    request.setHeader("cache-control", "no-store")
    request.setHeader("x-content-type-options", "nosniff")
    request.setHeader("x-frame-options", "DENY")
    request.setHeader("referrer-policy", "no-referrer")
    if content_type.startswith("text/html"):
        request.setHeader("content-security-policy", PAGE_POLICY)
    return body
