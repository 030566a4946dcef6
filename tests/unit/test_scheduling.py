"""The scheduling toolkit on a fake clock: `Periodic` runs with its service and leaves
no timer behind; `Coalescer` runs once more for any number of requests made during a
run, survives errors, waits out retries and stops cleanly."""

from __future__ import annotations

from twisted.internet import defer, task
from twisted.logger import capturedLogs, formatEvent

from n2gateway.scheduling import Coalescer, Periodic


class Work:
    """Runs that end when the test says so; each may return a retry delay."""

    def __init__(self) -> None:
        self.runs = 0
        self.in_flight: list[defer.Deferred] = []

    async def __call__(self) -> float | None:
        self.runs += 1
        d: defer.Deferred = defer.Deferred()
        self.in_flight.append(d)
        return await d

    def finish(self, result: float | None = None) -> None:
        self.in_flight.pop(0).callback(result)

    def fail(self) -> None:
        self.in_flight.pop(0).errback(RuntimeError("the work's own bug"))


def syncing() -> tuple[task.Clock, Work, Coalescer]:
    clock, work = task.Clock(), Work()
    return clock, work, Coalescer(work, clock, what="syncing")


def test_periodic_calls_every_interval_while_running_and_leaves_no_timer() -> None:
    clock, calls = task.Clock(), []
    loop = Periodic(5.0, lambda: calls.append(clock.seconds()), clock, what="a check")
    loop.startService()
    assert calls == []  # the first call is one interval after start
    clock.advance(5)
    clock.advance(5)
    assert calls == [5.0, 10.0]
    loop.stopService()
    assert clock.getDelayedCalls() == []
    clock.advance(20)
    assert calls == [5.0, 10.0]
    loop.startService()  # a service started again runs again
    clock.advance(5)
    assert calls == [5.0, 10.0, 35.0]
    loop.stopService()
    assert clock.getDelayedCalls() == []


def test_periodic_with_now_calls_at_start_and_an_error_does_not_end_it() -> None:
    clock, calls = task.Clock(), []

    async def work() -> None:
        calls.append(clock.seconds())
        raise RuntimeError("one bad tick")

    loop = Periodic(1.0, work, clock, what="a flaky check", now=True)
    with capturedLogs() as logs:
        loop.startService()
        clock.advance(1)
        clock.advance(1)
    assert calls == [0.0, 1.0, 2.0]
    assert ["a flaky check failed"] * 3 == [formatEvent(e) for e in logs]
    loop.stopService()
    assert clock.getDelayedCalls() == []


def test_periodic_stop_does_not_wait_for_a_call_under_way() -> None:
    clock, work = task.Clock(), Work()
    loop = Periodic(1.0, work, clock, what="a slow check")
    loop.startService()
    clock.advance(1)
    assert work.runs == 1
    assert loop.stopService() is None
    work.finish()
    clock.advance(5)
    assert work.runs == 1 and clock.getDelayedCalls() == []


def test_requests_during_a_run_give_exactly_one_more_run() -> None:
    work = Work()
    runs = Coalescer(work, what="reading")
    runs.request()
    assert work.runs == 1  # at once when idle
    runs.request()
    runs.request()
    runs.request()
    assert work.runs == 1
    work.finish()
    assert work.runs == 2  # straight after, one for all three
    work.finish()
    assert work.runs == 2 and work.in_flight == []
    runs.request()
    assert work.runs == 3


def test_a_failed_run_is_logged_and_a_request_made_during_it_still_runs() -> None:
    work = Work()
    runs = Coalescer(work, what="reading")
    with capturedLogs() as logs:
        runs.request()
        runs.request()
        work.fail()
    assert [formatEvent(e) for e in logs] == ["reading failed"]
    assert work.runs == 2
    work.finish()
    runs.request()
    assert work.runs == 3


def test_delayed_requests_share_one_run_and_a_sooner_one_moves_it_up() -> None:
    clock, work, runs = syncing()
    runs.request(10)
    runs.request(0)
    runs.request(0)
    assert work.runs == 0
    clock.advance(0)
    assert work.runs == 1
    work.finish()
    clock.advance(100)
    assert work.runs == 1 and clock.getDelayedCalls() == []


def test_a_returned_delay_holds_the_next_run_back_whatever_was_requested() -> None:
    clock, work, runs = syncing()
    runs.request()
    runs.request()  # during the run
    work.finish(3.0)  # failed: retry in 3 s
    assert work.runs == 1
    clock.advance(2.9)
    assert work.runs == 1
    clock.advance(0.1)
    assert work.runs == 2
    work.finish()
    assert clock.getDelayedCalls() == []


def test_a_delayed_request_during_a_run_waits_after_it() -> None:
    clock, work, runs = syncing()
    runs.request()
    runs.request(5)
    clock.advance(2)
    work.finish()
    assert work.runs == 1
    clock.advance(3)
    assert work.runs == 2


def test_stop_drops_waiting_runs_waits_for_the_one_under_way_and_start_resumes() -> None:
    clock, work, runs = syncing()
    runs.request()
    runs.request()
    stopped = runs.stop()
    assert not stopped.called
    runs.request(1)
    work.finish()
    assert stopped.called and work.runs == 1
    clock.advance(10)
    assert work.runs == 1 and clock.getDelayedCalls() == []
    assert runs.stop().called  # nothing under way
    runs.start()
    runs.request()
    assert work.runs == 2


def test_stop_cancels_a_retry_waiting_on_the_clock() -> None:
    clock, work, runs = syncing()
    runs.request()
    work.finish(10.0)
    assert len(clock.getDelayedCalls()) == 1
    assert runs.stop().called
    assert clock.getDelayedCalls() == []
