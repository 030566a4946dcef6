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
from twisted.internet.task import LoopingCall

from tests.fakes.pancake import FakePancake
from tests.support.gateway import GatewayProcess
from tests.support.waiting import eventually, sleep
from tests.support.wsclient import ResumingClient

# The Pancake plugin as shipped; the other sources stay out.
PANCAKE_ONLY = ("--disable-plugin", "chat,tpos")
TOKEN = "fault-test-token"
NEW_TOKEN = "fault-test-token-2"
CREDENTIALS = {"token": TOKEN, "userId": "1", "pageIds": ["p1"]}
FAST_POLL = {"N2GATEWAY_POLL_INTERVAL": "0.2"}


def gateway(tmp_path: Path, name: str, database_url: str, *args: str) -> GatewayProcess:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    return GatewayProcess(folder, "--node-id", name, *args, database_url=database_url,
                          env=FAST_POLL)


def two_gateways(tmp_path: Path, database_url: str, *args: str) -> list[GatewayProcess]:
    return [gateway(tmp_path, name, database_url, *args) for name in ("node-a", "node-b")]


async def start_all(nodes: list[GatewayProcess]) -> None:
    for node in nodes:
        node.start()
    for node in nodes:
        await node.wait_healthy()


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=3) as answer:
        return json.loads(answer.read())


def post_json(url: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body or {}).encode(), method="POST",
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.loads(answer.read())


def pancake_gateways(tmp_path: Path, database_url: str, fake: FakePancake) -> list[GatewayProcess]:
    return two_gateways(tmp_path, database_url, *PANCAKE_ONLY, "--pancake-url", fake.url())


def node_id(node: GatewayProcess) -> str:
    return node.args[node.args.index("--node-id") + 1]


def stop_all(nodes: list[GatewayProcess], *stoppable) -> None:
    """Stop what a test started (streams, publishers, clients), then its gateways."""
    for thing in stoppable:
        if thing is not None:
            thing.stop()
    for node in nodes:
        node.ensure_stopped()


def owner_of(nodes: list[GatewayProcess], source: str) -> GatewayProcess | None:
    for node in nodes:
        answer = node.health()
        if answer and source in answer[1].get("node", {}).get("owns", []):
            return node
    return None


class Steady:
    """Does numbered step ``n`` (1, 2, ...) every ``interval`` seconds until stopped."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.n = 0
        self._loop = LoopingCall(self._next)

    def start(self):
        self._loop.start(self.interval)
        return self

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def _next(self) -> None:
        self.n += 1
        self.step(self.n)


class Stream(Steady):
    """Pushes a numbered event to the fake's ``users:1`` channel."""

    def __init__(self, fake: FakePancake, interval: float = 0.02) -> None:
        super().__init__(interval)
        self.fake = fake
        self.delivered: list[tuple[int, float]] = []  # (n, when) pushed to a joined session

    def step(self, n: int) -> None:
        if self.fake.push("users:1", "pages:new_message", {"n": n}):
            self.delivered.append((n, time.monotonic()))


def journal(sql, room: str) -> list[tuple[int, int]]:
    """(offset, n) of every event of ``room``, in offset order."""
    return [(seq, payload["n"]) for seq, payload in sql(
        "SELECT seq, payload FROM n2_journal WHERE %s = ANY(rooms) ORDER BY seq", (room,))]


