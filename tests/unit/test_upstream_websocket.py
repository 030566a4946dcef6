"""URL and watchdog helpers every upstream protocol shares."""

from twisted.internet.task import Clock

from n2gateway.upstream.watchdog import InactivityWatchdog
from n2gateway.upstream.websocket import with_query


def test_with_query_replaces_earlier_values_and_keeps_the_rest() -> None:
    url = with_query("wss://h.test/socket.io/?room=old&x=1&EIO=3", {"room": "a b&c", "EIO": "4"})
    assert url == "wss://h.test/socket.io/?x=1&room=a+b%26c&EIO=4"


def test_retime_counts_the_new_timeout_from_now() -> None:
    clock, fired = Clock(), []
    watchdog = InactivityWatchdog(clock, 20, lambda: fired.append(clock.seconds()))
    watchdog.touch()
    clock.advance(15)
    watchdog.retime(45)
    clock.advance(44.9)
    watchdog.touch()
    clock.advance(45)
    assert fired == [104.9]
    assert clock.getDelayedCalls() == []
