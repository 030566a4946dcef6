"""Secrets kept out of what operators see: logs, recent events, status answers.

By construction rather than by care: any field whose name looks like a secret is
replaced whatever its value, and a password inside a connection string is cut.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[redacted]"
_SECRET_NAME = re.compile(
    r"token|cookie|authori[sz]ation|password|passwd|secret|credential"
    r"|client_?session|session_?id|api[_-]?key",
    re.IGNORECASE)
# scheme://user:password@host: keep the user, drop the password.
_DSN_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*):[^@\s]*@", re.IGNORECASE)
# A libpq keyword string: password=secret or password='a secret'.
_KEYWORD_PASSWORD = re.compile(r"\b(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def scrub_text(text: str) -> str:
    """``text`` with the password of any connection string in it replaced."""
    text = _DSN_PASSWORD.sub(r"\1:" + REDACTED + "@", text)
    return _KEYWORD_PASSWORD.sub(r"\1" + REDACTED, text)


def redact(value: Any) -> Any:
    """A copy of ``value`` with secret-named fields replaced and DSN passwords cut."""
    if isinstance(value, dict):
        return {key: REDACTED if isinstance(key, str) and is_secret_name(key) else redact(item)
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return scrub_text(value)
    return value