@pytest_twisted.ensureDeferred
async def test_owner_killed_another_takes_over_and_clients_miss_nothing(tmp_path, database_url, sql):
    fake = FakePancake(reactor)
    fake.listen()
    nodes = pancake_gateways(tmp_path, database_url, fake)
    clients: list[ResumingClient] = []
    stream = None
    try:
        await start_all(nodes)
        post_json(nodes[0].url + "/api/realtime/start", CREDENTIALS)
        await fake.wait_joined(2)
        # Each client starts on its own node; the killed node's client moves over.
        clients = [ResumingClient([n.port for n in nodes[i:] + nodes[:i]], "pancake", f"u{i}").start()
                   for i in range(2)]
        await eventually(lambda: all(c.subscribed for c in clients), 10, "clients subscribed")
        stream = Stream(fake).start()
        await eventually(lambda: all(len(c.offsets) >= 25 for c in clients), 10, "events flowing")

        owner = owner_of(nodes, "pancake")
        survivor = next(n for n in nodes if n is not owner)
        assert get_json(survivor.url + "/api/hub/status")["node"]["owners"] == {
            "pancake": node_id(owner)}
        killed_at = time.monotonic()
        await owner.kill()
        await eventually(lambda: fake.concurrent(TOKEN) == 1 and fake.join_count >= 4,
                         10, "takeover by the survivor")
        assert owner_of([survivor], "pancake") is survivor
        # The dead owner could not let go: the survivor waited for its session to end.
        assert "holds pancake, whose last owner did not let go" in survivor.log_text()
        after_takeover = stream.n
        await eventually(lambda: stream.n >= after_takeover + 25, 5, "stream after takeover")
        stream.stop()
        final_n = stream.delivered[-1][0]
        await eventually(lambda: journal(sql, "pancake")[-1][1] == final_n, 5, "last event stored")
        last = journal(sql, "pancake")[-1][0]
        await eventually(lambda: all(c.last >= last for c in clients), 10, "clients caught up")
    finally:
        stop_all(nodes, stream, *clients)
        await fake.close()

    events = journal(sql, "pancake")
    offsets = [offset for offset, _ in events]
    for client in clients:
        # Every event of the room exactly once, in order, across the reconnect.
        assert client.offsets == offsets
    assert len(clients[0].connected_to) >= 2 or len(clients[1].connected_to) >= 2
    # The upstream never saw two sessions at once.
    assert fake.peak_concurrent[TOKEN] == 1
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
    nodes = pancake_gateways(tmp_path, database_url, fake)
    client = None
    try:
        nodes[0].start()
        await nodes[0].wait_healthy()
        await eventually(lambda: owner_of(nodes[:1], "pancake"), 10, "node-a owning pancake")
        nodes[1].start()
        await nodes[1].wait_healthy()
        # Credentials given to the node that does not hold Pancake reach the one that does.
        post_json(nodes[1].url + "/api/realtime/start", CREDENTIALS)
        await fake.wait_joined(2)
        # Both nodes say who they are and agree on who owns what.
        for node, name in zip(nodes, ("node-a", "node-b")):
            health = node.health()[1]["node"]
            hub = get_json(node.url + "/api/hub/status")["node"]
            for status in (health, hub):
                assert status["node"] == name
                assert status["owners"] == {"pancake": "node-a"}
                assert status["owns"] == (["pancake"] if name == "node-a" else [])

        client = ResumingClient([n.port for n in nodes], "pancake").start()
        await eventually(lambda: client.subscribed, 10, "client subscribed")
        fake.push("users:1", "pages:new_message", {"n": 1})
        await eventually(lambda: len(client.offsets) == 1, 5, "first event")

        nodes[0].process.send_signal(signal.SIGTERM)
        await eventually(lambda: fake.join_count >= 4, 10, "takeover after SIGTERM")
        assert await nodes[0].wait_exit() == 0
        assert "gateway stopped" in nodes[0].log_text()
        # A clean release needs no grace period: the survivor starts at once.
        assert "did not let go" not in nodes[1].log_text()
        assert fake.peak_concurrent[TOKEN] == 1
        assert 4101 in client.close_codes
        await eventually(lambda: client.subscribed, 5, "client resumed on node-b")
        assert client.connected_to[-1] == nodes[1].port
        fake.push("users:1", "pages:new_message", {"n": 2})
        await eventually(lambda: len(client.offsets) == 2, 5, "event through node-b")
        assert nodes[1].health()[1]["node"]["owners"] == {"pancake": "node-b"}
    finally:
        stop_all(nodes, client)
        await fake.close()
    assert client.offsets == [offset for offset, _ in journal(sql, "pancake")]


class Publisher(Steady):
    """POSTs a numbered event to ``room`` every ``interval``, round-robin over the
    nodes; an event is *accepted* once its POST is answered with an offset."""

    def __init__(self, nodes: list[GatewayProcess], room: str, interval: float = 0.05,
                 pad: int = 0) -> None:
        super().__init__(interval)
        self.nodes = nodes
        self.room = room
        self.padding = "x" * pad
        self.accepted: dict[int, int] = {}  # n -> offset
        self.refused: list[int] = []
        self.outstanding = 0

    def step(self, n: int) -> None:
        import treq

        node = self.nodes[n % len(self.nodes)]
        self.outstanding += 1

        async def post() -> None:
            try:
                answer = await treq.post(node.url + "/api/publish", json={
                    "rooms": [self.room], "event": "load", "payload": {"n": n, "pad": self.padding}},
                    timeout=60)
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
        from n2gateway.db.embedded import import_pgserver

        self.server = import_pgserver().get_server(folder / "pgdata", cleanup_mode="stop")
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
        # pgserver stops only the postmaster it started itself, not the one pg_ctl
        # started again in ``start``: that one is stopped here, or it outlives the run.
        if (self.server.pgdata / "postmaster.pid").exists():
            self._pg_ctl("-w", "-m", "fast", "stop")
        self.server.cleanup()


