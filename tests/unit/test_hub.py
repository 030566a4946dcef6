"""The hub and its sessions on a fake clock and an in-memory journal: fan-out,
shared frames, polling, replay-then-live and the seam between them."""

from __future__ import annotations

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from n2gateway.downstream.auth import Identity
from n2gateway.hub import Hub
from n2gateway.journal import READ_BATCH, Event
from n2gateway.session import MAX_HELD, Refused
from tests.fakes.journal import FakeJournal


class FakeWire:
    def __init__(self, names_room: bool = True, name: str = "fake") -> None:
        self.names_room = names_room
        self.protocol_name = name
        self.prepared: list[tuple[int, str]] = []

    def prepare(self, event, room):
        self.prepared.append((event.offset, room))
        return {"offset": event.offset, "room": room if self.names_room else None}


class FakeChannel:
    def __init__(self) -> None:
        self.frames: list[dict] = []
        self.writes: list[int] = []  # frames per write
        self.slow_closes = 0
        self.full: defer.Deferred | None = None

    def writable(self) -> defer.Deferred:
        return self.full if self.full is not None else defer.succeed(None)

    def send_prepared(self, frame) -> None:
        self.send_batch([frame])

    def send_batch(self, frames) -> None:
        self.writes.append(len(frames))
        self.frames.extend(frames)

    def close_slow(self) -> None:
        self.slow_closes += 1

    @property
    def offsets(self) -> list[int]:
        return [f["offset"] for f in self.frames]


class Harness:
    def __init__(self, poll_interval: float = 1.0) -> None:
        self.clock = Clock()
        self.journal = FakeJournal()
        self.hub = Hub(self.journal, self.clock, poll_interval=poll_interval)
        self.wire = FakeWire()

    def start(self) -> "Harness":
        self.hub.startService()
        assert self.hub.ready
        return self

    def session(self, sub: str = "u1", rooms: tuple[str, ...] = (), development: bool = True,
                wire: FakeWire | None = None):
        channel = FakeChannel()
        session = self.hub.connect(Identity(sub, rooms, development), wire or self.wire, channel)
        return session, channel

    def publish(self, *rooms: str, name: str = "e"):
        """An append by this gateway: the journal tells the hub at once."""
        event = self.journal.add(list(rooms), name)
        self.hub.wake()
        return event

    def subscribe(self, session, room: str, offset: int | None = None, gaps: list | None = None):
        on_gap = (lambda: gaps.append(room)) if gaps is not None else (lambda: None)
        return defer.Deferred.fromCoroutine(session.subscribe(room, offset, on_gap))

    def stop(self) -> None:
        self.hub.stopService()
        assert self.clock.getDelayedCalls() == []


@pytest.fixture
def h():
    harness = Harness().start()
    yield harness
    harness.stop()


# -- fan-out -----------------------------------------------------------------------------

def test_an_event_reaches_every_session_in_its_rooms_and_no_one_else(h):
    a, ca = h.session("a")
    b, cb = h.session("b")
    c, cc = h.session("c")
    a.join("r1")
    b.join("r1")
    c.join("r2")
    e = h.publish("r1")
    assert ca.offsets == cb.offsets == [e.offset]
    assert cc.frames == []
    assert h.hub.delivered == 2


def test_a_frame_is_prepared_once_per_room_and_the_same_object_goes_to_every_receiver(h):
    sessions = [h.session(str(i)) for i in range(5)]
    for session, _ in sessions[:3]:
        session.join("r1")
    for session, _ in sessions[3:]:
        session.join("r2")
    e = h.publish("r1", "r2")
    assert sorted(h.wire.prepared) == [(e.offset, "r1"), (e.offset, "r2")]
    r1_frames = [channel.frames[0] for _, channel in sessions[:3]]
    assert all(frame is r1_frames[0] for frame in r1_frames)
    assert r1_frames[0]["room"] == "r1"
    assert all(channel.frames[0]["room"] == "r2" for _, channel in sessions[3:])


