"""The README's layout section names every module of the core and of the built-in
plugins, and no module that does not exist.

In a bullet of the section, a quoted folder (`n2gateway/http/`) is where the quoted
module names after it (`routes.py`) live; a quoted path (`n2gateway/hub.py`) stands
for itself. A package's ``__init__.py`` is named by its folder.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
QUOTED = re.compile(r"`([^`\s]+)`")
FOLDER = re.compile(r"[\w.-]+(/[\w.-]+)*/")


def bullets() -> list[str]:
    section = README.read_text().split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    found: list[str] = []
    for line in section.splitlines():
        if line.lstrip().startswith("- "):
            found.append(line)
        elif found and line.startswith(" "):
            found[-1] += " " + line.strip()
    return found


def named_in_readme() -> set[str]:
    named = set()
    for bullet in bullets():
        folder = ""
        for token in QUOTED.findall(bullet):
            if FOLDER.fullmatch(token):
                folder = token
            elif token.endswith(".py") and token != "__init__.py":
                named.add(token if "/" in token else folder + token)
    return named


def modules() -> set[str]:
    return {str(p.relative_to(ROOT)) for top in ("n2gateway", "plugins")
            for p in (ROOT / top).rglob("*.py") if p.name != "__init__.py"}


def test_every_module_is_in_the_layout():
    assert sorted(modules() - named_in_readme()) == []


def test_the_layout_names_no_module_that_does_not_exist():
    assert sorted(p for p in named_in_readme() if not (ROOT / p).is_file()) == []
