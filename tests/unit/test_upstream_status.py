from n2gateway.upstream.status import UpstreamStatus


class WallClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_fresh_status() -> None:
    status = UpstreamStatus(WallClock())
    assert status.as_dict() == {
        "connected": False,
        "since": "2023-11-14T22:13:20+00:00",
        "reconnectAttempts": 0,
        "lastError": None,
        "needsLogin": False,
    }


def test_session_resets_attempts_and_moves_since() -> None:
    clock = WallClock()
    status = UpstreamStatus(clock)
    assert status.count_attempt() == 1
    assert status.count_attempt() == 2
    clock.now += 60
    status.session_established()
    assert status.as_dict()["connected"] is True
    assert status.as_dict()["reconnectAttempts"] == 0
    assert status.as_dict()["since"] == "2023-11-14T22:14:20+00:00"


def test_disconnect_keeps_the_last_error() -> None:
    clock = WallClock()
    status = UpstreamStatus(clock)
    status.session_established()
    clock.now += 5
    status.disconnected("ConnectionLost")
    assert status.as_dict()["connected"] is False
    assert status.as_dict()["lastError"] == "ConnectionLost"
    assert status.as_dict()["since"] == "2023-11-14T22:13:25+00:00"
    status.disconnected()
    assert status.last_error == "ConnectionLost"


def test_login_needed() -> None:
    status = UpstreamStatus(WallClock())
    status.session_established()
    status.login_needed("join refused: unauthorized")
    assert status.as_dict() | {"since": None} == {
        "connected": False,
        "since": None,
        "reconnectAttempts": 0,
        "lastError": "join refused: unauthorized",
        "needsLogin": True,
    }
