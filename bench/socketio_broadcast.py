"""Socket.IO broadcast benchmark: n2gateway next to a plain Node socket.io server.

Every side (the reference; python-socketio on aiohttp, unless
``--no-python-socketio``; n2gateway as each of ``--gateways`` counts of processes,
and as each of ``--ws`` counts with its clients on ``/ws``) serves its own
``--clients`` connections, spread over ``--client-processes`` Node processes
(``bench/broadcast_clients.mjs``: socket.io-client, or ``ws`` for ``/ws``), all in
one room, and broadcasts ``bench`` events at rising rates. Events come from inside
the server on every side, with no publish hop from a client: n2gateway's from the
bench publisher plugin (``bench/publisher.py``, ``context.publish``: journal, then
hub fan-out), the others' from a timer in ``bench/reference_server.mjs`` and
``bench/python_socketio_server.py`` (the same 10-ms tick). Latency is the publish
call's wall-clock time, stamped in the payload, to the client's receipt.

All sides are up at once and take turns at each rate, in rotating order, so a
disturbance of the shared machine falls on all of them alike; the CPU that other
processes used during a step is reported with it, and a step during which they
used more than ``--other-limit`` cores is run again (``--retries`` times at most). Every step is tagged in its
payloads and counts what arrived within its publishing time plus ``--drain`` quiet
seconds, so nothing of it leaks into the next; what did not arrive by then is
lost. A warm-up step comes first and is not counted. A side stops rising after two
steps in a row miss the target; its headline is the most deliveries/s of a step
with p99 <= 100 ms and nothing lost. ``--deliveries`` names the steps in
deliveries/s (events/s times clients) instead, down to a fraction of an event per
second, for the polling transport where a side's headline sits far below the
WebSocket rates; a step then lasts long enough for ``--min-events`` events. Each step
reports the server's CPU per delivery (n2gateway's with its PostgreSQL), and a
second table sets each side's against the reference's, rate by rate. Polling
clients keep their HTTP connections alive from request to request, as browsers do
(``--connections close``: a connection per request, socket.io-client's own default
on Node, which makes both servers accept and close a TCP connection per request).

n2gateway's processes share one port (``reuseport:``) and one database on one
PostgreSQL (pgserver; each gateway group has its own database), the scale-out design.

    python -m bench.socketio_broadcast [--gateways 1,2] [--ws 1] [--rates 10,20,40,...] [--seconds 5]
    python -m bench.socketio_broadcast --transport polling --gateways 1 \
        --deliveries 250,500,1000,2000,5000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.support import (CLOCK_TICKS, command_line, cpu_seconds, percentile, postmaster_pid,
                           raise_file_limit, reuseport_gateways)
from n2gateway.db.embedded import import_pgserver
from tests.support.gateway import WITHOUT_SOURCES, free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ROOM = "bench"
P99_LIMIT_MS = 100


def read_line(process: subprocess.Popen, what: str) -> str:
    line = process.stdout.readline()
    if not line:
        raise SystemExit(f"{what} exited (code {process.wait()})")
    return line.strip()


class ClientFleet:
    """``total`` socket.io-client connections over ``processes`` Node processes."""

    def __init__(self, node: str, url: str, total: int, processes: int, transport: str,
                 connections: str = "close") -> None:
        self.transport = transport
        per = -(-total // processes)
        self.processes = [
            subprocess.Popen([node, str(HERE / "broadcast_clients.mjs"), url, str(first),
                              str(min(per, total - first)), ROOM, transport, connections],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            for first in range(0, total, per)]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def wait_ready(self) -> int:
        return sum(int(read_line(p, "a client process").split()[1]) for p in self.processes)

    def report(self, step: int) -> dict:
        """What every process received of ``step``, its histograms merged."""
        for process in self.processes:
            process.stdin.write(f"report {step}\n")
            process.stdin.flush()
        merged = {"received": 0, "disconnected": 0, "requests": 0, "buckets": {}}
        for process in self.processes:
            answer = json.loads(read_line(process, "a client process"))
            merged["received"] += answer["received"]
            merged["disconnected"] += answer["disconnected"]
            merged["requests"] += answer["requests"]
            for ms, n in answer["buckets"].items():
                merged["buckets"][int(ms)] = merged["buckets"].get(int(ms), 0) + n
        return merged

    def close(self) -> None:
        for process in self.processes:
            process.stdin.close()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class StdinServer:
    """A server that publishes on its stdin's ``run <step> <rate> <seconds>``, answering
    ``done <step> <published>``: the reference and python-socketio."""

    client_transport: str

    def __init__(self, name: str, command: list[str], transport: str) -> None:
        self.name = name
        self.port = free_port()
        self.url = self.client_url = f"http://127.0.0.1:{self.port}"
        self.client_transport = transport
        self.process = subprocess.Popen([*command, str(self.port), ROOM, transport],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        read_line(self.process, name)

    @property
    def pids(self) -> list[int]:
        return [self.process.pid]

    def publish(self, step: int, rate: float, seconds: float) -> tuple[int, str]:
        """How many events it published, and (unknown here) the collector's pauses."""
        self.process.stdin.write(f"run {step} {rate} {seconds}\n")
        self.process.stdin.flush()
        return int(read_line(self.process, self.name).split()[2]), "–"

    def stop(self) -> None:
        self.process.stdin.close()
        self.process.wait(10)


