"""Chat sync benchmark (issue #7): n2gateway against the seed's own design, one run.

Both sides get the same PostgreSQL (one embedded server, a database each, the seed's
schema and trigger in both), the same writer and the same clients:

* the seed's design is ``bench/seed_chat_listener.cjs``: a Node ``pg`` LISTEN client
  doing one SELECT per NOTIFY and emitting with a ``socket.io`` server (seeds/002);
* n2gateway runs as ``twistd -n n2gateway`` with its defaults (development-mode
  auth, poll interval 1 s), the chat plugin pointed at that database;
* the writer is ``pgbench`` (shipped with ``pgserver``): 2 to 16 connections inserting
  single-row student messages on a Poisson schedule at the target rate. Each row's
  text is ``"<step> <clock_timestamp()>"``: its insert time, by the database's wall
  clock, which is this machine's. The writer's sessions run with
  ``synchronous_commit = off`` so that the disk's flush rate does not cap the insert
  rate (the gateway's own transactions keep the server default, on);
* the clients are ``bench/chat_clients.mjs``: dashboards on the official
  ``socket.io-client`` (WebSocket transport), subscribed to ``staff`` on n2gateway
  and simply connected to the seed (which emits student messages to everyone).
  Latency is receive time minus insert time, for every client and message.

Each side gets a one-second warm-up, not reported. Per step the table shows the
achieved insert rate, pgbench's mean schedule lag, the rows sent and received by
every client, latency percentiles over every (client, row), and as shares of one core
over the step and its drain the CPU of the side's server process (twistd or node; for
PostgreSQL alone, the whole PostgreSQL), of the whole PostgreSQL, and of the side's
dashboards.

All sides run at once and climb the same rates; at each rate they take turns, in an
order that rotates from rate to rate, so that what else a shared machine does falls on
each alike (the idle sides' servers and dashboards stay connected meanwhile). Each
step inserts for ``--seconds``, then waits up to ``--drain`` seconds for every client
to have every row. A step is **sustained** when

* the writer kept to the target: achieved rate within 5 % and pgbench's mean
  schedule lag at most 10 ms (inserts that start late because PostgreSQL or the
  machine cannot take them would hide that wait from the latency),
* every client received every row exactly once (zero loss, no duplicate),
* delivery kept up: the median latency of the rows inserted in the last tenth of the
  step is at most 1.5 × the p99 of those inserted in the first half, plus 10 ms (a
  growing backlog fails this), and
* the p99 is at most 500 ms.

A third side, ``postgres``, is PostgreSQL alone: the same database, schema, trigger,
writer, schedule and limits, with nobody listening and no clients (its steps are
judged on the writer's two limits only). Its maximum is what the machine sustains
with the chat triggers and no gateway; n2gateway's maximum against it says whether
the gateway is ever the chat bottleneck (goal: at least 90 %).

A step not sustained is run once more (one hiccup on a shared machine is not a
limit); a side stops at the first rate that fails twice, after trying the rate
midway (geometrically) between it and the last one sustained. Its maximum is the
highest rate it sustained. n2gateway and the seed are compared at the highest rate
both sustain.

    python -m bench.chat_sync [--rates 500,700,1000,...] [--seconds 5] [--drain 10]
                              [--clients 2] [--sides seed,n2gateway,postgres]

Needs ``node`` and ``npm ci --prefix tests/interop`` (``pg``, ``socket.io``,
``socket.io-client``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psycopg2

from bench.support import ROOT, TWISTD, cpu_seconds, postmaster_pid, stop_process
from n2gateway.db.embedded import import_pgserver
from tests.support.gateway import free_port

HERE = Path(__file__).resolve().parent
NODE_MODULES = ROOT / "tests" / "interop" / "node_modules"
RATES = "500,700,1000,1400,2000,2800,4000,5600,8000,11000,16000,22000"
P99_LIMIT_MS = 500
RATE_TOLERANCE = 0.05
WRITER_LAG_MS = 10
SEED_SCHEMA = """
CREATE TABLE users (user_id SERIAL PRIMARY KEY, full_name TEXT, avatar_url TEXT);
CREATE TABLE chats (chat_id SERIAL PRIMARY KEY, user_id INTEGER, sender TEXT NOT NULL,
    message TEXT NOT NULL, read_by_student BOOLEAN DEFAULT FALSE,
    read_by_teacher BOOLEAN DEFAULT FALSE, created_at TIMESTAMP DEFAULT NOW());
