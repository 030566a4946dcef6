"""Request bodies checked against their JSON Schema, with answers that name the field.

jsonschema's own messages quote the offending value, which may be a token sent in
the wrong place; ours name the field and the rule, never the value.
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from n2gateway.http.errors import HttpError

_TYPE_WORDS = {
    "string": "a string", "integer": "an integer", "number": "a number",
    "boolean": "true or false", "array": "a list", "object": "an object", "null": "null",
}


def validate(schema: dict, data: Any) -> None:
    error = best_match(Draft202012Validator(schema).iter_errors(data))
    if error is not None:
        raise HttpError(400, describe(error), field=field_of(error) or None)


def _path(error: ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path)


def _named_key(error: ValidationError) -> str | None:
    """The key a missing-field or unknown-field error is about (unknown keys cut to 64
    characters: a client's key is not ours to echo at any length)."""
    if error.validator == "required":
        return next(name for name in error.validator_value if name not in (error.instance or {}))
    if error.validator == "dependentRequired":
        return next(n for k, needed in error.validator_value.items() if k in error.instance
                    for n in needed if n not in error.instance)
    if error.validator == "additionalProperties":
        allowed = set(error.schema.get("properties", {}))
        unknown = sorted(k for k in error.instance if k not in allowed)
        return unknown[0][:64] if unknown else None
    return None


def field_of(error: ValidationError) -> str:
    """The field an error is about: its path, and for a missing or unknown field that
    field's own name ("pageIds.1", "token", "extra"); "" for the body as a whole."""
    key = _named_key(error)
    return ".".join(part for part in (_path(error), key) if part)


def describe(error: ValidationError) -> str:
    where = _path(error)
    subject = f"field '{where}'" if where else "the body"
    rule, expected = error.validator, error.validator_value
    if rule == "required":
        return f"missing field '{field_of(error)}'"
    if rule == "dependentRequired":  # {"username": ["password"]}: named together
        given = next(k for k, needed in expected.items() if k in error.instance
                     and _named_key(error) in needed)
        return f"missing field '{field_of(error)}' (given with '{given}')"
    if rule == "anyOf" and all(set(branch) == {"required"} for branch in expected):
        first, *others = (" and ".join(f"'{n}'" for n in b["required"]) for b in expected)
        return f"missing field {first} (or {', or '.join(others)})"
    if rule == "additionalProperties":
        return f"unknown field '{field_of(error)}'" if _named_key(error) else f"{subject} has unknown fields"
    if rule == "type":
        types = [expected] if isinstance(expected, str) else expected
        return f"{subject} must be {' or '.join(_TYPE_WORDS.get(t, t) for t in types)}"
    if rule in ("minLength", "minItems") and expected == 1:
        return f"{subject} must not be empty"
    if rule in ("minLength", "minItems", "minimum"):
        return f"{subject} must be at least {expected}" + (" long" if rule != "minimum" else "")
    if rule in ("maxLength", "maxItems", "maximum"):
        return f"{subject} must be at most {expected}" + (" long" if rule != "maximum" else "")
    if rule == "enum":
        return f"{subject} must be one of {', '.join(map(str, expected))}"
    if rule == "pattern":
        return f"{subject} has an invalid format"
    return f"{subject} is invalid ({rule})"
