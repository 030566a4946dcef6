"""README.md runs as written: its chat "Try it" session and every ``curl`` example, read
from the README itself, against a real ``twistd -n n2gateway`` with the embedded
PostgreSQL and the built-in plugins, compared with the answers the README shows
(the rule is in tests/support/readme.py).

What the test does instead of the reader: it starts the gateway (``make run``) with
``--admin-token`` (``ADMIN_TOKEN`` exported for every command), ``--node-id node-a``
and the Pancake and TPOS URLs pointed at the local fakes; it plays wscat with a
WebSocket client; it fills the README's ``<placeholders>`` with valid test values.
Every other line goes through ``bash`` as the README has it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import urllib.request
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.web.server import Site

from tests.fakes.pancake import FakePancake
from tests.fakes.tpos import FakeTpos
from tests.fakes.tpos_token import FakeTokenEndpoint
from tests.support.gateway import ROOT, GatewayProcess
from tests.support.readme import (Block, CurlExample, body_mismatches, curl_examples,
                                  mismatches, section_blocks)
from tests.support.waiting import eventually, sleep
from tests.support.ws import WsClient

ADMIN = "readme-admin-token-0123456789"
# How long a state the README shows may take to settle (a session connecting).
SETTLE = 20.0
# curl as the README runs it, plus the status code on a last line of its own.
CURL = ("curl() { command curl --silent --show-error --max-time 20"
        " --write-out '\\n%{http_code}' \"$@\"; }\n")


def fill_placeholders(command: str, port: int) -> str:
    """``<pancake access token>`` → ``readme-pancake-access-token-0123456789`` (valid for
    every id and token field), and the README's host → the test gateway."""
    command = command.replace("localhost:8080", f"127.0.0.1:{port}")
    return re.sub(r"<([A-Za-z][^<>\n]*)>", lambda m: "readme-" + "-".join(
        re.findall(r"[a-z0-9]+", m.group(1).lower())) + "-0123456789", command)


class Reader:
    """The newcomer's terminals: a shell with ADMIN_TOKEN exported, and wscat."""

    def __init__(self, gateway: GatewayProcess, tmp_path: Path) -> None:
        self.gateway = gateway
        # The terminal's environment after each command block, for the next one.
        self.saved_env = tmp_path / "reader.env"
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("N2GATEWAY_") and k != "DATABASE_URL"}
        # `n2gateway dsn` reads the data dir the gateway was started with.
        self.env.update(ADMIN_TOKEN=ADMIN, N2GATEWAY_DATA_DIR=str(gateway.data_dir))
        self.wscat: WsClient | None = None
        self.seen = 0  # frames of wscat compared so far

    async def shell(self, script: str) -> tuple[str, str, int]:
        out, err, code = await getProcessOutputAndValue(
            "/bin/bash", ["-c", "set -euo pipefail\n" + script], env=self.env, path=str(ROOT),
            reactor=reactor)
        return out.decode(), err.decode(), code

    async def run_block(self, block: Block) -> None:
        if block.lang in ("bash", "sh"):
            await self._commands(block)
        else:
            await self._wscat_window(block)

    async def _commands(self, block: Block) -> None:
        script = []
        for line in block.lines:
            if line.startswith("make run"):
                continue  # the test started the gateway
            if wscat := re.match(r"npx wscat -c '([^']+)'", line):
                await self._connect(wscat.group(1))
            elif line.strip() and not line.startswith("#"):
                script.append(fill_placeholders(line, self.gateway.port))
        if script:
            script.append(f"env -0 > {shlex.quote(str(self.saved_env))}")
            out, err, code = await self.shell("\n".join(script))
            assert code == 0, f"README.md:{block.line}: exit {code}\n{out}{err}"
            self.env = dict(v.split("=", 1) for v in self.saved_env.read_text().split("\0") if v)

    async def _connect(self, url: str) -> None:
        parts = re.match(r"ws://localhost:8080(/[^?]*)\?(.*)$", url)
        assert parts, f"the README's wscat URL is not ws://localhost:8080/...?...: {url}"
        self.wscat = await WsClient.connect(self.gateway.port, parts.group(2),
                                            path=parts.group(1), wait_welcome=False)

    async def _wscat_window(self, block: Block) -> None:
        for number, line in enumerate(block.lines, block.line + 1):
            if line.startswith("> "):
                self.wscat.send_raw(line[2:].encode())
            elif line.startswith("< "):
                await eventually(lambda: len(self.wscat.frames) > self.seen, SETTLE,
                                 f"the frame of README.md:{number}; got {self.wscat.frames}")
                frame = self.wscat.frames[self.seen]
                self.seen += 1
                problems = mismatches(line[2:], frame)
                assert not problems, f"README.md:{number}: {problems}"

    async def nothing_else_in_the_wscat_window(self) -> None:
        """Every frame wscat got is in the README: a last subscribe's answer comes after
        anything still on its way."""
        self.wscat.send({"type": "subscribe", "room": "readme-last"})
        answer = await self.wscat.next("subscribed", start=self.seen)
        extra = self.wscat.frames[self.seen:self.wscat.frames.index(answer)]
        assert extra == [], f"wscat shows frames the README does not: {extra}"
        await self.wscat.close()

    async def curl(self, example: CurlExample) -> None:
        out, err, code = await self.shell(CURL + fill_placeholders(example.command, self.gateway.port))
        assert code == 0, f"{example}: curl exited {code}: {err}"
        body, _, status = out.rpartition("\n")
        if example.answer is None:
            assert 200 <= int(status) < 300, f"{example}: answered {status} {body}"
            return
        expected = int(status) == example.status if example.status else 200 <= int(status) < 300
        problems = [] if expected else [f"status {status}, README shows {example.status or '2xx'}"]
        problems += body_mismatches(example.answer, body)
        if problems:
            raise Mismatch(f"{example}:\n  " + "\n  ".join(problems) + f"\n  answer: {body}")


