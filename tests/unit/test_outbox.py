"""The per-connection outbox: passes frames straight through while the socket keeps
up, holds them while it is paused, and closes a consumer that falls too far behind."""

from __future__ import annotations

from types import SimpleNamespace

from twisted.internet.interfaces import IPushProducer
from twisted.internet.testing import StringTransport

from n2gateway.downstream.close_codes import CLOSE_SLOW_CONSUMER
from n2gateway.downstream.outbox import Outbox


def frame(size: int = 10, tag: int = 0):
    return SimpleNamespace(payloadHybi=b"x" * size, tag=tag)


class Recorder:
    def __init__(self, limit: int = 100) -> None:
        self.sent: list = []
        self.writes: list[int] = []  # frames per write
        self.closes: list[tuple[int, str]] = []
        self.outbox = Outbox(self.write, lambda code, reason: self.closes.append((code, reason)),
                             limit=limit)

    def write(self, frames) -> None:
        self.writes.append(len(frames))
        self.sent.extend(frames)


def test_frames_go_straight_through_while_the_socket_keeps_up():
    r = Recorder()
    frames = [frame(tag=i) for i in range(50)]  # far more than the limit, all sent
    for f in frames:
        r.outbox.send_prepared(f)
    assert r.sent == frames
    assert r.closes == []


def test_frames_wait_while_paused_and_go_out_in_order_on_resume():
    r = Recorder()
    r.outbox.pauseProducing()
    frames = [frame(tag=i) for i in range(5)]
    for f in frames:
        r.outbox.send_prepared(f)
    assert r.sent == []
    r.outbox.resumeProducing()
    assert r.sent == frames
    r.outbox.send_prepared(late := frame(tag=99))
    assert r.sent[-1] is late


def test_a_batch_goes_out_in_one_write_or_waits_whole_and_counts_against_the_limit():
    r = Recorder(limit=100)
    first = [frame(tag=i) for i in range(3)]
    r.outbox.send_batch(first)
    assert (r.sent, r.writes) == (first, [3])
    r.outbox.pauseProducing()
    r.outbox.send_batch([frame(40, tag=3), frame(40, tag=4)])
    assert r.sent == first and r.closes == []
    r.outbox.send_batch([frame(40, tag=5)])  # 120 bytes waiting: over the limit
    assert [code for code, _ in r.closes] == [CLOSE_SLOW_CONSUMER]


def test_a_pause_during_the_drain_stops_it_and_keeps_the_rest():
    r = Recorder()
    r.outbox.pauseProducing()
    frames = [frame(tag=i) for i in range(4)]
    for f in frames:
        r.outbox.send_prepared(f)

    def send_then_pause(sent):
        r.sent.extend(sent)
        if len(r.sent) == 2:
            r.outbox.pauseProducing()  # the socket filled up again

    r.outbox._send = send_then_pause
    r.outbox.resumeProducing()
    assert r.sent == frames[:2]
    r.outbox.resumeProducing()
    assert r.sent == frames


def test_past_the_limit_the_consumer_is_closed_once_with_4008_and_its_backlog_dropped():
    r = Recorder(limit=100)
    r.outbox.pauseProducing()
    for _ in range(10):
        r.outbox.send_prepared(frame(10))
    assert r.closes == []  # exactly at the limit is still fine
    r.outbox.send_prepared(frame(10))
    assert len(r.closes) == 1
    code, reason = r.closes[0]
    assert code == CLOSE_SLOW_CONSUMER
    assert "slow consumer" in reason and "offset" in reason
    for _ in range(10):
        r.outbox.send_prepared(frame(10))
    r.outbox.close_slow()
    r.outbox.resumeProducing()
    assert len(r.closes) == 1
    assert r.sent == []
    assert r.outbox._waiting_bytes == 0 and not r.outbox._waiting


def test_after_the_transport_stops_it_nothing_is_sent_or_kept():
    r = Recorder()
    r.outbox.pauseProducing()
    r.outbox.send_prepared(frame())
    r.outbox.stopProducing()
    r.outbox.send_prepared(frame())
    r.outbox.resumeProducing()
    assert r.sent == [] and r.closes == []
    assert not r.outbox._waiting


def test_it_registers_as_the_transports_streaming_producer():
    r = Recorder()
    transport = StringTransport()
    r.outbox.attach(transport)
    assert transport.producer is r.outbox
    assert transport.streaming
    assert IPushProducer.providedBy(r.outbox)


def test_writable_fires_at_once_when_flowing_and_after_the_backlog_drains_when_paused():
    r = Recorder()
    assert r.outbox.writable().called
    r.outbox.pauseProducing()
    r.outbox.send_prepared(frame())
    waiting = r.outbox.writable()
    assert not waiting.called
    r.outbox.resumeProducing()
    assert waiting.called and len(r.sent) == 1


def test_writable_fires_when_the_outbox_closes_so_no_replay_waits_forever():
    r = Recorder()
    r.outbox.pauseProducing()
    waiting = r.outbox.writable()
    r.outbox.stopProducing()
    assert waiting.called
    assert r.outbox.writable().called


def test_bytes_written_around_the_queue_while_paused_count_against_the_limit():
    r = Recorder(limit=100)
    r.outbox.wrote(500)  # flowing: the socket takes them, nothing waits
    r.outbox.pauseProducing()
    r.outbox.send_prepared(frame(40))
    r.outbox.wrote(60)  # pongs waiting in the transport's buffer
    assert r.closes == []
    r.outbox.wrote(1)
    assert [code for code, _ in r.closes] == [CLOSE_SLOW_CONSUMER]
    r.outbox.wrote(1000)  # the close frame itself: closed once
    assert len(r.closes) == 1


def test_a_drained_transport_forgets_what_waited_in_its_buffer():
    r = Recorder(limit=100)
    r.outbox.pauseProducing()
    r.outbox.wrote(90)
    r.outbox.resumeProducing()  # Twisted resumes once its buffer is empty
    r.outbox.pauseProducing()
    r.outbox.wrote(90)
    assert r.closes == []