CREATE FUNCTION notify_new_chat_message() RETURNS TRIGGER AS $$
BEGIN
  PERFORM pg_notify('chat_messages', json_build_object('chat_id', NEW.chat_id,
    'user_id', NEW.user_id, 'sender', NEW.sender)::text);
  RETURN NEW;
END; $$ LANGUAGE plpgsql;
CREATE TRIGGER chat_message_insert_trigger AFTER INSERT ON chats
  FOR EACH ROW EXECUTE FUNCTION notify_new_chat_message();
INSERT INTO users (full_name) SELECT 'user ' || i FROM generate_series(1, 50) i;
"""
INSERT_SCRIPT = r"""\set uid random(1, 50)
INSERT INTO chats (user_id, sender, message)
VALUES (:uid, 'student', :tag::text || ' ' || extract(epoch FROM clock_timestamp()));
"""


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else float("nan")


@dataclass
class Inserted:
    sent: int
    started: float
    lag_ms: float


@dataclass
class Step:
    side: str
    rate: int
    seconds: float
    inserted: Inserted
    received: int
    samples: list[float]
    keeps_up: bool
    duplicates: int
    cpu: float  # the side's server process, share of one core
    attempt: int  # 2: the rate run again after a first step not sustained
    postgres_cpu: float  # the whole PostgreSQL (every database), share of one core
    clients_cpu: float  # the side's dashboards (one Node process)

    @property
    def achieved(self) -> float:
        return self.inserted.sent / self.seconds

    def failures(self) -> list[str]:
        why = []
        if abs(self.achieved - self.rate) > RATE_TOLERANCE * self.rate:
            why.append("writer off target")
        if self.inserted.lag_ms > WRITER_LAG_MS:
            why.append("writer behind")
        if self.received < self.inserted.sent:
            why.append(f"lost {self.inserted.sent - self.received}")
        if self.duplicates:
            why.append(f"{self.duplicates} duplicates")
        if not self.keeps_up:
            why.append("backlog grows")
        if self.samples and self.p(0.99) > P99_LIMIT_MS:
            why.append(f"p99 > {P99_LIMIT_MS} ms")
        return why

    def p(self, fraction: float) -> float:
        return percentile(self.samples, fraction)


class Writer:
    """pgbench inserting tagged rows at a target rate."""

    def __init__(self, url: str, workdir: Path) -> None:
        pgserver = import_pgserver()

        self.url = url
        self.pgbench = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pgbench"
        self.script = workdir / "insert.sql"
        self.script.write_text(INSERT_SCRIPT)

    def insert(self, tag: str, rate: int, seconds: float) -> Inserted:
        connections = max(2, min(16, rate // 400))
        started = time.time()
        answer = subprocess.run(
            [str(self.pgbench), "--no-vacuum", "--protocol=prepared", f"--rate={rate}",
             f"--time={seconds:g}", f"--client={connections}", "--jobs=2",
             f"--file={self.script}", f"--define=tag={tag}", self.url],
            capture_output=True, text=True,
            env={**os.environ, "PGOPTIONS": "-c synchronous_commit=off"})
        if answer.returncode != 0:
            raise SystemExit(f"pgbench failed: {answer.stderr[-2000:]}")
        lag = re.search(r"schedule lag: avg ([\d.]+)", answer.stdout)
        if lag is None:
            raise SystemExit(f"pgbench reported no schedule lag: {answer.stdout[-2000:]}")
        with psycopg2.connect(self.url) as connection, connection.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM chats WHERE message LIKE %s", (tag + " %",))
            (sent,), = cur.fetchall()
        return Inserted(sent, started, float(lag.group(1)))


class Clients:
    """``bench/chat_clients.mjs``: the dashboards of one side."""

    def __init__(self, node: str, url: str, side: str, count: int) -> None:
        self.count = count
        self.process = subprocess.Popen(
            [node, str(HERE / "chat_clients.mjs"), url, side, str(count)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = json.loads(self.process.stdout.readline() or '{"error": "exited"}')
        if "ready" not in ready:
            raise SystemExit(f"{side} clients failed: {ready['error']}")

    def ask(self, op: str, tag: str) -> dict:
        self.process.stdin.write(json.dumps({"op": op, "tag": tag}) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(10)


class Side:
    """One system under test: a server process on ``url`` fed by ``database_url``."""

    name: str
    process: subprocess.Popen

    #: Dashboards connect to it; PostgreSQL alone has none.
    serves_clients = True

    def __init__(self, database_url: str, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url
        self.workdir = workdir
        self.log = (workdir / f"{self.name}.log").open("wb")

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()


class Gateway(Side):
    name = "n2gateway"

    def __init__(self, database_url: str, workdir: Path) -> None:
        super().__init__(database_url, workdir)
        env = {k: v for k, v in os.environ.items() if not k.startswith("N2GATEWAY_")}
        self.process = subprocess.Popen(
            [str(TWISTD), "--pidfile=", "-n", "n2gateway", "--http",
             f"tcp:{self.port}:interface=127.0.0.1", "--data-dir", str(workdir / "n2data"),
             "--disable-plugin", "pancake,tpos"],
            cwd=ROOT, env={**env, "DATABASE_URL": database_url},
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as answer:
                    chat = json.loads(answer.read())["plugins"].get("chat", {})
                    if chat.get("held") and chat.get("listening"):  # it runs the sync
                        return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"the gateway did not start; see {self.log.name}")


class Seed(Side):
    name = "seed"

    def __init__(self, database_url: str, workdir: Path) -> None:
        super().__init__(database_url, workdir)
        self.process = subprocess.Popen(
            ["node", str(HERE / "seed_chat_listener.cjs")],
            env={**os.environ, "NODE_PATH": str(NODE_MODULES), "DATABASE_URL": database_url,
                 "PORT": str(self.port)},
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        if "ready" not in self.process.stdout.readline():
            self.stop()
            raise SystemExit(f"the seed's listener did not start; see {self.log.name}")


class Postgres(Side):
    """PostgreSQL alone: the writer and the trigger, no listener, no clients."""

    name = "postgres"
    serves_clients = False

    def __init__(self, database_url: str, workdir: Path) -> None:
        super().__init__(database_url, workdir)
        self.process = None

    def stop(self) -> None:
        self.log.close()


def measure(side: Side, writer: Writer, clients: Clients | None, rate: int, seconds: float,
            drain: float, attempt: int, postmaster: int) -> Step:
    """One step; PostgreSQL alone (no clients) is judged on the writer only, and its
    server CPU is the whole PostgreSQL's (pgbench's not)."""
    tag = f"{rate}.{attempt}"

    def postgres() -> float:  # the writer's backends that exited included
        return cpu_seconds([postmaster])

    def of(process: subprocess.Popen | None, otherwise: Callable[[], float]) -> Callable[[], float]:
        return otherwise if process is None else lambda: cpu_seconds([process.pid])

    processes = (of(side.process, postgres), postgres,
                 of(clients and clients.process, lambda: 0.0))
    before = [cpu() for cpu in processes]
    inserted = writer.insert(tag, rate, seconds)
    deadline = time.monotonic() + drain
    while (clients is not None and clients.ask("count", tag)["complete"] < inserted.sent
           and time.monotonic() < deadline):
        time.sleep(0.1)
    elapsed = time.time() - inserted.started
    cpu, postgres_cpu, clients_cpu = ((cpu() - b) / elapsed for cpu, b in zip(processes, before))
    if clients is None:
        return Step(side.name, rate, seconds, inserted, inserted.sent, [], True, 0, cpu, attempt,
                    postgres_cpu, clients_cpu)
    report = clients.ask("report", tag)
    rows = report["rows"]
    start_ms, step_ms = inserted.started * 1000, seconds * 1000

    def latencies(since: float = -math.inf, until: float = math.inf) -> list[float]:
        """Latencies of the rows inserted within that part of the step (fractions)."""
        return [latency for t, *row in rows
                if start_ms + since * step_ms <= t < start_ms + until * step_ms
                for latency in row if latency is not None]

    head, tail = latencies(until=0.5), latencies(since=0.9)
    keeps_up = bool(head and tail) and percentile(tail, 0.5) <= 1.5 * percentile(head, 0.99) + 10
    received = sum(1 for _, *row in rows if None not in row)
    return Step(side.name, rate, seconds, inserted, received, latencies(), keeps_up,
                report["duplicates"], cpu, attempt, postgres_cpu, clients_cpu)


class Climb:
    """One side's way up the rates: its steps so far, and whether it has found its limit."""

    def __init__(self, side: Side, node: str, options: argparse.Namespace,
                 postmaster: int) -> None:
        self.side = side
        self.postmaster = postmaster
        self.options = options
        self.steps: list[Step] = []
        self.done = False
        self.writer = Writer(side.database_url, side.workdir)
        self.clients = (Clients(node, side.url, side.name, options.clients)
                        if side.serves_clients else None)

    def warm_up(self, rate: int) -> None:
        """A short step, not reported: pools connect, code paths get hot."""
        self._measure(rate, 1, attempt=0)

    def climb(self, rate: int) -> None:
        """Step at ``rate``; at the first rate failed twice, try the rate midway
        (geometrically) between it and the last one sustained, and stop climbing."""
        if not self._sustains(rate):
            below = max(sustained(self.steps), default=None)
            if below is not None:
                self._sustains(round(math.sqrt(below * rate) / 50) * 50)
            self.done = True

    def _sustains(self, rate: int) -> bool:
        for attempt in (1, 2):
            self.steps.append(self._measure(rate, self.options.seconds, attempt))
            sys.stderr.write(row(self.steps[-1]) + "\n")
            if not self.steps[-1].failures():
                return True
        return False

    def _measure(self, rate: int, seconds: float, attempt: int) -> Step:
        return measure(self.side, self.writer, self.clients, rate, seconds,
                       self.options.drain, attempt, self.postmaster)

    def close(self) -> None:
        try:
            if self.clients is not None:
                self.clients.close()
        finally:
            self.side.stop()


