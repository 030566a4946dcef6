"""The operator's status page at ``/``, its static files, and the recent-events route.

The page and its script are static and hold no data, so they are served open; the
data comes from admin routes (``/health``, ``/api/hub/status``,
``/api/hub/recent``) that the page calls with the admin token it asks for.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from n2gateway.http.errors import HttpError
from n2gateway.http.routes import JsonRequest, RawAnswer, Routes
from n2gateway.journal import Event, Journal
from n2gateway.redact import redact
from n2gateway.storable import MAX_DEPTH, TooDeep, check_depth

STATIC = resources.files("n2gateway.http") / "static"
ASSET_TYPES = {"status.js": "text/javascript; charset=utf-8",
               "status.css": "text/css; charset=utf-8"}
RECENT_MAX = 50
PAYLOAD_PREVIEW = 300  # characters of each payload shown

RECENT_ANSWER = {
    "type": "object",
    "required": ["events"],
    "properties": {"events": {"type": "array", "items": {
        "type": "object",
        "required": ["offset", "rooms", "event", "payload"],
        "properties": {"offset": {"type": "string"},
                       "rooms": {"type": "array", "items": {"type": "string"}},
                       "event": {"type": "string"},
                       "payload": {"type": "string"}}}}},
}


def preview(event: Event) -> dict[str, Any]:
    """One event for the page: secret-named fields replaced, payload cut short. A
    payload nested past the journal's bound (stored before there was one) is not
    walked: it would raise RecursionError on every poll of the page."""
    try:
        payload = event.payload
        check_depth(event.payload_json, payload, MAX_DEPTH)
        text = json.dumps(redact(payload), ensure_ascii=False, separators=(",", ":"))
    except (TooDeep, RecursionError):
        text = f"[nested deeper than {MAX_DEPTH} levels: not shown]"
    if len(text) > PAYLOAD_PREVIEW:
        text = text[:PAYLOAD_PREVIEW] + "…"
    return {"offset": str(event.offset), "rooms": list(event.rooms), "event": event.name,
            "payload": text}


def add_status_page_routes(routes: Routes, journal: Journal) -> None:
    page = (STATIC / "index.html").read_bytes()

    async def index(request: JsonRequest) -> RawAnswer:
        return RawAnswer(page, "text/html; charset=utf-8")

    async def recent(request: JsonRequest) -> dict:
        limit = request.query("limit") or "20"
        if not (limit.isascii() and limit.isdigit() and 0 < int(limit) <= RECENT_MAX):
            raise HttpError(400, f"limit must be a whole number from 1 to {RECENT_MAX}")
        return {"events": [preview(e) for e in await journal.tail(int(limit))]}

    routes.add("GET", "/", index, summary="Status page", response={"type": "string"},
               tags=("operations",), content_type="text/html")
    for name, content_type in ASSET_TYPES.items():
        answer = RawAnswer((STATIC / name).read_bytes(), content_type)

        async def asset(request: JsonRequest, answer: RawAnswer = answer) -> RawAnswer:
            return answer

        routes.add("GET", f"/static/{name}", asset, summary=f"Status page {name}",
                   response={"type": "string"}, tags=("operations",),
                   content_type=content_type.split(";")[0])
    routes.add("GET", "/api/hub/recent", recent, summary="Newest journal events, previewed",
               response=RECENT_ANSWER, tags=("hub",))