@pytest_twisted.ensureDeferred
async def test_postgres_restarted_under_load_loses_no_accepted_event(tmp_path):
    postgres = SeparatePostgres(tmp_path)
    fake = FakePancake(reactor)
    fake.listen()
    nodes = pancake_gateways(tmp_path, postgres.url, fake)
    clients: list[ResumingClient] = []
    publisher = Publisher(nodes, "load")
    try:
        await start_all(nodes)
        post_json(nodes[1].url + "/api/realtime/start", CREDENTIALS)
        await fake.wait_joined(2)
        clients = [ResumingClient([node.port], "load", f"u{i}").start()
                   for i, node in enumerate(nodes)]
        await eventually(lambda: all(c.subscribed for c in clients), 10, "clients subscribed")
        publisher.start()
        await eventually(lambda: len(publisher.accepted) >= 20, 10, "publishing")

        await postgres.stop()
        await sleep(1.5)
        await postgres.start()
        await eventually(lambda: len(publisher.accepted) >= publisher.n - 5, 15,
                         "publishes answered after the restart")
        # The source is owned again (the old session was stopped with the lock).
        await eventually(lambda: owner_of(nodes, "pancake") is not None, 15, "leadership again")
        await eventually(lambda: fake.concurrent(TOKEN) == 1, 10, "upstream session again")
        publisher.stop()
        await eventually(lambda: publisher.outstanding == 0, 15, "every publish answered")
        last = max(publisher.accepted.values())
        await eventually(lambda: all(c.last >= last for c in clients), 10, "clients caught up")
    finally:
        stop_all(nodes, publisher, *clients)
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


class NeverReads:
    """A raw TCP client that completes the WebSocket handshake, subscribes, and then
    never reads again (a tiny receive buffer, so the gateway feels it at once)."""

    def __init__(self, port: int, room: str) -> None:
        import os
        import socket
        import struct

        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(
            b"GET /ws?userId=slow HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += self.sock.recv(1)
        assert answer.startswith(b"HTTP/1.1 101"), answer
        text = json.dumps({"type": "subscribe", "room": room}).encode()
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(text))
        self.sock.sendall(struct.pack("!BB", 0x81, 0x80 | len(text)) + mask + masked)

    def close(self) -> None:
        self.sock.close()


@pytest_twisted.ensureDeferred
async def test_a_client_that_never_reads_does_not_slow_the_others(tmp_path, database_url):
    nodes = two_gateways(tmp_path, database_url)
    clients: list[ResumingClient] = []
    publisher = Publisher(nodes[:1], "busy", pad=64 * 1024)
    try:
        await start_all(nodes)
        slow = NeverReads(nodes[0].port, "busy")
        clients = [ResumingClient([node.port], "busy", f"u{i}").start()
                   for i, node in enumerate(nodes + nodes)]
        await eventually(lambda: all(c.subscribed for c in clients), 10, "clients subscribed")

        def slow_closed() -> int:
            return get_json(nodes[0].url + "/api/hub/status")["slowClosed"]["ws"]

        # One 64 KB event at a time, the next once every other client has the last:
        # the slow client's buffers fill up and it is closed as a slow consumer while
        # the others get each event. A hub that waited for it would stall here.
        after_close = 0
        for n in range(1, 500):
            publisher.step(n)
            await eventually(lambda: n in publisher.accepted, 10, f"event {n} accepted")
            await eventually(lambda: all(c.last >= publisher.accepted[n] for c in clients), 10,
                             f"event {n} delivered to the clients that read")
            after_close += slow_closed() > 0
            if after_close == 10:
                break
        else:
            raise AssertionError("the client that never reads was never closed")
        hub = get_json(nodes[0].url + "/api/hub/status")
        # Closed as a slow consumer (4008), counted where the operator looks.
        assert hub["connections"] == 2, "the slow client is still connected"
        assert hub["slowClosed"]["ws"] == 1
        assert get_json(nodes[1].url + "/api/hub/status")["slowClosed"]["ws"] == 0
        slow.close()
    finally:
        stop_all(nodes, publisher, *clients)

    for client in clients:
        assert client.offsets == sorted(publisher.accepted.values())


