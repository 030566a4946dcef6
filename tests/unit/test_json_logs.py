"""The JSON log line: the event's fields, formatted message, secrets redacted."""

import json

from twisted.logger import LogLevel
from twisted.python.failure import Failure

from n2gateway.logs import event_as_json


def event(**fields):
    return {"log_time": 1700000000.0, "log_level": LogLevel.warn,
            "log_namespace": "n2gateway.test", **fields}


def test_fields_and_message() -> None:
    line = json.loads(event_as_json(event(log_format="lost {provider}: {why}",
                                          provider="pancake", why="timeout", count=3)))
    assert line == {"time": "2023-11-14T22:13:20+00:00", "level": "warn",
                    "namespace": "n2gateway.test", "message": "lost pancake: timeout",
                    "provider": "pancake", "why": "timeout", "count": 3}


def test_secret_fields_are_redacted_even_in_the_message() -> None:
    text = event_as_json(event(
        log_format="start with {accessToken} / {cookie} / {Authorization}",
        accessToken="tok-123", cookie="c=1", Authorization="Bearer abc",
        nested={"password": "pw-1", "ok": 1}, admin_token="adm-42"))
    line = json.loads(text)
    for secret in ("tok-123", "c=1", "Bearer abc", "pw-1", "adm-42"):
        assert secret not in text
    assert line["accessToken"] == "[redacted]"
    assert line["nested"] == {"password": "[redacted]", "ok": 1}
    assert line["message"] == "start with [redacted] / [redacted] / [redacted]"


def test_dsn_passwords_are_scrubbed_from_messages_values_and_tracebacks() -> None:
    dsn = "postgresql://app:hunter2@db.internal:5432/n2"
    try:
        raise RuntimeError(f"cannot reach {dsn}")
    except RuntimeError:
        failure = Failure()
    text = event_as_json(event(log_format="using {url}", url=dsn, log_failure=failure))
    assert "hunter2" not in text
    line = json.loads(text)
    assert line["message"] == "using postgresql://app:[redacted]@db.internal:5432/n2"
    assert "RuntimeError" in line["traceback"]


def test_values_that_are_not_json_become_their_repr() -> None:
    line = json.loads(event_as_json(event(log_format="x", thing=object())))
    assert line["thing"].startswith("<object object")
