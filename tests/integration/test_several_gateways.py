"""Several gateway processes on one PostgreSQL, under faults.

Real ``twistd`` processes, a real PostgreSQL, the fake Pancake server in this
process. Each test proves a promise an operator relies on: one upstream session
at a time, takeover within seconds, and no accepted event lost or duplicated for
clients that resume by offset on any node.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from pathlib import Path

import psycopg2
import pytest_twisted
from twisted.internet import reactor

from tests.fakes.pancake import FakePancake
from tests.support.claimed_pancake import TOKEN
from tests.support.gateway import GatewayProcess, sleep
from tests.support.wsclient import ResumingClient

PLUGIN = ("--plugin", "tests.support.claimed_pancake")
FAST_POLL = {"N2GATEWAY_POLL_INTERVAL": "0.2"}


def gateway(tmp_path: Path, name: str, database_url: str, *args: str) -> GatewayProcess:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    return GatewayProcess(folder, "--node-id", name, *args, database_url=database_url,
                          env=FAST_POLL)


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=3) as answer:
        return json.loads(answer.read())


async def wait_until(predicate, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        waited = time.monotonic() - started
        assert waited < timeout, f"{what}: not within {timeout} s"
        await sleep(0.05)
    return time.monotonic() - started


def owner_of(nodes: list[GatewayProcess], source: str) -> GatewayProcess | None:
    for node in nodes:
        answer = node.health()
        if answer and source in answer[1].get("node", {}).get("owns", []):
            return node
    return None


class Stream:
    """Pushes a numbered event to the fake's ``users:1`` channel every ``interval``."""

    def __init__(self, fake: FakePancake, interval: float = 0.02) -> None:
        self.fake = fake
        self.n = 0
        self.delivered: list[tuple[int, float]] = []  # (n, when) pushed to a joined session
        self._loop = None
        self.interval = interval

    def start(self) -> "Stream":
        from twisted.internet.task import LoopingCall

        self._loop = LoopingCall(self._push)
        self._loop.start(self.interval)
        return self

    def _push(self) -> None:
        self.n += 1
        if self.fake.push("users:1", "pages:new_message", {"n": self.n}):
            self.delivered.append((self.n, time.monotonic()))

    def stop(self) -> None:
        self._loop.stop()


def journal(sql, room: str) -> list[tuple[int, int]]:
    """(offset, n) of every event of ``room``, in offset order."""
    return [(seq, payload["n"]) for seq, payload in sql(
        "SELECT seq, payload FROM n2_journal WHERE %s = ANY(rooms) ORDER BY seq", (room,))]


@pytest_twisted.ensureDeferred
async def test_owner_killed_another_takes_over_and_clients_miss_nothing(tmp_path, database_url, sql):
    fake = FakePancake(reactor)
    fake.listen()
    nodes = [gateway(tmp_path, name, database_url, *PLUGIN, "--pancake-url", fake.url())
             for name in ("node-a", "node-b")]
    clients: list[ResumingClient] = []
    stream = None
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            await node.wait_healthy()
        await fake.wait_joined(2)
        # Each client starts on its own node; the killed node's client moves over.
        clients = [ResumingClient([n.port for n in nodes[i:] + nodes[:i]], "pancake", f"u{i}").start()
                   for i in range(2)]
        await wait_until(lambda: all(c.subscribed for c in clients), 10, "clients subscribed")
        stream = Stream(fake).start()
        await wait_until(lambda: all(len(c.offsets) >= 25 for c in clients), 10, "events flowing")

        owner = owner_of(nodes, "pancake")
        survivor = next(n for n in nodes if n is not owner)
        assert get_json(survivor.url + "/api/hub/status")["node"]["owners"] == {
            "pancake": owner.args[owner.args.index("--node-id") + 1]}
        killed_at = time.monotonic()
        await owner.kill()
        took = await wait_until(lambda: fake.concurrent(TOKEN) == 1 and fake.join_count >= 4,
                                10, "takeover by the survivor")
        assert owner_of([survivor], "pancake") is survivor
        after_takeover = stream.n
        await wait_until(lambda: stream.n >= after_takeover + 25, 5, "stream after takeover")
        stream.stop()
        final_n = stream.delivered[-1][0]
        await wait_until(lambda: journal(sql, "pancake")[-1][1] == final_n, 5, "last event stored")
        last = journal(sql, "pancake")[-1][0]
        await wait_until(lambda: all(c.last >= last for c in clients), 10, "clients caught up")
    finally:
        if stream is not None and stream._loop.running:
            stream.stop()
        for client in clients:
            client.stop()
        for node in nodes:
            node.ensure_stopped()
        await fake.close()

    events = journal(sql, "pancake")
    offsets = [offset for offset, _ in events]
    for client in clients:
        # Every event of the room exactly once, in order, across the reconnect.
        assert client.offsets == offsets
    assert len(clients[0].connected_to) >= 2 or len(clients[1].connected_to) >= 2
    # The upstream never saw two sessions at once.
    assert fake.peak_concurrent[TOKEN] == 1
    assert took < 10
    # Nothing the old owner took in well before it died is missing, nor anything since.
    stored = {n for _, n in events}
    assert len(stored) == len(events), "an upstream event was stored twice"
    lost = [n for n, at in stream.delivered
            if n not in stored and (at < killed_at - 0.5 or n > after_takeover)]
    assert lost == []


