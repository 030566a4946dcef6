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
every client, latency percentiles over every (client, row), and the CPU of the side's
server process (twistd or node) as a share of one core over the step and its drain.

One side at a time (the other is stopped), the insert rate rises step by step; each
step inserts for ``--seconds``, then waits up to ``--drain`` seconds for every client
to have every row. A step is **sustained** when

* the writer kept to the target (achieved rate within 5 %),
* every client received every row exactly once (zero loss, no duplicate),
* delivery kept up: the median latency of the rows inserted in the last tenth of the
  step is at most 1.5 × the p99 of those inserted in the first half, plus 10 ms (a
  growing backlog fails this), and
* the p99 is at most 500 ms.

A step not sustained is run once more (one hiccup on a shared machine is not a
limit); a side stops at the first rate that fails twice, after trying the rate
midway (geometrically) between it and the last one sustained. Its maximum is the
highest rate it sustained.

    python -m bench.chat_sync [--rates 500,700,1000,...] [--seconds 5] [--drain 10]
                              [--clients 2] [--sides seed,n2gateway]

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

import psycopg2

from bench.support import ROOT, TWISTD, stop_process
from tests.support.gateway import free_port

HERE = Path(__file__).resolve().parent
NODE_MODULES = ROOT / "tests" / "interop" / "node_modules"
RATES = "500,700,1000,1400,2000,2800,4000,5600,8000,11000,16000"
P99_LIMIT_MS = 500
RATE_TOLERANCE = 0.05
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


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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

    @property
    def achieved(self) -> float:
        return self.inserted.sent / self.seconds

    def failures(self) -> list[str]:
        why = []
        if abs(self.achieved - self.rate) > RATE_TOLERANCE * self.rate:
            why.append("writer off target")
        if self.received < self.inserted.sent:
            why.append(f"lost {self.inserted.sent - self.received}")
        if self.duplicates:
            why.append(f"{self.duplicates} duplicates")
        if not self.keeps_up:
            why.append("backlog grows")
        if self.p(0.99) > P99_LIMIT_MS:
            why.append(f"p99 > {P99_LIMIT_MS} ms")
        return why

    def p(self, fraction: float) -> float:
        return percentile(self.samples, fraction)


class Writer:
    """pgbench inserting tagged rows at a target rate."""

    def __init__(self, url: str, workdir: Path) -> None:
        import pgserver

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
        with psycopg2.connect(self.url) as connection, connection.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM chats WHERE message LIKE %s", (tag + " %",))
            (sent,), = cur.fetchall()
        return Inserted(sent, started, float(lag.group(1)) if lag else float("nan"))


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

    def __init__(self, database_url: str, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url
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


def measure(side: Side, writer: Writer, clients: Clients, rate: int, seconds: float,
            drain: float, attempt: int) -> Step:
    tag = f"{rate}.{attempt}"
    cpu = cpu_seconds(side.process.pid)
    inserted = writer.insert(tag, rate, seconds)
    deadline = time.monotonic() + drain
    while clients.ask("count", tag)["complete"] < inserted.sent and time.monotonic() < deadline:
        time.sleep(0.1)
    cpu = (cpu_seconds(side.process.pid) - cpu) / (time.time() - inserted.started)
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
                report["duplicates"], cpu, attempt)


def run_side(side_class: type[Side], database_url: str, workdir: Path, node: str,
             options: argparse.Namespace) -> list[Step]:
    side = side_class(database_url, workdir)
    steps: list[Step] = []
    try:
        clients = Clients(node, side.url, side.name, options.clients)
        writer = Writer(database_url, workdir)
        try:
            # Warm-up, not reported: pools connect, code paths get hot.
            measure(side, writer, clients, options.rates[0], 1, options.drain, attempt=0)

            def sustains(rate: int) -> bool:
                for attempt in (1, 2):
                    steps.append(measure(side, writer, clients, rate, options.seconds,
                                         options.drain, attempt))
                    sys.stderr.write(row(steps[-1]) + "\n")
                    if not steps[-1].failures():
                        return True
                return False

            for rate in options.rates:
                if not sustains(rate):
                    below = max(sustained(steps), default=None)
                    if below is not None:
                        sustains(round(math.sqrt(below * rate) / 50) * 50)
                    break
        finally:
            clients.close()
    finally:
        side.stop()
    return steps


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
            f" | {'; '.join(why) if why else 'yes'} |")


def sustained(steps: list[Step]) -> dict[int, Step]:
    return {s.rate: s for s in steps if not s.failures()}


def summary(results: dict[str, list[Step]], options: argparse.Namespace) -> str:
    lines = [f"{options.clients} dashboard clients per side, {options.seconds:g} s per step,"
             f" drain ≤ {options.drain:g} s.", "",
             "| side | target/s | achieved/s | writer lag ms | sent | received by all | p50 ms"
             " | p99 ms | max ms | server CPU | sustained |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [row(step) for steps in results.values() for step in steps]
    lines.append("")
    top = {}
    for name, steps in results.items():
        top[name] = max(sustained(steps), default=None)
        limited = any(s.attempt == 2 and s.failures() for s in steps)
        lines.append(f"- {name}: max sustained {top[name]:,}/s"
                     + ("" if limited else " (the highest rate tried: its limit is above)")
                     if top[name] else f"- {name}: none sustained")
    if len(top) == 2 and all(top.values()):
        ours, theirs = (sustained(results[name]) for name in ("n2gateway", "seed"))
        ratio = top["n2gateway"] / top["seed"]
        both = max(ours.keys() & theirs.keys())
        p99_ok = ours[both].p(0.99) <= theirs[both].p(0.99)
        lines.append(f"- **ratio {ratio:.2f}×** (goal ≥ 2×: {'met' if ratio >= 2 else 'not met'});"
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
    parser.add_argument("--sides", default="seed,n2gateway", help="comma list")
    options = parser.parse_args(argv)
    options.rates = [int(r) for r in options.rates.split(",")]
    node = shutil.which("node")
    if node is None or not (NODE_MODULES / "socket.io-client").is_dir():
        raise SystemExit("needs node and `npm ci --prefix tests/interop`")
    import pgserver

    sides = {"seed": Seed, "n2gateway": Gateway}
    results: dict[str, list[Step]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        server = pgserver.get_server(workdir / "pgdata", cleanup_mode="stop")
        try:
            for name in options.sides.split(","):
                url = new_database(server.get_uri(), f"bench_{name}")
                results[name] = run_side(sides[name], url, workdir, node, options)
        finally:
            server.cleanup()
    sys.stdout.write(summary(results, options) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
