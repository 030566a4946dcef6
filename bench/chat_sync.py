"""Chat sync benchmark: the seed's Node listener against n2gateway, on one PostgreSQL.

For each insert rate, two writer connections insert single-row chat messages (each
carrying its insert time) for a few seconds, first into the gateway's database, then
into the seed's. Measured per side: messages delivered (zero loss = all of them), and
INSERT-to-ready latency: for n2gateway, until the event is in the journal (seen by a
reader woken by the journal's doorbell, as the hub is); for the seed, until the Node
process is about to emit it. The seed's ``pg`` and ``socket.io`` come from
``tests/interop/node_modules`` (``make bench`` installs them).

    python -m bench chat_sync [--rates 250,1000,2000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / "tests" / "interop" / "node_modules"  # pg and socket.io, pinned there
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


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else float("nan")


class Arrivals:
    """Message text -> seconds from INSERT to ready, filled by a reader thread."""

    def __init__(self) -> None:
        self.latency: dict[str, float] = {}
        self.lock = threading.Lock()

    def record(self, message: str, ready: float) -> None:
        key, sent = message.rsplit(" ", 1)
        with self.lock:
            self.latency.setdefault(key, ready - float(sent))

    def count(self, prefix: str) -> int:
        with self.lock:
            return sum(1 for k in self.latency if k.startswith(prefix))

    def of(self, prefix: str) -> list[float]:
        with self.lock:
            return [v for k, v in self.latency.items() if k.startswith(prefix)]


def insert(url: str, tag: str, rate: int, seconds: float) -> tuple[int, float]:
    writers = [psycopg2.connect(url) for _ in range(2)]
    for w in writers:
        w.autocommit = True
    total = int(rate * seconds)
    start = time.time()
    for i in range(total):
        delay = start + i / rate - time.time()
        if delay > 0:
            time.sleep(delay)
        with writers[i % 2].cursor() as cur:
            cur.execute("INSERT INTO chats (user_id, sender, message) VALUES (%s, 'student', %s)",
                        (i % 50 + 1, f"{tag}:{i} {time.time():.6f}"))
    elapsed = time.time() - start
    for w in writers:
        w.close()
    return total, total / elapsed


def read_journal(url: str, arrivals: Arrivals, stop: threading.Event) -> None:
    connection = psycopg2.connect(url)
    connection.autocommit = True
    cur = connection.cursor()
    cur.execute("LISTEN n2_journal")
    last = 0
    while not stop.is_set():
        select.select([connection], [], [], 0.05)
        connection.poll()
        connection.notifies.clear()
        cur.execute("SELECT seq, payload ->> 'message' FROM n2_journal"
                    " WHERE seq > %s AND event = 'message:new' ORDER BY seq", (last,))
        now = time.time()
        for seq, message in cur.fetchall():
            last = seq
            arrivals.record(message, now)
    connection.close()


def read_node(process: subprocess.Popen, arrivals: Arrivals, ready: threading.Event) -> None:
    for line in process.stdout:
        item = json.loads(line)
        if item.get("ready"):
            ready.set()
        else:
            arrivals.record(item["message"], item["t"])


def new_database(admin_url: str, name: str) -> str:
    admin = psycopg2.connect(admin_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    return admin_url.replace("/postgres?", f"/{name}?")


def start_gateway(url: str, workdir: Path) -> subprocess.Popen:
    port = 18000 + os.getpid() % 1000
    twistd = Path(sys.executable).with_name("twistd")
    log = (workdir / "gateway.log").open("ab")
    process = subprocess.Popen(
        [str(twistd), "--pidfile=", "-n", "n2gateway", "--http", f"tcp:{port}:interface=127.0.0.1",
         "--data-dir", str(workdir / "data")],
        cwd=ROOT, env={**os.environ, "DATABASE_URL": url}, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if json.loads(r.read())["plugins"].get("chat", {}).get("listening"):
                    return process
        except OSError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"the gateway did not start; see {workdir / 'gateway.log'}")


def measure(side: str, url: str, arrivals: Arrivals, rate: int, seconds: float) -> dict:
    tag = f"{side}-{rate}"
    sent, achieved = insert(url, tag, rate, seconds)
    deadline = time.time() + 10
    while arrivals.count(tag + ":") < sent and time.time() < deadline:
        time.sleep(0.05)
    latencies = arrivals.of(tag + ":")
    return {"side": side, "rate": rate, "achieved": round(achieved), "sent": sent,
            "delivered": len(latencies),
            "p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 1)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench chat_sync")
    parser.add_argument("--rates", default="250,1000,2000")
    parser.add_argument("--seconds", type=float, default=5.0)
    options = parser.parse_args(argv)
    import pgserver

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        server = pgserver.get_server(workdir / "pgdata", cleanup_mode="stop")
        admin_url = server.get_uri()
        n2_url, seed_url = new_database(admin_url, "bench_n2"), new_database(admin_url, "bench_seed")
        with psycopg2.connect(seed_url) as c, c.cursor() as cur:
            cur.execute(SEED_SCHEMA)

        arrivals, stop = Arrivals(), threading.Event()
        gateway = start_gateway(n2_url, workdir)
        node = subprocess.Popen(["node", str(Path(__file__).with_name("seed_chat_listener.cjs"))],
                                env={"NODE_PATH": str(NODE_MODULES), **os.environ,
                                     "DATABASE_URL": seed_url},
                                stdout=subprocess.PIPE, text=True)
        node_ready = threading.Event()
        threads = [threading.Thread(target=read_journal, args=(n2_url, arrivals, stop), daemon=True),
                   threading.Thread(target=read_node, args=(node, arrivals, node_ready), daemon=True)]
        for t in threads:
            t.start()
        try:
            if not node_ready.wait(30):
                raise SystemExit("the seed's Node listener did not start")
            rows = []
            for rate in (int(r) for r in options.rates.split(",")):
                for side, url in (("n2gateway", n2_url), ("seed-node", seed_url)):
                    rows.append(measure(side, url, arrivals, rate, options.seconds))
                    print(json.dumps(rows[-1]), flush=True)
        finally:
            stop.set()
            gateway.terminate()
            node.terminate()
            gateway.wait()
            node.wait()
            server.cleanup()
    print("\n| side | target/s | achieved/s | sent | delivered | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['side']} | {r['rate']} | {r['achieved']} | {r['sent']} | {r['delivered']}"
              f" | {r['p50_ms']} | {r['p99_ms']} |")
    return 0


def run() -> None:
    raise SystemExit(main(sys.argv[1:]))


if __name__ == "__main__":
    run()