@pytest_twisted.ensureDeferred
async def test_sigterm_hands_the_source_over_at_once_and_sends_clients_elsewhere(
        tmp_path, database_url, sql):
    fake = FakePancake(reactor)
    fake.listen()
    nodes = [gateway(tmp_path, name, database_url, *PLUGIN, "--pancake-url", fake.url())
             for name in ("node-a", "node-b")]
    client = None
    try:
        nodes[0].start()
        await nodes[0].wait_healthy()
        await fake.wait_joined(2)
        nodes[1].start()
        await nodes[1].wait_healthy()
        # Both nodes say who they are and agree on who owns what.
        for node, name in zip(nodes, ("node-a", "node-b")):
            health = node.health()[1]["node"]
            hub = get_json(node.url + "/api/hub/status")["node"]
            for status in (health, hub):
                assert status["node"] == name
                assert status["owners"] == {"pancake": "node-a"}
                assert status["owns"] == (["pancake"] if name == "node-a" else [])

        client = ResumingClient([n.port for n in nodes], "pancake").start()
        await wait_until(lambda: client.subscribed, 10, "client subscribed")
        fake.push("users:1", "pages:new_message", {"n": 1})
        await wait_until(lambda: len(client.offsets) == 1, 5, "first event")

        terminated_at = time.monotonic()
        nodes[0].process.send_signal(signal.SIGTERM)
        took = await wait_until(lambda: fake.join_count >= 4, 10, "takeover after SIGTERM")
        # twistd ends with the status of the signal it handled (what systemd and a
        # shell count as a clean stop), after the drain has finished.
        assert await nodes[0].wait_exit() == -signal.SIGTERM
        assert "gateway stopped" in nodes[0].log_text()
        # A clean release needs no grace period: the survivor starts at once.
        assert took < 2.5, f"takeover took {took:.1f} s"
        assert fake.peak_concurrent[TOKEN] == 1
        assert 4101 in client.close_codes
        await wait_until(lambda: client.subscribed, 5, "client resumed on node-b")
        assert client.connected_to[-1] == nodes[1].port
        fake.push("users:1", "pages:new_message", {"n": 2})
        await wait_until(lambda: len(client.offsets) == 2, 5, "event through node-b")
        assert nodes[1].health()[1]["node"]["owners"] == {"pancake": "node-b"}
        assert time.monotonic() - terminated_at < 15
    finally:
        if client is not None:
            client.stop()
        for node in nodes:
            node.ensure_stopped()
        await fake.close()
    assert client.offsets == [offset for offset, _ in journal(sql, "pancake")]