def test_a_wire_that_does_not_name_the_room_prepares_once_per_event(h):
    wire = FakeWire(names_room=False)
    sessions = [h.session(str(i), wire=wire) for i in range(4)]
    for i, (session, _) in enumerate(sessions):
        session.join("r1" if i % 2 else "r2")
    h.publish("r1", "r2")
    assert len(wire.prepared) == 1
    assert len({id(channel.frames[0]) for _, channel in sessions}) == 1


def test_two_wire_formats_each_prepare_their_own_frame(h):
    other = FakeWire(name="other")
    a, ca = h.session("a")
    b, cb = h.session("b", wire=other)
    a.join("r")
    b.join("r")
    h.publish("r")
    assert len(h.wire.prepared) == len(other.prepared) == 1
    assert ca.frames[0] is not cb.frames[0]


@pytest.mark.parametrize("events", [1, 3], ids=["one event", "events read together"])
def test_receivers_are_written_to_in_the_order_they_joined_the_room(h, events):
    # Not the order the sessions were made in, nor the order of their hashes.
    sessions = [h.session(str(i)) for i in range(40)]
    joined = list(reversed(sessions[::2])) + sessions[1::2]
    written = []
    for session, channel in joined:
        session.join("r")
        channel.send_batch = lambda frames, who=session: written.append(who)
    h.hub.committed([h.journal.add(["r"], "e") for _ in range(events)])
    h.clock.advance(0)
    assert written == [session for session, _ in joined]  # one write each


def test_a_session_in_several_rooms_of_one_event_receives_it_once(h):
    s, c = h.session()
    s.join("r1")
    s.join("r2")
    e = h.publish("r1", "r2", "r3")
    assert c.offsets == [e.offset]


def test_a_closed_session_receives_nothing_and_leaves_no_empty_room_behind(h):
    s, c = h.session()
    s.join("r1")
    s.close()
    h.publish("r1")
    assert c.frames == []
    assert h.hub.rooms == {}
    assert h.hub.sessions == set()


def test_a_burst_longer_than_one_read_is_delivered_whole_and_in_order(h):
    s, c = h.session()
    s.join("r")
    for _ in range(READ_BATCH * 2 + 5):
        h.journal.add(["r"])
    h.hub.wake()
    assert c.offsets == list(range(1, READ_BATCH * 2 + 6))


def test_events_read_together_reach_each_connection_in_one_write_in_order(h):
    (a, ca), (b, cb) = h.session("a"), h.session("b")
    for session, room in ((a, "r1"), (a, "r2"), (b, "r2")):
        session.join(room)
    for room in ("r1", "r2", "r1"):
        h.journal.add([room])  # appended meanwhile: one read finds all three
    h.hub.wake()
    assert (ca.offsets, ca.writes) == ([1, 2, 3], [3])
    assert (cb.offsets, cb.writes) == ([2], [1])
    h.publish("r2")
    assert (ca.writes, cb.writes) == ([3, 1], [1, 1])


def test_a_burst_of_large_events_is_spread_over_reactor_turns_so_sockets_drain_between(h):
    s, c = h.session()
    s.join("r")
    for _ in range(40):
        h.journal.events.append(Event(len(h.journal.events) + 1, ("r",), "e",
                                      '"' + "x" * 50_000 + '"'))
    h.hub.wake()
    assert 0 < len(c.frames) < 10
    while len(c.frames) < 40:
        before = len(c.frames)
        h.clock.advance(0)
        assert len(c.frames) > before
    assert c.offsets == list(range(1, 41))


# -- following the journal ---------------------------------------------------------------

def test_events_appended_elsewhere_arrive_by_the_poll_within_one_interval():
    h = Harness(poll_interval=0.5).start()
    s, c = h.session()
    s.join("r")
    h.journal.add(["r"])  # another gateway: no wake-up here
    assert c.frames == []
    h.clock.advance(0.5)
    assert c.offsets == [1]
    h.stop()


def test_the_hub_starts_at_the_journal_head_and_does_not_redeliver_history():
    h = Harness()
    for _ in range(3):
        h.journal.add(["r"])
    h.start()
    assert h.hub.head == 3
    s, c = h.session()
    s.join("r")
    e = h.publish("r")
    assert c.offsets == [e.offset]
    h.stop()


