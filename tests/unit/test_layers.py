"""The package's layers, as docs/architecture.md's table draws them: every module is in
one, imports only from its own layer and the ones below, no import cycle, and the
core never imports a built-in plugin. Read from the source (every import statement,
those inside functions and under TYPE_CHECKING too), so nothing is imported to check it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def drawn_layers() -> list[set[str]]:
    """The layer table of docs/architecture.md, lowest first, as module names: a
    top-level module whole (``hub.py``), a folder by its prefix (``codecs/``)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    table = text.split("\n| layer | modules |\n|---|---|\n", 1)[1].split("\n\n", 1)[0]
    drawn = []
    for row in table.splitlines():
        cells = row.strip().strip("|").split("|", 1)[1]
        names = re.findall(r"`([\w/]+?)(?:\.py|/)`", cells)
        drawn.append({"n2gateway." + name.replace("/", ".") for name in names})
    return drawn[::-1]


#: Lowest first; the package itself (its ``__init__``) is on the ground floor.
LAYERS = drawn_layers()
LAYERS[0].add("n2gateway")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The modules ``path`` names in its imports (``from a import b`` names ``a`` and,
    when it is a module, ``a.b``)."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    named = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            named.add(module)
            named.update(f"{module}.{alias.name}" for alias in node.names)
    return named


def graph() -> dict[str, set[str]]:
    paths = sorted((ROOT / "n2gateway").rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): {m for m in imports(p) if m in modules} - {module_name(p)}
            for p in paths}


def layer(module: str) -> int:
    for rank, members in enumerate(LAYERS):
        if any(module == m or (m != "n2gateway" and module.startswith(m + ".")) for m in members):
            return rank
    raise AssertionError(f"{module} has no layer: add it to docs/architecture.md's table")


def test_every_module_has_a_layer():
    for module in graph():
        layer(module)


def test_no_module_imports_a_higher_layer():
    upward = [f"{module} imports {target}"
              for module, targets in graph().items() for target in sorted(targets)
              if layer(target) > layer(module)]
    assert upward == []


def test_no_import_cycle():
    edges = graph()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(module):]
                                                                 + [module]))
        if module in done:
            return
        for target in sorted(edges[module]):
            visit(target, path + [module])
        done.add(module)

    for module in sorted(edges):
        visit(module, [])


def test_the_core_imports_no_built_in_plugin():
    for path in (ROOT / "n2gateway").rglob("*.py"):
        assert not any(m.split(".")[0] == "n2gateway_plugins" for m in imports(path)), path