class Mismatch(AssertionError):
    pass


@pytest.fixture
def upstream_fakes():
    pancake = FakePancake(reactor)
    pancake.listen()
    tpos = FakeTpos(reactor)
    tpos_port = reactor.listenTCP(0, tpos.factory, interface="127.0.0.1")
    # The README's `<TPOS user>` and `<TPOS password>`, as fill_placeholders makes them.
    tokens = reactor.listenTCP(0, Site(FakeTokenEndpoint(
        "readme-tpos-user-0123456789", "readme-tpos-password-0123456789", 3600)),
        interface="127.0.0.1")
    yield (pancake, f"ws://127.0.0.1:{tpos_port.getHost().port}/socket.io/",
           f"http://127.0.0.1:{tokens.getHost().port}/token")
    pytest_twisted.blockon(defer.Deferred.fromCoroutine(pancake.close()))
    for session in list(tpos.sessions):
        session.dropConnection(abort=True)
    pytest_twisted.blockon(tpos_port.stopListening())
    pytest_twisted.blockon(tokens.stopListening())


def test_the_readme_has_examples_to_run():
    """The parser finds them: an empty list would make the test below pass vacuously."""
    assert len(curl_examples()) >= 10
    assert {b.lang for b in section_blocks("Try it")} == {"bash", ""}


@pytest_twisted.ensureDeferred
async def test_the_readme_examples_give_what_the_readme_shows(tmp_path, upstream_fakes):
    pancake, tpos_url, token_url = upstream_fakes
    gateway = GatewayProcess(tmp_path, "--admin-token", ADMIN, "--node-id", "node-a",
                             "--pancake-url", pancake.url(), "--tpos-url", tpos_url,
                             env={"N2GATEWAY_TPOS_TOKEN_URL": token_url})
    gateway.env.pop("XDG_RUNTIME_DIR", None)  # `make run` over ssh, in a container
    gateway.start()
    try:
        await gateway.wait_ready(timeout=90)
        reader = Reader(gateway, tmp_path)
        # A reader starts wscat seconds later: by then the chat plugin's first
        # users:updated (offset 1, the README says) is in the journal.
        await eventually(lambda: _head(gateway) != "0", SETTLE, "the chat plugin's first event")
        for block in section_blocks("Try it"):
            await reader.run_block(block)
        await reader.nothing_else_in_the_wscat_window()
        log = gateway.log_text()
        assert "embedded PostgreSQL ready at postgresql://" in log
        assert "XDG_RUNTIME_DIR" not in log and "Warning" not in log

        for example in curl_examples():
            await _settled(reader, example)
    finally:
        if gateway.process.poll() is None:
            await gateway.terminate()  # SIGTERM: the embedded PostgreSQL stops with it


def _head(gateway: GatewayProcess) -> str:
    request = urllib.request.Request(gateway.url + "/api/hub/status",
                                     headers={"Authorization": f"Bearer {ADMIN}"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.loads(answer.read())["head"]


async def _settled(reader: Reader, example: CurlExample) -> None:
    """A GET may show a state that takes a moment (a session connecting, a client gone):
    it is asked again until it matches, for a bounded time. Other methods run once."""
    words = shlex.split(example.command.replace("\\\n", " "))
    if "-X" in words and words[words.index("-X") + 1] != "GET":
        await reader.curl(example)
        return
    waited = 0.0
    while True:
        try:
            await reader.curl(example)
            return
        except Mismatch:
            if waited >= SETTLE:
                raise
        await sleep(0.25)
        waited += 0.25