def reference(node: str, transport: str) -> StdinServer:
    """``bench/reference_server.mjs``: socket.io 4.8 in one Node process."""
    return StdinServer("reference", [node, str(HERE / "reference_server.mjs")], transport)


def python_socketio(transport: str) -> StdinServer:
    """``bench/python_socketio_server.py``: python-socketio on aiohttp, one process."""
    return StdinServer("python-socketio", [sys.executable, "-m", "bench.python_socketio_server"],
                       transport)


class Gateways:
    """``count`` n2gateway processes on one port and one database, with the bench publisher."""

    def __init__(self, count: int, folder: Path, database_url: str, postmaster: int,
                 transport: str, cpython_gc: bool = False) -> None:
        self.name = (f"n2gateway ×{count}" + (" /ws" if transport == "ws" else "")
                     + (" CPython GC" if cpython_gc else ""))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client_transport = transport
        self.client_url = f"ws://127.0.0.1:{self.port}/ws" if transport == "ws" else self.url
        self.postmaster = postmaster
        self.nodes = reuseport_gateways(folder, count, database_url, self.port,
                                        "--plugin", "bench.publisher", *WITHOUT_SOURCES,
                                        *(("--plugin", "bench.cpython_gc") if cpython_gc else ()))
        for node in self.nodes:
            node.start()
        deadline = time.monotonic() + 120
        while not all((node.health() or (0,))[0] == 200 for node in self.nodes):
            if time.monotonic() > deadline or any(n.process.poll() is not None for n in self.nodes):
                raise SystemExit("a gateway did not start:\n" + self.nodes[0].log_text()[-2000:])
            time.sleep(0.2)

    @property
    def pids(self) -> list[int]:
        return [node.process.pid for node in self.nodes] + [self.postmaster]

    def publish(self, step: int, rate: float, seconds: float) -> tuple[int, str]:
        """How many events became durable, and the publishing gateway's full garbage
        collections meanwhile / its longest collector pause in ms."""
        body = json.dumps({"rate": rate, "seconds": seconds, "rooms": [ROOM], "step": step})
        request = urllib.request.Request(self.url + "/api/bench/run", data=body.encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=seconds + 60) as answer:
            state = json.loads(answer.read())
        pauses = state["gc"]
        return state["durable"], f"{pauses['collections'][2]} / {pauses['longest_ms']:.0f}"

    def stop(self) -> None:
        for node in self.nodes:
            node.process.terminate()
        for node in self.nodes:
            node.process.wait(30)


