"""``python -m bench.floods``: the gateway's memory under WebSocket floods, on loopback.

- pings that are never read: connections send WebSocket pings as fast as the socket
  takes them and never read the pongs, on ``/ws`` and on ``/socket.io/`` before any
  CONNECT (no token needed);
- subscriptions: connections subscribe to far more rooms than ``--max-subscriptions``
  allows, reading the answers.

For each, the gateway's RSS before, its peak while the flood runs (sampled every
0.1 s) and after; the growth must stay within ``BOUND_MIB``. Appends a section to
``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path

from bench.support import Gateway, command_line
from tests.support.rawws import PING, TEXT, RawWebSocket, frame

RESULTS = Path(__file__).with_name("RESULTS.md")
SOCKETIO = "/socket.io/?EIO=4&transport=websocket"
BOUND_MIB = 40


class PeakRss:
    """The highest RSS of ``gateway`` while the ``with`` block runs."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, self._gateway.rss_kib())
            time.sleep(0.1)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, self._gateway.rss_kib())


def ping_flood(gateway: Gateway, path: str, connections: int, pings: int) -> dict:
    ping = frame(PING, b"12345678")
    started = time.monotonic()
    with PeakRss(gateway) as rss:
        floods = [RawWebSocket(gateway.port, path, receive_buffer=4096)
                  for _ in range(connections)]
        threads = [threading.Thread(target=flood.flood, args=(ping, pings)) for flood in floods]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        codes = sorted({flood.read_to_close()[0] for flood in floods}, key=str)
        for flood in floods:
            flood.close()
    return {"peak": rss.peak, "codes": codes, "seconds": time.monotonic() - started}


def subscription_flood(gateway: Gateway, connections: int, rooms: int) -> dict:
    started = time.monotonic()
    with PeakRss(gateway) as rss:
        clients = [RawWebSocket(gateway.port, f"/ws?userId=s{n}") for n in range(connections)]
        for client in clients:
            client.texts(1)  # welcome
        counts = {"subscribed": 0, "error": 0}
        for start in range(0, rooms, 1000):
            batch = b"".join(frame(TEXT, json.dumps({"type": "subscribe",
                                                     "room": f"r{n}"}).encode())
                             for n in range(start, min(start + 1000, rooms)))
            for client in clients:
                client.send(batch)
            for client in clients:
                for text in client.texts(min(1000, rooms - start)):
                    counts[json.loads(text)["type"]] += 1
        status = gateway.request("GET", "/api/hub/status")
        for client in clients:
            client.close()
    return {"peak": rss.peak, "counts": counts, "rooms": status["rooms"],
            "seconds": time.monotonic() - started}


def row(flood: str, load: str, before: int, peak: int, after: int, outcome: str) -> str:
    growth = peak - before
    within = "within" if growth <= BOUND_MIB * 1024 else "OVER"
    return (f"| {flood} | {load} | {before} | {peak} | {after} "
            f"| **+{growth / 1024:.1f} MiB** ({within} {BOUND_MIB} MiB) | {outcome} |")


def run(args) -> str:
    gateway = Gateway()
    lines = []
    try:
        gateway.wait_ready()
        time.sleep(2)
        for name, path in (("/ws", "/ws?userId=flood"), ("/socket.io/ before CONNECT", SOCKETIO)):
            before = gateway.rss_kib()
            got = ping_flood(gateway, path, args.connections, args.pings)
            lines.append(row(f"pings never read, {name}",
                             f"{args.connections} × {args.pings:,} pings", before, got["peak"],
                             gateway.rss_kib(),
                             f"closed with {got['codes']} in {got['seconds']:.1f} s"))
        before = gateway.rss_kib()
        got = subscription_flood(gateway, args.connections, args.rooms)
        counts = got["counts"]
        lines.append(row("subscriptions, /ws", f"{args.connections} × {args.rooms:,} subscribes",
                         before, got["peak"], gateway.rss_kib(),
                         f"{counts['subscribed']:,} subscribed, {counts['error']:,} refused, "
                         f"hub rooms {got['rooms']}, {got['seconds']:.1f} s"))
    finally:
        gateway.stop()
    return ("| flood | load | RSS before KiB | peak KiB | after KiB | growth (bound) | outcome |\n"
            "|---|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floods", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=3, help="flooding connections")
    parser.add_argument("--pings", type=int, default=800_000, help="pings per connection")
    parser.add_argument("--rooms", type=int, default=100_000, help="subscribes per connection")
    args = parser.parse_args(argv)
    table = run(args)
    sys.stdout.write(table)
    command = command_line("bench.floods", argv)
    with RESULTS.open("a") as results:
        results.write(f"\n## Floods: {datetime.datetime.now():%Y-%m-%d %H:%M} — `{command}`\n\n"
                      f"{platform.node()}: {os.cpu_count()} CPUs, Python "
                      f"{platform.python_version()}; gateway (embedded PostgreSQL) and the flooding "
                      f"clients on one machine, loopback only.\n\n{table}")


if __name__ == "__main__":
    main(sys.argv[1:])
