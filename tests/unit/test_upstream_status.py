from n2gateway_plugins.pancake.session import PancakeCredentials
from n2gateway.upstream.status import WITHHELD, UpstreamStatus, secrets_of, withhold_secrets


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


def test_a_new_session_clears_the_last_error() -> None:
    status = UpstreamStatus(WallClock())
    status.disconnected("ConnectionRefusedError")
    status.session_established()
    assert status.as_dict()["lastError"] is None


SECRETS = ("short-token-0123456789", "sid=cookie-abcdefghijkl")


def test_reasons_quoting_a_secret_are_withheld() -> None:
    status = UpstreamStatus(WallClock(), secrets=SECRETS)
    for record in (status.error, status.disconnected, status.login_needed,
                   lambda why: status.channel("pages:1", False, why)):
        for quoted in ("short-token-0123456789", "short-token", "cookie-abcdef",
                       "refused: short-token-0123456789 (expired)"):
            record(f"join refused: {quoted}")
            shown = repr(status.as_dict()) + repr(status.channels["pages:1"].as_dict()
                                                  if status.channels else "")
            assert "short-token" not in shown and "cookie-abc" not in shown, quoted
    status.error("join refused: unauthorized")
    assert status.last_error == "join refused: unauthorized"


def test_a_secret_in_words_of_its_own_or_inside_one_is_withheld() -> None:
    assert withhold_secrets("refused short-token-0123456789xyz", SECRETS) == (
        f"refused {WITHHELD}xyz")
    assert withhold_secrets("refused: 'short-tok' (cookie-abcdefghijkl)", SECRETS) == (
        f"refused: '{WITHHELD}' ({WITHHELD})")
    assert withhold_secrets("join refused: short", SECRETS) == "join refused: short"
    assert withhold_secrets("join refused: unauthorized", ()) == "join refused: unauthorized"


def test_secrets_of_credentials_are_their_hidden_fields() -> None:
    credentials = PancakeCredentials("tok-0123456789abcdef", "42", ("1",), "sid=0123456789abcdef")
    assert secrets_of(credentials) == ("tok-0123456789abcdef", "sid=0123456789abcdef")
    assert secrets_of(PancakeCredentials("tok-0123456789abcdef", "42", ("1",))) == (
        "tok-0123456789abcdef",)