def busy_cpu_seconds() -> float:
    """CPU time the whole machine has spent busy (every core, every process)."""
    user, nice, system, idle, iowait, *rest = (int(v) for v in
                                                Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + sum(rest)) / CLOCK_TICKS


@dataclass
class Step:
    side: str
    rate: float
    expected: int
    received: int
    deliveries_per_second: float
    p50: int
    p99: int
    disconnected: int
    # Cores busy while publishing: the side's server(s), its clients, and everything
    # else on the machine (another job's load shows here).
    server_cpu: float
    clients_cpu: float
    other_cpu: float
    server_cpu_seconds: float
    gc: str

    @property
    def cpu_per_delivery_us(self) -> float:
        return self.server_cpu_seconds / self.received * 1e6 if self.received else 0.0

    @property
    def within(self) -> bool:
        return self.received == self.expected and self.p99 <= P99_LIMIT_MS and not self.disconnected

    def row(self) -> str:
        gone = f" ({self.disconnected} disconnected)" if self.disconnected else ""
        return (f"| {self.side} | {self.rate:g} | {self.received:,} / {self.expected:,}{gone} | "
                f"{self.deliveries_per_second:,.0f} | {self.p50} | {self.p99:,} | "
                f"{self.server_cpu:.2f} / {self.clients_cpu:.2f} / {self.other_cpu:.2f} | "
                f"{self.cpu_per_delivery_us:,.0f} | {self.gc} | {'yes' if self.within else 'no'} |")


class Side:
    """One server under test with its own client fleet, stepping through the rates."""

    def __init__(self, server, node: str, args: argparse.Namespace) -> None:
        self.server, self.args = server, args
        self.fleet = ClientFleet(node, server.client_url, args.clients, args.client_processes,
                                 server.client_transport, args.connections)
        self.ready = self.fleet.wait_ready()
        self.steps: list[Step] = []
        self.misses = 0
        self.tagged = 0  # the last step id used in payloads (0: the warm-up)

    @property
    def rising(self) -> bool:
        """Two misses in a row (or a client dropped) end a side's climb, unless
        ``--every-rate``."""
        if any(s.disconnected for s in self.steps):
            return False
        return self.args.every_rate or self.misses < 2

    def warm_up(self) -> None:
        self.server.publish(0, self.args.warmup_rate, self.args.warmup_seconds)
        time.sleep(self.args.drain)
        self.fleet.report(0)

    def step(self, rate: float) -> Step:
        """One rate, again while other processes disturbed it (up to ``--retries`` times)."""
        for _ in range(1 + self.args.retries):
            step = self._measure(rate)
            sys.stderr.write(step.row() + "\n")
            if step.other_cpu <= self.args.other_limit:
                break
        self.steps.append(step)
        self.misses = 0 if step.within else self.misses + 1
        return step

    def _measure(self, rate: float) -> Step:
        self.tagged += 1
        number = self.tagged
        seconds = max(self.args.seconds, self.args.min_events / rate)
        before = (cpu_seconds(self.server.pids), cpu_seconds(self.fleet.pids),
                  busy_cpu_seconds(), time.monotonic())
        published, pauses = self.server.publish(number, rate, seconds)
        elapsed = time.monotonic() - before[3]
        server = cpu_seconds(self.server.pids) - before[0]
        clients = cpu_seconds(self.fleet.pids) - before[1]
        other = busy_cpu_seconds() - before[2] - server - clients
        time.sleep(self.args.drain)
        got = self.fleet.report(number)
        return Step(self.server.name, rate, published * self.ready, got["received"],
                    got["received"] / seconds, percentile(got["buckets"], 0.5),
                    percentile(got["buckets"], 0.99), got["disconnected"],
                    server / elapsed, clients / elapsed, max(0.0, other / elapsed), server, pauses)


def climb(sides: list[Side], rates: list[float]) -> None:
    """Each rate on every side still rising, one side after the other, the order
    rotating from rate to rate: a disturbance in time falls on all sides alike."""
    for number, rate in enumerate(rates):
        rising = [side for side in sides if side.rising]
        if not rising:
            return
        shift = number % len(rising)
        for side in rising[shift:] + rising[:shift]:
            side.step(rate)


