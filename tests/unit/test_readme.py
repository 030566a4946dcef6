"""The README's configuration tables are the option table of n2gateway/config.py and
the options the built-in plugins declare."""

from __future__ import annotations

from pathlib import Path

from n2gateway.config import OPTIONS
from n2gateway.plugins import declared_options, load_plugins

README = Path(__file__).resolve().parents[2] / "README.md"


def table_rows(heading: str = "## Configuration") -> dict[str, list[str]]:
    text = README.read_text()
    section = text.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `--"):
            rows[cells[0].split("`")[1]] = cells
    return rows


def test_the_readme_lists_every_option_with_its_variable_and_default():
    rows = table_rows()
    for option in OPTIONS:
        assert f"--{option.name}" in rows, f"--{option.name} is missing from README.md"
        cells = rows[f"--{option.name}"]
        assert cells[1] == f"`{option.env}`"
        if option.default:
            assert cells[2] == f"`{option.default}`"
    assert rows["--plugin"][1].startswith("`N2GATEWAY_PLUGINS`")


def test_the_readme_lists_no_option_that_does_not_exist():
    assert set(table_rows()) == {f"--{o.name}" for o in OPTIONS} | {"--plugin"}


def test_the_readme_lists_every_built_in_plugin_option_and_no_other():
    rows = table_rows("### Plugin options")
    declared = declared_options(load_plugins())
    assert set(rows) == {f"--{d.name}" for d in declared}
    for option in declared:
        cells = rows[f"--{option.name}"]
        assert (cells[1], cells[2], cells[3]) == (f"`{option.env}`", f"`{option.default}`",
                                                  option.help)


def test_quick_start_is_two_commands():
    quick = README.read_text().split("## Quick start", 1)[1].split("```sh", 1)[1].split("```")[0]
    assert quick.split() == ["make", "run", "make", "test"]
