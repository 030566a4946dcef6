"""
Sources end to end with the official socket.io-client on the other side: a Pancake
event pushed by the fake upstream, and chat rows written by two independent backend
connections, each arriving in the right rooms under the right names.
"""

import json

import psycopg2
import pytest_twisted
import treq
from twisted.internet import reactor

from n2gateway.downstream.auth import issue_token
from tests.fakes.pancake import FakePancake
from tests.support.gateway import GatewayProcess
from tests.support.waiting import sleep
from tests.support.socketio_peer import SocketIoPeer

SECRET = "sources-secret-of-at-least-32-bytes"


async def peer_in(gateway: GatewayProcess, sub: str, rooms: list[str],
                  subscribe: list[str]) -> SocketIoPeer:
    peer = await SocketIoPeer.connected(gateway.url, {"token": issue_token(SECRET, sub, rooms)})
    for room in subscribe:
        assert await peer.emit("subscribe", room) == {"ok": True}
    return peer


async def events(peer: SocketIoPeer, count: int) -> list[tuple[str, object]]:
    return [((e := await peer.next("event", timeout=20))["event"], e["args"][0])
            for _ in range(count)]


@pytest_twisted.ensureDeferred
async def test_a_pancake_event_reaches_a_socketio_dashboard_in_its_page_room(
        tmp_path, database_url) -> None:
    fake = FakePancake(reactor)
    fake.listen()
    gateway = GatewayProcess(tmp_path, "--disable-plugin", "chat,tpos", "--jwt-secret", SECRET,
                             "--pancake-url", fake.url(), database_url=database_url).start()
    peer = None
    try:
        await gateway.wait_plugin("pancake")
        peer = await peer_in(gateway, "dash", ["pancake*"], ["pancake:page:101"])
        answer = await treq.post(gateway.url + "/api/realtime/start", json.dumps(
            {"token": "tok-sio", "userId": "42", "pageIds": ["101", "202"]}).encode())
        assert answer.code == 200, await answer.text()
        await fake.wait_joined(3).addTimeout(20, reactor)
        fake.push("pages:202", "pages:new_message",
                  {"message": {"page_id": "202", "message": "other page"}})
        fake.push("pages:101", "pages:new_message",
                  {"message": {"page_id": "101", "message": "Chào shop"}})
        assert await events(peer, 1) == [
            ("pages:new_message", {"message": {"page_id": "101", "message": "Chào shop"}})]
        await sleep(0.5)
        assert len(peer.events()) == 1  # page 202's event went to its own room only
    finally:
        if peer is not None:
            await peer.close()
        await gateway.terminate()
        await fake.close()


@pytest_twisted.ensureDeferred
async def test_chat_rows_from_two_backends_reach_socketio_clients(
        tmp_path, database_url, sql) -> None:
    gateway = GatewayProcess(tmp_path, "--disable-plugin", "pancake,tpos", "--jwt-secret", SECRET,
                             database_url=database_url).start()
    student = staff = None
    dashboard_backend = psycopg2.connect(database_url)
    dashboard_backend.autocommit = True
    try:
        await gateway.wait_plugin("chat", listening=True)
        student = await peer_in(gateway, "1", [], [])
        staff = await peer_in(gateway, "teacher-7", ["staff"], ["staff"])

        sql("INSERT INTO users (user_id, full_name, avatar_url) VALUES (1, 'Lan', NULL)")
        # The app's backend: a student writes.
        sql("INSERT INTO chats (user_id, sender, message) VALUES (1, 'student', 'Em chào thầy')")
        # The dashboard's backend, on its own connection: a teacher answers, then reads.
        with dashboard_backend.cursor() as cur:
            cur.execute("INSERT INTO chats (user_id, sender, message) VALUES (1, 'teacher', 'Chào em')")
            cur.execute("UPDATE chats SET read_by_teacher = TRUE WHERE sender = 'student'")

        got = await events(student, 3)
        assert [name for name, _ in got] == ["message:new", "message:new", "message:read"]
        first, second, read = (payload for _, payload in got)
        assert (first["message"], first["sender"], first["users"]) == (
            "Em chào thầy", "student", {"user_id": 1, "full_name": "Lan", "avatar_url": None})
        assert (second["message"], second["sender"]) == ("Chào em", "teacher")
        assert read == {"messageId": first["chat_id"], "read_by_student": False,
                        "read_by_teacher": True}

        # Staff sees the student's message and users:updated, never the teacher's reply.
        names = []
        while "message:new" not in names or names[-1] != "users:updated":
            name, payload = (await events(staff, 1))[0]
            names.append(name)
            if name == "message:new":
                assert payload["sender"] == "student"
        assert names.count("message:new") == 1
    finally:
        dashboard_backend.close()
        for peer in (student, staff):
            if peer is not None:
                await peer.close()
        await gateway.terminate()
