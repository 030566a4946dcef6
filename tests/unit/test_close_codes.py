"""The WebSocket close codes: one module lists each once, and the README's table says
the same as that module, row for row."""

from __future__ import annotations

from pathlib import Path

from n2gateway.downstream import close_codes
from n2gateway.downstream.close_codes import TABLE, CloseCode

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_close_codes() -> list[CloseCode]:
    section = README.read_text().split("\n### Limits and close codes\n", 1)[1].split("\n#", 1)[0]
    table = section.split("\n| close code | meaning | what to do |\n|---|---|---|\n", 1)[1]
    rows = []
    for line in table.split("\n\n", 1)[0].splitlines():
        code, meaning, action = (cell.strip() for cell in line.strip().strip("|").split("|"))
        rows.append(CloseCode(int(code.strip("`")), meaning, action))
    return rows


def test_the_readme_table_is_the_module_table():
    assert readme_close_codes() == list(TABLE)


def test_each_code_has_one_meaning():
    codes = [row.code for row in TABLE]
    assert len(codes) == len(set(codes))


def test_every_close_constant_is_in_the_table():
    constants = {value for name, value in vars(close_codes).items() if name.startswith("CLOSE_")}
    assert constants == {row.code for row in TABLE}


def test_a_stalled_link_is_told_apart_from_a_slow_consumer():
    assert (close_codes.CLOSE_SLOW_CONSUMER, close_codes.CLOSE_TIMEOUT) == (4008, 4012)

