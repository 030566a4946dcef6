"""Several gateways on this machine: broadcast throughput and failover time.

Broadcast: N gateway processes share one port (``reuseport:``) and one PostgreSQL;
``--clients`` ``/ws`` clients (spread over the processes by the kernel) join room
``all``; ``--events`` events are published through ``POST /api/publish``.
Deliveries per second = clients x events / (first publish -> last delivery).

Failover: two gateways run the Pancake plugin against the fake Pancake server (in
this process), one of them holding the session; the owner is SIGKILLed ``--kills`` times and the time from the kill to the
new owner's upstream session joining is recorded (then the killed one restarts).

    python -m bench.several [--gateways 1,2,4] [--clients 1000] [--events 200] [--kills 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import treq
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from twisted.internet import defer, reactor

from bench.support import reuseport_gateways
from n2gateway.db.embedded import import_pgserver
from tests.fakes.pancake import FakePancake
from tests.support.gateway import GatewayProcess, free_port
from tests.support.waiting import eventually


class Counting(WebSocketClientProtocol):
    def onOpen(self) -> None:
        self.sendMessage(b'{"type":"subscribe","room":"all"}')

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        bench = self.factory.bench
        if payload.startswith(b'{"type":"subscribed"'):
            bench.subscribed += 1
        elif payload.startswith(b'{"type":"load"'):
            bench.received += 1
            bench.last_at = time.monotonic()


class Broadcast:
    def __init__(self) -> None:
        self.subscribed = self.received = 0
        self.last_at = 0.0


async def broadcast(folder: Path, database_url: str, count: int, clients: int, events: int) -> float:

    port = free_port()
    nodes = reuseport_gateways(folder, count, database_url, port, "--poll-interval", "0.2")
    try:
        for node in nodes:
            node.start()
            await node.wait_healthy()
        bench = Broadcast()
        factory = WebSocketClientFactory(f"ws://127.0.0.1:{port}/ws?userId=bench")
        factory.protocol, factory.bench = Counting, bench
        for _ in range(clients):
            connectWS(factory)
        await eventually(lambda: bench.subscribed == clients, 60)
        started = time.monotonic()
        url = nodes[0].url + "/api/publish"
        await defer.gatherResults([
            treq.post(url, json={"rooms": ["all"], "event": "load", "payload": {"n": n}})
            for n in range(events)])
        await eventually(lambda: bench.received == clients * events, 120)
        return clients * events / (bench.last_at - started)
    finally:
        for node in nodes:
            node.ensure_stopped()


async def failover(folder: Path, database_url: str, kills: int) -> list[float]:
    fake = FakePancake(reactor)
    fake.listen()
    args = ("--disable-plugin", "chat,tpos", "--pancake-url", fake.url())
    nodes = [GatewayProcess(folder / name, "--node-id", name, *args, database_url=database_url)
             for name in ("fa", "fb") if (folder / name).mkdir(parents=True) is None]
    times = []
    try:
        for node in nodes:
            node.start()
        await nodes[0].wait_healthy()
        await treq.post(nodes[0].url + "/api/realtime/start", json={
            "token": "bench-token", "userId": "1", "pageIds": ["p1"]})
        await eventually(lambda: fake.join_count >= 2, 60)
        for _ in range(kills):
            owner = next(n for n in nodes if (n.health() or (0, {}))[1]
                         .get("node", {}).get("owns"))
            joins = fake.join_count
            killed = time.monotonic()
            await owner.kill()
            await eventually(lambda: fake.join_count >= joins + 2, 30)
            times.append(time.monotonic() - killed)
            owner.start()
            await owner.wait_healthy()
    finally:
        for node in nodes:
            node.ensure_stopped()
        await fake.close()
    return times


async def run(options) -> None:
    pgserver = import_pgserver()

    with tempfile.TemporaryDirectory(prefix="n2-bench-") as tmp:
        folder = Path(tmp)
        server = pgserver.get_server(folder / "pgdata", cleanup_mode="stop")
        try:
            for count in options.gateways:
                url = server.get_uri()
                rate = await broadcast(folder / f"b{count}", url, count, options.clients,
                                       options.events)
                print(f"broadcast, {count} gateway(s), {options.clients} clients, "
                      f"{options.events} events: {rate:,.0f} deliveries/s")
            if options.kills:
                (folder / "failover").mkdir()
                times = sorted(await failover(folder / "failover", server.get_uri(), options.kills))
                p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
                print(f"failover over {len(times)} kills: min {times[0]:.2f} s, median "
                      f"{statistics.median(times):.2f} s, p95 {p95:.2f} s, max {times[-1]:.2f} s")
        finally:
            server.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.several")
    parser.add_argument("--gateways", default="1,2,4",
                        type=lambda v: [int(x) for x in v.split(",")])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--kills", type=int, default=20)
    options = parser.parse_args(argv)
    failures = []

    def go() -> None:
        d = defer.Deferred.fromCoroutine(run(options))
        d.addErrback(failures.append)
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(go)
    reactor.run()
    if failures:
        sys.stderr.write(failures[0].getTraceback())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
