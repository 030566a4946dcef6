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
        raise HttpError(400, describe(error), field=_field(error) or None)


def _field(error: ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path)


def describe(error: ValidationError) -> str:
    where = _field(error)
    subject = f"field '{where}'" if where else "the body"
    rule, expected = error.validator, error.validator_value
    if rule == "required":
        missing = [name for name in expected if name not in (error.instance or {})]
        name = f"{where}.{missing[0]}" if where else missing[0]
        return f"missing field '{name}'"
    if rule == "additionalProperties":
        allowed = set(error.schema.get("properties", {}))
        unknown = sorted(k for k in error.instance if k not in allowed)
        return f"unknown field '{unknown[0][:64]}'" if unknown else f"{subject} has unknown fields"
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
