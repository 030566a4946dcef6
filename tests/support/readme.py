"""README.md's examples, read from the README itself, and the rule that compares the
answers it shows with real ones.

Examples are the fenced code blocks. A ``curl`` example is a shell command starting
with ``curl`` (continued over ``\\`` line ends and open quotes), optionally followed by
the answer it shows: a ``# → `` line and the ``#`` lines indented under it.

The matching rule (``mismatches``), for an answer shown as JSON with placeholders:

- an optional leading status code (``# → 400 {...}``); without one, any 2xx;
- objects have exactly the keys shown, unless ``...`` stands among them for more
  (``{"a": 1, ...}``); ``{...}`` is any object and ``[...]`` any list;
- ``"..."`` and any ``"<placeholder>"`` string match any value, an ISO-8601 timestamp
  matches any timestamp; every other value must be equal (``true`` is not ``1``);
- an answer shown that is not JSON (an Engine.IO packet, plain text) is compared as
  text, ``...`` and ``<placeholder>`` standing for any run of characters.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[2] / "README.md"

_ANY_OBJECT, _ANY_LIST, _MORE = "\x00object", "\x00list", "\x00more"
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)$")
_STATUS = re.compile(r"^(\d{3})\s+(.*)$", re.S)


@dataclass(frozen=True)
class Block:
    section: str  # the nearest heading above it
    lang: str
    lines: tuple[str, ...]
    line: int  # where it opens in README.md (1-based)


@dataclass(frozen=True)
class CurlExample:
    command: str
    status: int | None  # None: any 2xx
    answer: str | None  # JSON with placeholders, or None when the README shows none
    line: int

    def __str__(self) -> str:
        return f"README.md:{self.line}: {self.command.splitlines()[0]}"


def blocks(text: str | None = None) -> list[Block]:
    found, section, opened, lang, body = [], "", 0, "", []
    for number, line in enumerate((README.read_text() if text is None else text).splitlines(), 1):
        if opened:
            if line.startswith("```"):
                found.append(Block(section, lang, tuple(body), opened))
                opened, body = 0, []
            else:
                body.append(line)
        elif line.startswith("```"):
            opened, lang = number, line[3:].strip()
        elif line.startswith("#"):
            section = line.lstrip("#").strip()
    return found


def section_blocks(title: str, text: str | None = None) -> list[Block]:
    return [b for b in blocks(text) if b.section == title]


def _complete(command: str) -> bool:
    if command.rstrip().endswith("\\"):
        return False
    try:
        shlex.split(command)
    except ValueError:  # an open quote: the command goes on on the next line
        return False
    return True


def curl_examples(text: str | None = None) -> list[CurlExample]:
    examples = []
    for block in blocks(text):
        lines, i = block.lines, 0
        while i < len(lines):
            if not lines[i].lstrip().startswith("curl "):
                i += 1
                continue
            start, command = i, lines[i]
            while not _complete(command) and i + 1 < len(lines):
                i += 1
                command += "\n" + lines[i]
            i += 1
            answer = None
            if i < len(lines) and lines[i].startswith("# → "):
                answer = lines[i][len("# → "):]
                i += 1
                while i < len(lines) and re.match(r"^#\s{2,}\S", lines[i]):
                    answer += " " + lines[i][1:].strip()
                    i += 1
            status = None
            if answer is not None and (m := _STATUS.match(answer)):
                status, answer = int(m.group(1)), m.group(2)
            examples.append(CurlExample(command, status, answer, block.line + 1 + start))
    return examples


def parse_shown(shown: str) -> Any:
    """The JSON an example shows, its placeholders turned into markers."""
    text = shown.strip()
    text = re.sub(r"\{\s*\.\.\.\s*\}", lambda _: json.dumps(_ANY_OBJECT), text)
    text = re.sub(r"\[\s*\.\.\.\s*\]", lambda _: json.dumps(_ANY_LIST), text)
    text = re.sub(r"(?<=[{,])\s*\.\.\.\s*(?=[,}])", lambda _: json.dumps(_MORE) + ": true", text)
    try:
        return json.loads(text)
    except ValueError as e:
        raise AssertionError(f"the README shows an answer that is not JSON ({e}): {shown}") from None


def mismatches(shown: str, actual: Any) -> list[str]:
    """How ``actual`` (decoded JSON) differs from what the README shows; empty when it
    matches."""
    problems: list[str] = []
    _compare(parse_shown(shown), actual, "answer", problems)
    return problems


def body_mismatches(shown: str, body: str) -> list[str]:
    """``mismatches`` for an HTTP body: JSON when the README shows JSON, else text."""
    try:
        expected = parse_shown(shown)
    except AssertionError:
        parts = re.split(r"\.\.\.|<[A-Za-z][^<>]*>", shown.strip())
        pattern = ".*".join(re.escape(part) for part in parts)
        return [] if re.fullmatch(pattern, body.strip(), re.S) else [
            f"answer: README shows {shown.strip()!r}, got {body.strip()!r}"]
    try:
        actual = json.loads(body)
    except ValueError:
        return [f"answer: README shows JSON, got {body.strip()[:200]!r}"]
    problems: list[str] = []
    _compare(expected, actual, "answer", problems)
    return problems


def _compare(expected: Any, actual: Any, where: str, problems: list[str]) -> None:
    if isinstance(expected, str):
        if expected == _ANY_OBJECT:
            ok = isinstance(actual, dict)
        elif expected == _ANY_LIST:
            ok = isinstance(actual, list)
        elif expected == "..." or (expected.startswith("<") and expected.endswith(">")):
            ok = True
        elif _TIMESTAMP.match(expected):
            ok = isinstance(actual, str) and bool(_TIMESTAMP.match(actual))
        else:
            ok = expected == actual
        if not ok:
            shown = {_ANY_OBJECT: "{...}", _ANY_LIST: "[...]"}.get(expected, repr(expected))
            problems.append(f"{where}: README shows {shown}, got {actual!r}")
    elif isinstance(expected, dict):
        if not isinstance(actual, dict):
            problems.append(f"{where}: README shows an object, got {actual!r}")
            return
        more = expected.get(_MORE, False)
        shown = {k: v for k, v in expected.items() if k != _MORE}
        for key in shown.keys() - actual.keys():
            problems.append(f"{where}.{key}: shown in the README, missing from the answer")
        if not more:
            for key in actual.keys() - shown.keys():
                problems.append(f"{where}.{key}: in the answer, not shown in the README")
        for key in shown.keys() & actual.keys():
            _compare(shown[key], actual[key], f"{where}.{key}", problems)
    elif isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            problems.append(f"{where}: README shows {expected!r}, got {actual!r}")
            return
        for n, (e, a) in enumerate(zip(expected, actual)):
            _compare(e, a, f"{where}[{n}]", problems)
    elif type(expected) is not type(actual) or expected != actual:
        problems.append(f"{where}: README shows {expected!r}, got {actual!r}")
