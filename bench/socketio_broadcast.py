"""Socket.IO broadcast benchmark: n2gateway next to a plain Node socket.io server.

Each side in turn serves the same ``--clients`` socket.io-client connections, spread
over ``--client-processes`` Node processes (``bench/broadcast_clients.mjs``), all in
one room, and broadcasts ``bench`` events at rising rates. Events come from inside
the server on both sides, with no publish hop from a client: n2gateway's from the
bench publisher plugin (``bench/publisher.py``, ``context.publish``: journal, then
hub fan-out), the reference's from a timer in ``bench/reference_server.mjs`` (the
same 10-ms tick). Latency is the publish call's wall-clock time, stamped in the
payload, to the client's receipt.

Every step is tagged in its payloads; a step counts what arrived within its
publishing time plus ``--drain`` quiet seconds, so nothing of it leaks into the
next, and what did not arrive by then is lost. A warm-up step comes first and is
not counted. A side stops rising after two steps in a row miss the target; its
headline is the most deliveries/s of a step with p99 <= 100 ms and nothing lost.

n2gateway runs as each of ``--gateways`` counts of processes sharing one port
(``reuseport:``) and one PostgreSQL (pgserver), the scale-out design.

    python -m bench.socketio_broadcast [--gateways 1,2] [--rates 10,20,40,...]
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

from bench.support import percentile, raise_file_limit, reuseport_gateways
from tests.support.gateway import WITHOUT_SOURCES, free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ROOM = "bench"
P99_LIMIT_MS = 100
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes and all their descendants."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        times[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    wanted = set(pids)
    grown = True
    while grown:
        children = {pid for pid, parent in parents.items() if parent in wanted} - wanted
        grown = bool(children)
        wanted |= children
    return sum(times.get(pid, 0.0) for pid in wanted)


def read_line(process: subprocess.Popen, what: str) -> str:
    line = process.stdout.readline()
    if not line:
        raise SystemExit(f"{what} exited (code {process.wait()})")
    return line.strip()


class ClientFleet:
    """``total`` socket.io-client connections over ``processes`` Node processes."""

    def __init__(self, node: str, url: str, total: int, processes: int) -> None:
        per = -(-total // processes)
        self.processes = [
            subprocess.Popen([node, str(HERE / "broadcast_clients.mjs"), url, str(first),
                              str(min(per, total - first)), ROOM],
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
        merged = {"received": 0, "disconnected": 0, "buckets": {}}
        for process in self.processes:
            answer = json.loads(read_line(process, "a client process"))
            merged["received"] += answer["received"]
            merged["disconnected"] += answer["disconnected"]
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


class Reference:
    """``bench/reference_server.mjs``: socket.io 4.8 in one Node process."""

    def __init__(self, node: str) -> None:
        self.name = "reference"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [node, str(HERE / "reference_server.mjs"), str(self.port), ROOM],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        read_line(self.process, "the reference server")

    @property
    def pids(self) -> list[int]:
        return [self.process.pid]

    def publish(self, step: int, rate: float, seconds: float) -> int:
        self.process.stdin.write(f"run {step} {rate} {seconds}\n")
        self.process.stdin.flush()
        return int(read_line(self.process, "the reference server").split()[2])

    def stop(self) -> None:
        self.process.stdin.close()
        self.process.wait(10)


class Gateways:
    """``count`` n2gateway processes on one port and one database, with the bench publisher."""

    def __init__(self, count: int, folder: Path, database_url: str, postmaster: int) -> None:
        self.name = f"n2gateway ×{count}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.postmaster = postmaster
        self.nodes = reuseport_gateways(folder, count, database_url, self.port,
                                        "--plugin", "bench.publisher", *WITHOUT_SOURCES)
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

    def publish(self, step: int, rate: float, seconds: float) -> int:
        body = json.dumps({"rate": rate, "seconds": seconds, "rooms": [ROOM], "step": step})
        request = urllib.request.Request(self.url + "/api/bench/run", data=body.encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=seconds + 60) as answer:
            state = json.loads(answer.read())
        return state["durable"]

    def stop(self) -> None:
        for node in self.nodes:
            node.process.terminate()
        for node in self.nodes:
            node.process.wait(30)


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
    server_cpu: float  # cores busy while publishing
    clients_cpu: float

    @property
    def within(self) -> bool:
        return self.received == self.expected and self.p99 <= P99_LIMIT_MS and not self.disconnected

    def row(self) -> str:
        return (f"| {self.side} | {self.rate:g} | {self.received:,} / {self.expected:,} | "
                f"{self.deliveries_per_second:,.0f} | {self.p50} | {self.p99:,} | "
                f"{self.server_cpu:.2f} | {self.clients_cpu:.2f} | "
                f"{'yes' if self.within else 'no'} |")


def measure(side, node: str, args: argparse.Namespace) -> list[Step]:
    fleet = ClientFleet(node, side.url, args.clients, args.client_processes)
    steps: list[Step] = []
    try:
        ready = fleet.wait_ready()
        side.publish(0, args.warmup_rate, args.warmup_seconds)
        time.sleep(args.drain)
        fleet.report(0)
        misses = 0
        for number, rate in enumerate(args.rates, start=1):
            cpu_before = (cpu_seconds(side.pids), cpu_seconds(fleet.pids), time.monotonic())
            published = side.publish(number, rate, args.seconds)
            elapsed = time.monotonic() - cpu_before[2]
            server_cpu = (cpu_seconds(side.pids) - cpu_before[0]) / elapsed
            clients_cpu = (cpu_seconds(fleet.pids) - cpu_before[1]) / elapsed
            time.sleep(args.drain)
            got = fleet.report(number)
            step = Step(side.name, rate, published * ready, got["received"],
                        got["received"] / args.seconds, percentile(got["buckets"], 0.5),
                        percentile(got["buckets"], 0.99), got["disconnected"], server_cpu,
                        clients_cpu)
            sys.stderr.write(step.row() + "\n")
            steps.append(step)
            misses = 0 if step.within else misses + 1
            if misses == 2 or step.disconnected:
                break
    finally:
        fleet.close()
    return steps


def headline(steps: list[Step]) -> float:
    return max((s.deliveries_per_second for s in steps if s.within), default=0.0)


def report(steps: list[Step], args: argparse.Namespace, command: str) -> str:
    sides = list(dict.fromkeys(s.side for s in steps))
    best = {side: headline([s for s in steps if s.side == side]) for side in sides}
    reference = best.pop("reference")
    lines = [
        f"Command: `{command}`", "",
        f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"Node {subprocess.run(['node', '--version'], capture_output=True, text=True).stdout.strip()}; "
        f"{args.clients:,} clients over {args.client_processes} Node processes, "
        f"{args.seconds:g} s per rate + {args.drain:g} s drain, warm-up "
        f"{args.warmup_rate:g}/s for {args.warmup_seconds:g} s.", "",
        "| side | events/s | delivered / expected | deliveries/s | p50 ms | p99 ms "
        "| server CPU (cores) | clients CPU (cores) | within target |",
        "|---|---|---|---|---|---|---|---|---|",
        *(s.row() for s in steps), "",
        f"- reference: **{reference:,.0f} deliveries/s** at p99 ≤ {P99_LIMIT_MS} ms, none lost",
    ]
    for side, figure in best.items():
        ratio = f"{figure / reference:.2f}×" if reference else "n/a"
        lines.append(f"- {side}: **{figure:,.0f} deliveries/s**, **{ratio} the reference**")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.socketio_broadcast",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--client-processes", type=int, default=4)
    parser.add_argument("--gateways", default="1,2", help="gateway process counts, comma list",
                        type=lambda v: [int(x) for x in v.split(",")])
    parser.add_argument("--rates", default="10,20,40,60,80,100,120,150,200",
                        help="events/s, comma list", type=lambda v: [float(x) for x in v.split(",")])
    parser.add_argument("--seconds", type=float, default=4.0, help="publishing time per rate")
    parser.add_argument("--drain", type=float, default=2.0, help="quiet seconds after each rate")
    parser.add_argument("--warmup-rate", type=float, default=20.0)
    parser.add_argument("--warmup-seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    node = shutil.which("node")
    if node is None or not (ROOT / "tests/interop/node_modules/socket.io-client").is_dir():
        raise SystemExit("needs node and `npm ci --prefix tests/interop`")
    raise_file_limit()
    import pgserver

    steps: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="n2-siobench-") as tmp:
        folder = Path(tmp)
        reference = Reference(node)
        try:
            steps += measure(reference, node, args)
        finally:
            reference.stop()
        server = pgserver.get_server(folder / "pgdata", cleanup_mode="stop")
        postmaster = int((folder / "pgdata/postmaster.pid").read_text().split()[0])
        try:
            for count in args.gateways:
                gateways = Gateways(count, folder / f"g{count}", server.get_uri(), postmaster)
                try:
                    steps += measure(gateways, node, args)
                finally:
                    gateways.stop()
        finally:
            server.cleanup()
    command = " ".join(["python -m bench.socketio_broadcast", *(argv or sys.argv[1:])])
    sys.stdout.write(report(steps, args, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