def headline(steps: list[Step]) -> float:
    return max((s.deliveries_per_second for s in steps if s.within), default=0.0)


def lossless(steps: list[Step]) -> str:
    """The most deliveries/s with nothing lost whatever the latency, and its p99:
    where neither side meets the target, how far each gets."""
    whole = [s for s in steps if s.received == s.expected and not s.disconnected]
    if not whole:
        return "nothing lost at no rate"
    best = max(whole, key=lambda s: s.deliveries_per_second)
    return (f"{best.deliveries_per_second:,.0f} deliveries/s with nothing lost, p99 "
            f"{best.p99:,} ms, {best.cpu_per_delivery_us:,.0f} µs server CPU per delivery")


def cpu_table(sides: list[Side]) -> list[str]:
    """Server CPU µs per delivery, each side's rate by rate, with its ratio to the
    reference's at that rate."""
    names = [side.server.name for side in sides]
    per = {(s.side, s.rate): s.cpu_per_delivery_us for side in sides for s in side.steps}
    rows = []
    for rate in dict.fromkeys(s.rate for side in sides for s in side.steps):
        base = per.get(("reference", rate))
        cells = []
        for name in names:
            figure = per.get((name, rate))
            ratio = f" ({figure / base:.2f}×)" if figure and base and name != "reference" else ""
            cells.append("" if figure is None else f"{figure:,.1f}{ratio}")
        rows.append(f"| {rate:g} | " + " | ".join(cells) + " |")
    return ["| events/s | " + " | ".join(f"{n} µs" for n in names) + " |",
            "|---|" + "---|" * len(names), *rows]


def report(sides: list[Side], args: argparse.Namespace, command: str) -> str:
    best = {side.server.name: headline(side.steps) for side in sides}
    whole = {side.server.name: lossless(side.steps) for side in sides}
    reference = best.pop("reference")
    node_version = subprocess.run(["node", "--version"], capture_output=True, text=True)
    lines = [
        f"Command: `{command}`", "",
        f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"Node {node_version.stdout.strip()}; per side {args.clients:,} clients over "
        f"{args.client_processes} Node processes ({args.transport}"
        f"{', connections: ' + args.connections if args.transport == 'polling' else ''});"
        f" {args.seconds:g} s per rate + "
        f"{args.drain:g} s drain (at least {args.min_events} events per step); a step during which other processes used over "
        f"{args.other_limit:g} cores is run again (up to {args.retries} times); warm-up "
        f"{args.warmup_rate:g}/s for {args.warmup_seconds:g} s.",
        "",
        "| side | events/s | delivered / expected | deliveries/s | p50 ms | p99 ms "
        "| CPU cores: server / clients / other | server CPU µs per delivery "
        "| full GCs / longest GC pause ms | within target |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *(s.row() for side in sides for s in side.steps), "",
        "Server CPU per delivery (n2gateway: with PostgreSQL), and its ratio to the "
        "reference's at the same rate:", "", *cpu_table(sides), "",
        f"- reference: **{reference:,.0f} deliveries/s** at p99 ≤ {P99_LIMIT_MS} ms, none lost"
        f" (at most {whole['reference']})",
    ]
    for name, figure in best.items():
        ratio = f"{figure / reference:.2f}×" if reference else "n/a"
        lines.append(f"- {name}: **{figure:,.0f} deliveries/s**, **{ratio} the reference**"
                     f" (at most {whole[name]})")
    return "\n".join(lines) + "\n"