def test_the_hub_waits_for_the_journal_then_follows_it():
    h = Harness(poll_interval=1.0)
    h.journal.down = True
    h.hub.startService()
    assert not h.hub.ready
    h.clock.advance(1.0)
    assert not h.hub.ready
    h.journal.down = False
    h.clock.advance(1.0)
    assert h.hub.ready
    h.stop()


def test_a_failed_read_loses_nothing_the_next_poll_delivers_it(h):
    s, c = h.session()
    s.join("r")
    h.journal.down = True
    h.publish("r")
    assert c.frames == []
    h.journal.down = False
    h.clock.advance(h.hub.poll_interval)
    assert c.offsets == [1]


def test_wake_ups_during_a_read_are_coalesced_into_one_more_read(h):
    s, c = h.session()
    s.join("r")
    reads = []
    original = h.journal.read_after

    async def slow_read(offset, limit=READ_BATCH):
        reads.append(offset)
        gate = defer.Deferred()
        gates.append(gate)
        await gate
        return await original(offset, limit)

    gates: list[defer.Deferred] = []
    h.journal.read_after = slow_read
    h.publish("r")
    h.publish("r")
    h.publish("r")
    assert len(gates) == 1
    gates.pop().callback(None)
    assert len(gates) == 1  # one more read for the wake-ups that came meanwhile
    gates.pop().callback(None)
    assert gates == []
    assert c.offsets == [1, 2, 3]


# -- subscribe, replay and the seam -------------------------------------------------------

def test_subscribe_without_offset_goes_live_from_now(h):
    h.journal.add(["r"])
    h.hub.wake()
    s, c = h.session()
    done = h.subscribe(s, "r")
    assert done.called
    e = h.publish("r")
    assert c.offsets == [e.offset]


def test_subscribe_with_offset_replays_the_room_then_goes_live(h):
    for rooms in (["r"], ["x"], ["r"], ["r", "x"]):
        h.journal.add(rooms)
    h.hub.wake()
    s, c = h.session()
    done = h.subscribe(s, "r", offset=1)
    assert done.called
    assert c.offsets == [3, 4]
    assert [f["room"] for f in c.frames] == ["r", "r"]
    h.publish("r")
    assert c.offsets == [3, 4, 5]


def test_live_events_during_the_replay_follow_it_with_no_gap_duplicate_or_reordering(h):
    for _ in range(5):
        h.journal.add(["r"])
    h.hub.wake()
    h.journal.stall_replays = True
    s, c = h.session()
    done = h.subscribe(s, "r", offset=0)
    for _ in range(3):
        h.publish("r")  # live while the replay's page is still being read
    assert c.frames == []
    h.journal.release()
    assert done.called
    h.publish("r")
    assert c.offsets == list(range(1, 10))


def test_live_events_between_replay_pages_are_not_sent_early_or_twice(h):
    for _ in range(READ_BATCH + 10):
        h.journal.add(["r"])
    h.hub.wake()
    h.journal.stall_replays = True
    s, c = h.session()
    done = h.subscribe(s, "r", offset=0)
    h.journal.release()  # first page
    h.publish("r")
    h.publish("other")
    h.publish("r")
    h.journal.release()  # second page
    assert done.called
    total = READ_BATCH + 10
    assert c.offsets == list(range(1, total + 1)) + [total + 1, total + 3]


def test_an_offset_at_the_head_replays_nothing(h):
    h.journal.add(["r"])
    h.hub.wake()
    s, c = h.session()
    h.subscribe(s, "r", offset=1)
    assert c.frames == []
    assert h.journal.replay_calls == 0


def test_an_offset_ahead_of_this_hub_is_not_delivered_again_when_the_hub_catches_up(h):
    """A client that saw offsets 1-2 on another gateway, which this one has not read yet."""
    h.journal.add(["r"])
    h.journal.add(["r"])
    s, c = h.session()
    h.subscribe(s, "r", offset=2)
    h.publish("r")
    assert c.offsets == [3]


