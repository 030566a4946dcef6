"""
One Pancake channel per page, on a fake clock: a refused page fails alone and
is retried slowly while the others relay; a refused ``users:`` join, or every
page refused for the token, means a new login; odd join replies fail their
channel only; the heartbeat keeps its beat under traffic.
"""

from typing import Any

from twisted.logger import capturedLogs, formatEvent

from tests.unit.test_phoenix_protocol import TOKEN, Session

EXPIRED = "join refused: error 122"
OK = {"status": "ok", "response": {}}
UNAUTHORIZED = {"status": "error", "response": {"reason": "unauthorized"}}


def page(session: Session, page_id: str) -> dict[str, Any]:
    channel = session.status.channels.get(f"pages:{page_id}")
    return {"joined": channel.joined, "error": channel.error} if channel else {}


def joins_of(session: Session, topic: str) -> list[list[Any]]:
    return [f for f in session.sent("phx_join") if f[2] == topic]


def wait(session: Session, seconds: float) -> None:
    """Let time pass in steps short enough for heartbeats to be answered."""
    while seconds > 0:
        step = min(seconds, 10.0)
        session.advance(step)
        seconds -= step


def answer_joins(session: Session, replies: dict[str, Any]) -> None:
    """With the fake silent, answer the last join of each topic with its reply."""
    server = session.server
    for topic, reply in replies.items():
        join = joins_of(session, topic)[-1]
        server.send_frame(join[0], join[1], topic, "phx_reply", reply)
    session.network.flush()


def silent_session() -> Session:
    """A started session whose joins wait for :func:`answer_joins`."""
    session = Session()
    session.fake.silent = True
    session.start()
    return session


def assert_login_needed_and_no_retry(session: Session) -> None:
    wait(session, 3600)
    assert session.status.needs_login
    assert session.status.last_error == "join refused: unauthorized"
    assert session.fake.open_sessions == [] and session.network.attempts == 1
    session.stop()


def test_an_expired_page_fails_alone_while_the_others_relay() -> None:
    session = Session(page_ids=("101", "102", "103"))
    session.fake.expire_page("102")
    session.start()
    assert session.fake.joined_topics == {"users:42", "pages:101", "pages:103"}
    assert session.status.as_dict() | {"since": None} == {
        "connected": True, "since": None, "reconnectAttempts": 0, "lastError": None,
        "needsLogin": False}
    assert page(session, "102") == {"joined": False, "error": EXPIRED}
    assert page(session, "101") == page(session, "103") == {"joined": True, "error": None}
    session.fake.push("pages:103", "pages:new_message", {"message": {"page_id": "103"}})
    session.network.flush()
    assert session.events == [("pages:103", "pages:new_message", {"message": {"page_id": "103"}})]
    session.stop()


def test_a_refused_page_is_retried_after_minutes_then_joined() -> None:
    session = Session()
    session.fake.expire_page("102")
    session.start()
    assert len(joins_of(session, "pages:102")) == 1
    wait(session, 299)
    assert len(joins_of(session, "pages:102")) == 1
    wait(session, 1)
    assert len(joins_of(session, "pages:102")) == 2  # still expired: next in 10 min
    wait(session, 599)
    assert len(joins_of(session, "pages:102")) == 2
    session.fake.renew_page("102")
    wait(session, 1)
    assert len(joins_of(session, "pages:102")) == 3
    assert page(session, "102") == {"joined": True, "error": None}
    assert session.fake.joined_topics == {"users:42", "pages:101", "pages:102"}
    assert len(session.fake.sessions) == 1  # the others were never interrupted
    wait(session, 3600)
    assert len(joins_of(session, "pages:102")) == 3
    session.stop()


def test_a_refused_users_join_means_a_new_login() -> None:
    session = silent_session()
    answer_joins(session, {"pages:101": OK, "pages:102": OK, "users:42": UNAUTHORIZED})
    assert_login_needed_and_no_retry(session)


def test_every_page_refused_for_the_token_means_a_new_login() -> None:
    session = silent_session()
    answer_joins(session, {"users:42": OK, "pages:101": UNAUTHORIZED})
    assert not session.status.needs_login  # one page of two: that page's trouble so far
    answer_joins(session, {"pages:102": UNAUTHORIZED})
    assert_login_needed_and_no_retry(session)


def test_one_page_refused_for_the_token_among_joined_ones_is_retried_slowly() -> None:
    session = silent_session()
    answer_joins(session, {"users:42": OK, "pages:101": UNAUTHORIZED, "pages:102": OK})
    assert not session.status.needs_login and session.status.connected
    assert page(session, "101") == {"joined": False, "error": "join refused: unauthorized"}
    session.fake.silent = False
    wait(session, 300)
    assert page(session, "101") == {"joined": True, "error": None}
    session.stop()


ODD_REPLIES = [
    {"response": {}},                                   # no status
    "no status at all",
    {"status": "error", "response": "nope"},            # an error shape nobody knows
    {"status": "error", "response": {"code": "x"}},
    {"status": "maybe", "response": {}},
]


def test_odd_join_replies_fail_that_page_only() -> None:
    for reply in ODD_REPLIES:
        with capturedLogs() as events:
            session = silent_session()
            answer_joins(session, {"users:42": OK, "pages:101": OK, "pages:102": reply})
        assert [e for e in events if "log_failure" in e] == [], reply
        assert session.status.connected and not session.status.needs_login, reply
        assert page(session, "102") == {"joined": False, "error": "unrecognised join reply"}
        assert page(session, "101") == {"joined": True, "error": None}
        session.fake.silent = False
        wait(session, 300)  # retried on the slow backoff, like a refused page
        assert page(session, "102") == {"joined": True, "error": None}, reply
        session.stop()


def test_odd_users_join_replies_are_rejoined_not_a_new_login() -> None:
    for reply in ODD_REPLIES:
        session = silent_session()
        answer_joins(session, {"users:42": reply, "pages:101": OK, "pages:102": OK})
        assert not session.status.needs_login and not session.status.connected, reply
        assert session.status.last_error == "unrecognised join reply"
        session.fake.silent = False
        session.advance(2)  # the ordinary rejoin backoff
        assert session.status.connected, reply
        session.stop()


def test_heartbeat_every_30_seconds_under_constant_traffic() -> None:
    session = Session()
    session.start()
    for second in range(1, 121):
        session.fake.push("pages:101", "pages:new_message", {"n": second})
        wait(session, 1)
    assert len(session.events) == 120
    beats = session.sent("heartbeat")
    assert len(beats) == 4  # at 30, 60, 90 and 120 s: traffic does not delay them
    session.stop()


def test_no_secret_in_the_logs_of_refused_pages() -> None:
    session = Session()
    session.fake.expire_page("101")
    with capturedLogs() as events:
        session.start()
        wait(session, 900)
    text = "\n".join(formatEvent(e) for e in events)
    assert "pages:101" in text and TOKEN not in text and "COOKIE" not in text
    session.stop()