def process_counts(value: str) -> list[int]:
    """A comma list of gateway process counts ('' for none)."""
    counts = [int(x) for x in value.split(",") if x]
    if any(count < 1 for count in counts):
        raise argparse.ArgumentTypeError("a gateway group has at least one process")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.socketio_broadcast",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000, help="per side")
    parser.add_argument("--client-processes", type=int, default=4, help="per side")
    parser.add_argument("--gateways", default="1,2", help="gateway process counts, comma list",
                        type=process_counts)
    parser.add_argument("--ws", default="1", type=process_counts,
                        help="gateway process counts whose clients use n2gateway's /ws "
                             "(with --transport websocket), comma list; '' for none")
    parser.add_argument("--cpython-gc", default="", type=process_counts,
                        help="gateway process counts also run with CPython's garbage "
                             "collector defaults (bench/cpython_gc.py: the gateway before "
                             "n2gateway.collector), comma list")
    parser.add_argument("--python-socketio", action=argparse.BooleanOptionalAction,
                        default=True, help="the python-socketio (aiohttp) side")
    parser.add_argument("--rates", default="10,20,40,60,70,80,90,100,120,140,160,200",
                        help="events/s, comma list", type=lambda v: [float(x) for x in v.split(",")])
    parser.add_argument("--deliveries", type=lambda v: [float(x) for x in v.split(",")],
                        help="deliveries/s per step, comma list (instead of --rates: "
                             "events/s = deliveries/s / --clients)")
    parser.add_argument("--seconds", type=float, default=5.0, help="publishing time per rate")
    parser.add_argument("--min-events", type=int, default=4,
                        help="a step publishes for long enough to send at least this many events")
    parser.add_argument("--drain", type=float, default=2.0, help="quiet seconds after each rate")
    parser.add_argument("--other-limit", type=float, default=0.25,
                        help="cores other processes may use during a step before it is run again")
    parser.add_argument("--retries", type=int, default=2, help="runs again of a disturbed step")
    parser.add_argument("--every-rate", action="store_true",
                        help="run every rate on every side, even after two misses")
    parser.add_argument("--warmup-rate", type=float, default=20.0)
    parser.add_argument("--warmup-seconds", type=float, default=3.0)
    parser.add_argument("--transport", choices=("websocket", "polling"), default="websocket",
                        help="the clients' only transport (polling: HTTP long-polling)")
    parser.add_argument("--connections", choices=("keep-alive", "close"), default="keep-alive",
                        help="polling clients' HTTP connections: kept alive from request to"
                             " request as a browser does, or one per request (socket.io-client"
                             "'s default on Node)")
    args = parser.parse_args(argv)
    if args.deliveries:
        args.rates = [d / args.clients for d in args.deliveries]
    node = shutil.which("node")
    if node is None or not (ROOT / "tests/interop/node_modules/socket.io-client").is_dir():
        raise SystemExit("needs node and `npm ci --prefix tests/interop`")
    raise_file_limit()
    pgserver = import_pgserver()

    servers: list = []
    sides: list[Side] = []
    with tempfile.TemporaryDirectory(prefix="n2-siobench-") as tmp:
        folder = Path(tmp)
        pg = pgserver.get_server(folder / "pgdata", cleanup_mode="stop")
        postmaster = postmaster_pid(folder / "pgdata")
        try:
            servers.append(reference(node, args.transport))
            if args.python_socketio:
                servers.append(python_socketio(args.transport))
            groups = [(count, args.transport, False) for count in args.gateways]
            if args.transport == "websocket":
                groups += [(count, "ws", False) for count in args.ws]
            groups += [(count, args.transport, True) for count in args.cpython_gc]
            for count, transport, cpython_gc in groups:
                database = (f"g{count}" + ("ws" if transport == "ws" else "")
                            + ("cpython" if cpython_gc else ""))
                pg.psql(f"CREATE DATABASE {database};")  # one journal per gateway group
                servers.append(Gateways(count, folder / database, pg.get_uri(database),
                                        postmaster, transport, cpython_gc))
            for server in servers:
                sides.append(Side(server, node, args))
                sides[-1].warm_up()
            climb(sides, args.rates)
        finally:
            for side in sides:
                side.fleet.close()
            for server in servers:
                server.stop()
            pg.cleanup()
    command = command_line("bench.socketio_broadcast", argv or sys.argv[1:])
    sys.stdout.write(report(sides, args, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
