"""The ``Journal`` protocol is what the PostgreSQL journal and the in-memory fake both
are: every member there, every method with the protocol's parameters and defaults,
awaitable where the protocol's is, so a test on the fake tests what the gateway runs."""

from __future__ import annotations

import inspect

import pytest
from twisted.internet.task import Clock

from n2gateway.db import Database
from n2gateway.journal import Journal, PostgresJournal
from tests.fakes.journal import FakeJournal

METHODS = {name: member for name, member in vars(Journal).items()
           if not name.startswith("_") and inspect.isfunction(member)}


def parameters(function) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def journals() -> list:
    clock = Clock()
    return [PostgresJournal(Database(clock), clock), FakeJournal()]


def test_the_protocol_names_what_the_hub_routes_and_sources_use() -> None:
    assert set(METHODS) == {"append", "append_in", "commit_with", "ring", "read_after",
                            "replay", "tail", "head", "horizon"}


@pytest.mark.parametrize("journal", journals(), ids=type)
def test_each_journal_has_every_member_of_the_protocol(journal) -> None:
    assert isinstance(journal, Journal)
    assert isinstance(journal.pending, int)


@pytest.mark.parametrize("journal", journals(), ids=type)
@pytest.mark.parametrize("name", sorted(METHODS))
def test_each_method_takes_what_the_protocol_says(journal, name: str) -> None:
    declared, theirs = METHODS[name], getattr(journal, name)
    assert inspect.iscoroutinefunction(theirs) == inspect.iscoroutinefunction(declared)
    assert parameters(theirs) == parameters(declared)[1:]  # bound: without self