@pytest.mark.parametrize("offset, gap", [(2, True), (4, False), (5, False)])
def test_an_offset_older_than_retention_reports_a_gap_then_replays_what_is_kept(h, offset, gap):
    for _ in range(6):
        h.journal.add(["r"])
    h.journal.trim_through(4)
    h.hub.wake()
    s, c = h.session()
    gaps: list = []
    h.subscribe(s, "r", offset=offset, gaps=gaps)
    assert gaps == (["r"] if gap else [])
    assert c.offsets == list(range(max(offset, 4) + 1, 7))


def test_resubscribing_a_live_room_with_an_offset_sends_only_what_it_had_not_delivered(h):
    for _ in range(3):
        h.journal.add(["r"])
    h.hub.wake()
    s, c = h.session()
    s.join("r")  # live from 3
    h.publish("r")
    h.publish("r")
    assert c.offsets == [4, 5]
    h.subscribe(s, "r", offset=1)
    assert c.offsets == [4, 5, 2, 3]
    h.publish("r")
    assert c.offsets == [4, 5, 2, 3, 6]


def test_resubscribing_a_live_room_with_a_newer_offset_sends_nothing_again(h):
    s, c = h.session()
    s.join("r")
    h.publish("r")
    h.publish("r")
    h.subscribe(s, "r", offset=1)
    h.publish("r")
    assert c.offsets == [1, 2, 3]


def test_an_event_in_two_replayed_rooms_is_sent_once(h):
    h.journal.add(["a", "b"])
    h.journal.add(["a"])
    h.journal.add(["b"])
    h.hub.wake()
    s, c = h.session()
    h.subscribe(s, "a", offset=0)
    h.subscribe(s, "b", offset=0)
    assert c.offsets == [1, 2, 3]


def test_replaying_a_room_skips_what_a_live_room_already_delivered(h):
    s, c = h.session()
    s.join("a")
    h.publish("a", "b")
    h.publish("b")
    h.subscribe(s, "b", offset=0)
    assert c.offsets == [1, 2]


def test_concurrent_replays_of_rooms_sharing_events_deliver_each_event_once_in_either_order(h):
    for finish_first in ("a", "b"):
        h.journal.stall_replays = True
        s, c = h.session(sub=finish_first)
        base = h.hub.head
        h.journal.add(["a", "b"])
        h.hub.wake()
        da = h.subscribe(s, "a", offset=base)
        db = h.subscribe(s, "b", offset=base)
        first, second = h.journal.stalled
        h.journal.stalled.clear()
        h.publish("a", "b")  # live, held by both replays
        h.publish("b")
        h.journal.stall_replays = False
        (first if finish_first == "a" else second).callback(None)
        (second if finish_first == "a" else first).callback(None)
        assert da.called and db.called
        h.publish("a", "b")
        assert c.offsets == [base + 1, base + 2, base + 3, base + 4], finish_first
        s.close()


def test_a_replay_waits_while_the_connection_is_full_instead_of_overflowing_it(h):
    for _ in range(5):
        h.journal.add(["r"])
    h.hub.wake()
    s, c = h.session()
    c.full = defer.Deferred()
    done = h.subscribe(s, "r", offset=0)
    assert c.frames == [] and not done.called
    h.publish("r")  # live meanwhile: held
    full, c.full = c.full, None
    full.callback(None)
    assert done.called
    assert c.offsets == [1, 2, 3, 4, 5, 6]


def test_unsubscribing_during_a_replay_stops_it(h):
    for _ in range(READ_BATCH + 5):
        h.journal.add(["r"])
    h.hub.wake()
    h.journal.stall_replays = True
    s, c = h.session()
    done = h.subscribe(s, "r", offset=0)
    h.journal.release()
    assert len(c.frames) == READ_BATCH
    s.unsubscribe("r")
    h.journal.release()
    assert done.called
    assert len(c.frames) == READ_BATCH
    h.publish("r")
    assert len(c.frames) == READ_BATCH