def run_sides(climbs: list[Climb], rates: list[int]) -> None:
    """Every side steps through the same rates; at each rate they take turns, in an
    order that rotates, so that what else the machine does falls on each alike."""
    for climb in climbs:
        climb.warm_up(rates[0])
    for turn, rate in enumerate(rates):
        climbing = [climb for climb in climbs if not climb.done]
        if not climbing:
            return
        shift = turn % len(climbing)
        for climb in climbing[shift:] + climbing[:shift]:
            climb.climb(rate)


def new_database(admin_url: str, name: str) -> str:
    admin = psycopg2.connect(admin_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    url = admin_url.replace("/postgres?", f"/{name}?")
    with psycopg2.connect(url) as connection, connection.cursor() as cur:
        cur.execute(SEED_SCHEMA)
    return url


def row(step: Step) -> str:
    why = step.failures()
    again = " (again)" if step.attempt > 1 else ""
    return (f"| {step.side} | {step.rate:,}{again} | {step.achieved:,.0f} | {step.inserted.lag_ms:.1f}"
            f" | {step.inserted.sent:,} | {step.received:,} | {step.p(0.5):.1f} | {step.p(0.99):.1f}"
            f" | {max(step.samples, default=float('nan')):.0f} | {step.cpu:.0%}"
            f" | {step.postgres_cpu:.0%} | {step.clients_cpu:.0%}"
            f" | {'; '.join(why) if why else 'yes'} |")


def sustained(steps: list[Step]) -> dict[int, Step]:
    return {s.rate: s for s in steps if not s.failures()}


def summary(results: dict[str, list[Step]], options: argparse.Namespace) -> str:
    lines = [f"{options.clients} dashboard clients per side, {options.seconds:g} s per step,"
             f" drain ≤ {options.drain:g} s.", "",
             "| side | target/s | achieved/s | writer lag ms | sent | received by all | p50 ms"
             " | p99 ms | max ms | server CPU | PostgreSQL CPU | clients CPU | sustained |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [row(step) for steps in results.values() for step in steps]
    lines.append("")
    top = {}
    for name, steps in results.items():
        top[name] = max(sustained(steps), default=None)
        limited = any(s.attempt == 2 and s.failures() for s in steps)
        lines.append(f"- {name}: max sustained {top[name]:,}/s"
                     + ("" if limited else " (the highest rate tried: its limit is above)")
                     if top[name] else f"- {name}: none sustained")
    if top.get("n2gateway") and top.get("postgres"):
        share = top["n2gateway"] / top["postgres"]
        lines.append(f"- **n2gateway {share:.0%} of PostgreSQL alone** (goal ≥ 90 %:"
                     f" {'met' if share >= 0.9 else 'not met'})")
    if top.get("n2gateway") and top.get("seed"):
        ours, theirs = (sustained(results[name]) for name in ("n2gateway", "seed"))
        ratio = top["n2gateway"] / top["seed"]
        both = max(ours.keys() & theirs.keys(), default=None)
        if both is None:
            lines.append(f"- **ratio {ratio:.2f}×**; no rate sustained by both")
        else:
            p99_ok = ours[both].p(0.99) <= theirs[both].p(0.99)
            lines.append(f"- **ratio {ratio:.2f}×**"
                         f" (goal ≥ 2×: {'met' if ratio >= 2 else 'not met'});"
                         f" at {both:,}/s, the highest rate both sustain, p99 n2gateway"
                         f" {ours[both].p(0.99):.1f} ms, seed {theirs[both].p(0.99):.1f} ms"
                         f" (goal no worse: {'met' if p99_ok else 'not met'})")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chat_sync",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default=RATES, help="inserts/s to step through, comma list")
    parser.add_argument("--seconds", type=float, default=5.0, help="insert time per step")
    parser.add_argument("--drain", type=float, default=10.0,
                        help="seconds to wait for stragglers after each step")
    parser.add_argument("--clients", type=int, default=2, help="dashboard clients per side")
    parser.add_argument("--sides", default="seed,n2gateway,postgres", help="comma list")
    options = parser.parse_args(argv)
    options.rates = [int(r) for r in options.rates.split(",")]
    node = shutil.which("node")
    if node is None or not (NODE_MODULES / "socket.io-client").is_dir():
        raise SystemExit("needs node and `npm ci --prefix tests/interop`")
    pgserver = import_pgserver()

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        server = pgserver.get_server(workdir / "pgdata", cleanup_mode="stop")
        postmaster = postmaster_pid(workdir / "pgdata")
        sides = {"seed": Seed, "n2gateway": Gateway, "postgres": Postgres}
        climbs: list[Climb] = []
        try:
            for name in options.sides.split(","):
                url = new_database(server.get_uri(), f"bench_{name}")
                climbs.append(Climb(sides[name](url, workdir), node, options, postmaster))
            run_sides(climbs, sorted(options.rates))
            results = {climb.side.name: climb.steps for climb in climbs}
        finally:
            for climb in climbs:
                climb.close()
            server.cleanup()
    sys.stdout.write(summary(results, options) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