@pytest_twisted.ensureDeferred
async def test_database_connections_killed_server_side_delivery_goes_on(tmp_path, database_url, sql):
    nodes = two_gateways(tmp_path, database_url)
    clients: list[ResumingClient] = []
    publisher = Publisher(nodes, "steady", interval=0.05)
    try:
        await start_all(nodes)
        clients = [ResumingClient([node.port], "steady", f"u{i}").start()
                   for i, node in enumerate(nodes)]
        await eventually(lambda: all(c.subscribed for c in clients), 10, "clients subscribed")
        publisher.start()
        await eventually(lambda: len(publisher.accepted) >= 10, 10, "publishing")
        # Every backend of the gateways but their leadership connections: the pool's,
        # and the LISTEN connection's, wherever the doorbell is listened for.
        killed = sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                     " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                     " AND application_name NOT LIKE 'n2gateway:%%'")
        assert killed, "no gateway connection to terminate"
        before = publisher.n
        await eventually(lambda: publisher.n >= before + 40, 10, "publishing on")
        publisher.stop()
        await eventually(lambda: publisher.outstanding == 0, 10, "publishes answered")
        last = max(publisher.accepted.values())
        await eventually(lambda: all(c.last >= last for c in clients), 5, "clients caught up")
    finally:
        stop_all(nodes, publisher, *clients)
    assert publisher.refused == []
    for client in clients:
        # Still live on the same connection: nothing was closed, nothing missed.
        assert client.offsets == sorted(publisher.accepted.values())
        assert len(client.connected_to) == 1


@pytest_twisted.ensureDeferred
async def test_any_node_starts_changes_and_stops_the_session_the_owner_holds(tmp_path, database_url):
    fake = FakePancake(reactor)
    fake.listen()
    nodes = pancake_gateways(tmp_path, database_url, fake)
    try:
        await start_all(nodes)
        await eventually(lambda: owner_of(nodes, "pancake"), 10, "an owner")
        owner = owner_of(nodes, "pancake")
        other = next(n for n in nodes if n is not owner)

        answer = post_json(other.url + "/api/realtime/start", CREDENTIALS)
        assert answer["success"] and answer["credentialsSaved"]
        await fake.wait_joined(2)
        await eventually(lambda: get_json(owner.url + "/api/realtime/status")["connected"], 5,
                         "owner connected")
        # Either node's status names the owner; only the owner holds the session.
        for node in nodes:
            status = get_json(node.url + "/api/realtime/status")
            assert status["owner"] == node_id(owner)
            assert status["held"] is (node is owner)

        post_json(other.url + "/api/realtime/start", {**CREDENTIALS, "token": NEW_TOKEN})
        await eventually(lambda: fake.concurrent(NEW_TOKEN) == 1 and fake.concurrent(TOKEN) == 0,
                         5, "session replaced with the new token")

        assert post_json(other.url + "/api/realtime/stop")["success"]
        await eventually(lambda: not fake.open_sessions, 5, "session ended")
        await eventually(lambda: not get_json(owner.url + "/api/realtime/status")["hasToken"], 5,
                         "owner's status cleared")
        await sleep(1)
        assert not fake.open_sessions  # stopped, not reconnecting
    finally:
        stop_all(nodes)
        await fake.close()
    assert fake.peak_concurrent[TOKEN] == 1 and fake.peak_concurrent[NEW_TOKEN] == 1
    assert len(fake.sessions) == 2
    logs = "".join(node.log_text() for node in nodes)
    assert TOKEN not in logs


@pytest_twisted.ensureDeferred
async def test_chat_sync_runs_on_one_node_and_the_next_goes_on_from_its_cursor(
        tmp_path, database_url, sql):
    nodes = two_gateways(tmp_path, database_url, "--disable-plugin", "pancake,tpos")
    written: list[int] = []

    def write(count: int) -> None:
        for _ in range(count):
            written.append(sql("INSERT INTO chats (user_id, sender, message)"
                               " VALUES (1, 'student', 'hi') RETURNING chat_id")[0][0])

    def relayed() -> list[int]:
        return [chat_id for (chat_id,) in sql(
            "SELECT (payload ->> 'chat_id')::int FROM n2_journal"
            " WHERE event = 'message:new' ORDER BY seq")]

    try:
        await start_all(nodes)
        await eventually(lambda: owner_of(nodes, "chat"), 10, "a chat owner")
        owner = owner_of(nodes, "chat")
        other = next(n for n in nodes if n is not owner)
        await eventually(lambda: owner.health()[1]["plugins"]["chat"].get("cursor") is not None,
                         10, "chat tables ready")
        write(20)
        await eventually(lambda: len(relayed()) == 20, 10, "first messages relayed")
        assert owner.health()[1]["plugins"]["chat"]["held"] is True
        idle = other.health()[1]["plugins"]["chat"]
        assert (idle["held"], idle["relayed"]) == (False, 0)

        await owner.kill()
        write(20)  # while nobody runs the sync
        await eventually(lambda: owner_of([other], "chat"), 15, "takeover")
        write(20)
        await eventually(lambda: len(relayed()) >= 60, 10, "every message relayed")
        await sleep(0.5)
    finally:
        stop_all(nodes)
    assert relayed() == written  # each once, in order, across the handover