class Publisher:
    """POSTs a numbered event to ``room`` every ``interval``, round-robin over the
    nodes; an event is *accepted* once its POST is answered with an offset."""

    def __init__(self, nodes: list[GatewayProcess], room: str, interval: float = 0.05) -> None:
        self.nodes = nodes
        self.room = room
        self.interval = interval
        self.n = 0
        self.accepted: dict[int, int] = {}  # n -> offset
        self.refused: list[int] = []
        self.outstanding = 0
        self._loop = None

    def start(self) -> "Publisher":
        from twisted.internet.task import LoopingCall

        self._loop = LoopingCall(self._publish)
        self._loop.start(self.interval)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def _publish(self) -> None:
        import treq

        self.n += 1
        n, node = self.n, self.nodes[self.n % len(self.nodes)]
        self.outstanding += 1

        async def post() -> None:
            try:
                answer = await treq.post(node.url + "/api/publish", json={
                    "rooms": [self.room], "event": "load", "payload": {"n": n}}, timeout=60)
                body = await answer.json()
                if answer.code == 200:
                    self.accepted[n] = int(body["offset"])
                else:
                    self.refused.append(n)
            except Exception:
                self.refused.append(n)
            finally:
                self.outstanding -= 1

        from twisted.internet.defer import Deferred
        Deferred.fromCoroutine(post())


class SeparatePostgres:
    """A PostgreSQL of the test's own, which the test may stop and start again."""

    def __init__(self, folder: Path) -> None:
        import pgserver

        self.server = pgserver.get_server(folder / "pgdata", cleanup_mode="stop")
        self.url = self.server.get_uri()

    def _pg_ctl(self, *args: str) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(list(args), pgdata=self.server.pgdata, user=self.server.system_user, timeout=20)

    async def stop(self) -> None:
        from twisted.internet.threads import deferToThread

        await deferToThread(self._pg_ctl, "-w", "-m", "fast", "stop")

    async def start(self) -> None:
        from urllib.parse import parse_qs, urlsplit

        from twisted.internet.threads import deferToThread

        # Started as pgserver starts it: no TCP, the same socket folder.
        socket_dir = parse_qs(urlsplit(self.url).query)["host"][0]
        await deferToThread(self._pg_ctl, "-w", "-o", '-h ""', "-o", f"-k {socket_dir}",
                            "-l", str(self.server.log), "start")

    def cleanup(self) -> None:
        self.server.cleanup()


@pytest_twisted.ensureDeferred
async def test_postgres_restarted_under_load_loses_no_accepted_event(tmp_path):
    postgres = SeparatePostgres(tmp_path)
    fake = FakePancake(reactor)
    fake.listen()
    nodes = [gateway(tmp_path, name, postgres.url, *PLUGIN, "--pancake-url", fake.url())
             for name in ("node-a", "node-b")]
    clients: list[ResumingClient] = []
    publisher = Publisher(nodes, "load")
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            await node.wait_healthy()
        await fake.wait_joined(2)
        clients = [ResumingClient([node.port], "load", f"u{i}").start()
                   for i, node in enumerate(nodes)]
        await wait_until(lambda: all(c.subscribed for c in clients), 10, "clients subscribed")
        publisher.start()
        await wait_until(lambda: len(publisher.accepted) >= 20, 10, "publishing")

        await postgres.stop()
        await sleep(1.5)
        await postgres.start()
        restarted_at = time.monotonic()
        await wait_until(lambda: len(publisher.accepted) >= publisher.n - 5, 15,
                         "publishes answered after the restart")
        # The source is owned again (the old session was stopped with the lock).
        await wait_until(lambda: owner_of(nodes, "pancake") is not None, 15, "leadership again")
        await wait_until(lambda: fake.concurrent(TOKEN) == 1, 10, "upstream session again")
        publisher.stop()
        await wait_until(lambda: publisher.outstanding == 0, 15, "every publish answered")
        last = max(publisher.accepted.values())
        await wait_until(lambda: all(c.last >= last for c in clients), 10, "clients caught up")
        assert time.monotonic() - restarted_at < 25
    finally:
        publisher.stop()
        for client in clients:
            client.stop()
        for node in nodes:
            node.ensure_stopped()
        await fake.close()
        try:
            with psycopg2.connect(postgres.url) as connection, connection.cursor() as cur:
                cur.execute("SELECT seq, payload FROM n2_journal"
                            " WHERE 'load' = ANY(rooms) ORDER BY seq")
                stored = [(seq, payload["n"]) for seq, payload in cur.fetchall()]
        finally:
            postgres.cleanup()
    # Publishes waiting in a gateway while the database was down were retried, not
    # refused; every accepted one is stored once, at the offset its answer named.
    assert publisher.refused == []
    assert {n: offset for offset, n in stored} == publisher.accepted
    for client in clients:
        assert client.offsets == [offset for offset, _ in stored]
    assert fake.peak_concurrent[TOKEN] == 1
