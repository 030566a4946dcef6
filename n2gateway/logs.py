"""JSON-lines logging for ``--log-format json``: one event per line, secrets redacted.

Each line holds ``time`` (ISO 8601, UTC), ``level``, ``namespace``, ``message`` (the
event formatted) and the event's own fields. Redaction is by construction: fields
whose names look like secrets are replaced before anything is formatted (so the
message cannot quote them either), and passwords in connection strings are cut.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import IO, Any

from twisted.logger import ILogObserver, formatEvent
from zope.interface import implementer

from n2gateway.redact import REDACTED, is_secret_name, redact, scrub_text


def _plain(value: Any) -> Any:
    """A JSON-able version of a field (objects become their repr, scrubbed)."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return scrub_text(repr(value))
    return redact(value)


def event_as_json(event: dict[str, Any]) -> str:
    safe = {key: (REDACTED if is_secret_name(key) and not key.startswith("log_") else value)
            for key, value in event.items()}
    line: dict[str, Any] = {
        "time": datetime.fromtimestamp(event.get("log_time", 0), timezone.utc).isoformat(),
        "level": getattr(event.get("log_level"), "name", "info"),
        "namespace": event.get("log_namespace", ""),
        "message": scrub_text(formatEvent(safe)),
    }
    failure = event.get("log_failure")
    if failure is not None:
        line["traceback"] = scrub_text(failure.getTraceback())
    for key, value in safe.items():
        if not key.startswith("log_") and key not in line:
            line[key] = _plain(value)
    return json.dumps(line, ensure_ascii=False, default=str)


@implementer(ILogObserver)
class JsonLinesObserver:
    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def __call__(self, event: dict[str, Any]) -> None:
        self._out.write(event_as_json(event) + "\n")
        self._out.flush()


def json_observer() -> JsonLinesObserver:
    """twistd's ``--logger`` factory (``--log-format json`` selects it): lines to stdout."""
    return JsonLinesObserver(sys.stdout)