def test_a_session_closed_during_its_replay_gets_nothing_more(h):
    h.journal.add(["r"])
    h.hub.wake()
    h.journal.stall_replays = True
    s, c = h.session()
    done = h.subscribe(s, "r", offset=0)
    s.close()
    h.journal.release()
    assert done.called
    assert c.frames == []
    assert h.hub.rooms == {}


def test_too_many_live_events_held_during_a_replay_close_the_session_as_slow(h):
    h.journal.add(["r"])
    h.hub.wake()
    h.journal.stall_replays = True
    s, c = h.session()
    h.subscribe(s, "r", offset=0)
    for _ in range(MAX_HELD):
        h.journal.add(["r"])
    h.hub.wake()
    assert c.slow_closes == 0
    h.publish("r")
    assert c.slow_closes == 1
    s.close()
    h.journal.release()


# -- authorization ------------------------------------------------------------------------

def test_a_room_outside_the_token_is_refused_and_not_joined(h):
    s, c = h.session("u1", rooms=("staff", "tpos:*"), development=False)
    for room in ("staff", "tpos:shop1", "user:u1"):
        assert h.subscribe(s, room).called
    for room in ("user:u2", "pancake", "staff2"):
        failure = []
        h.subscribe(s, room).addErrback(failure.append)
        assert failure and failure[0].check(Refused), room
        assert room not in s.subscriptions
    h.publish("user:u2", "pancake", "staff2")
    assert c.frames == []


def test_status_counts_connections_rooms_and_head(h):
    a, _ = h.session("a")
    b, _ = h.session("b")
    a.join("r")
    b.join("r")
    b.join("q")
    h.publish("r")
    status = h.hub.status()
    assert status["connections"] == 2
    assert status["rooms"] == 2
    assert status["head"] == "1"
    assert status["delivered"] == 2
    assert status["ready"] is True


def commit(h, *rooms: str) -> list[Event]:
    """Appends by this gateway, committed together: the journal hands them to the hub."""
    events = [h.journal.add([room]) for room in rooms]
    h.hub.committed(events)
    return events


def test_this_gateways_commit_goes_out_without_reading_it_back(h):
    session, channel = h.session(rooms=("r",))
    h.subscribe(session, "r")
    reads = h.journal.read_calls
    events = commit(h, "r", "r") + commit(h, "r")
    assert channel.offsets == [e.offset for e in events]
    assert h.journal.read_calls == reads
    assert h.hub.head == events[-1].offset


def test_a_commit_after_another_gateways_event_is_read_with_it_in_order(h):
    session, channel = h.session(rooms=("r",))
    h.subscribe(session, "r")
    other = h.journal.add(["r"])  # another gateway's, its doorbell not heard yet
    ours = commit(h, "r")
    assert channel.offsets == [other.offset, ours[0].offset]
    assert h.hub.head == ours[0].offset


def test_commits_and_doorbells_during_a_read_are_each_delivered_once_in_order(h):
    session, channel = h.session(rooms=("r",))
    h.subscribe(session, "r")
    h.journal.stall_reads = True
    first = h.publish("r")  # a read under way
    ours = commit(h, "r")  # committed while it runs
    h.journal.stall_reads = False
    h.journal.release()
    later = commit(h, "r")
    other = h.journal.add(["r"])  # another gateway's, after ours
    h.journal.stall_reads = True
    h.hub.wake()  # its doorbell, with a commit of ours waiting for the next run
    mine = commit(h, "r")
    h.journal.stall_reads = False
    h.journal.release()
    assert channel.offsets == [e.offset for e in (first, *ours, *later, other, *mine)]


def test_more_committed_than_a_page_while_a_read_runs_are_read_instead(h):
    session, channel = h.session(rooms=("r",))
    h.subscribe(session, "r")
    h.journal.stall_reads = True
    h.hub.wake()  # a read that sees none of them
    events = commit(h, *["r"] * (READ_BATCH // 2)) + commit(h, *["r"] * (READ_BATCH // 2 + 1))
    h.journal.stall_reads = False
    h.journal.release()
    assert channel.offsets == [e.offset for e in events]
    # Then two pages read: no more than a page was held in memory.
    assert h.journal.read_calls == 3
