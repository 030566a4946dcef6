"""Socket.IO broadcast benchmark: n2gateway next to a plain Node socket.io server.

Both serve the same N clients (socket.io-client, in one separate Node process) in
one room, and get the same events at rising rates; the figure is the deliveries/s
reached with the p99 publish-to-delivery latency at or under 100 ms. Loopback only,
every step bounded in time.

    python -m bench.socketio_broadcast [--clients 1000] [--rates 5,10,20,50,100] [--seconds 3]

The gateway runs with an embedded PostgreSQL unless DATABASE_URL is set.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
P99_LIMIT_MS = 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} not ready after {timeout} s")


def run_clients(node: str, kind: str, url: str, args: argparse.Namespace) -> list[dict]:
    steps = len(args.rates.split(","))
    answer = subprocess.run(
        [node, str(HERE / "broadcast_clients.mjs"), kind, url, str(args.clients), args.rates,
         str(args.seconds)],
        capture_output=True, text=True, timeout=60 + steps * (args.seconds + 5) * 2)
    if answer.returncode != 0:
        raise SystemExit(f"{kind} clients failed: {answer.stderr[-2000:]}")
    return [json.loads(line) for line in answer.stdout.splitlines()]


def best(rows: list[dict]) -> dict | None:
    within = [r for r in rows if r["p99"] is not None and r["p99"] <= P99_LIMIT_MS
              and r["delivered"] == r["expected"]]
    return max(within, key=lambda r: r["deliveriesPerSecond"], default=None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rates", default="5,10,20,50,100", help="events/s, comma list")
    parser.add_argument("--seconds", type=float, default=3.0, help="per rate")
    args = parser.parse_args(argv)
    node = shutil.which("node")
    if node is None or not (ROOT / "tests/interop/node_modules/socket.io").is_dir():
        raise SystemExit("needs node and `npm ci --prefix tests/interop`")

    processes = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            reference_port, gateway_port = free_port(), free_port()
            processes.append(subprocess.Popen(
                [node, str(HERE / "reference_server.mjs"), str(reference_port)],
                stdout=subprocess.DEVNULL))
            env = {k: v for k, v in os.environ.items() if not k.startswith("N2GATEWAY_")}
            processes.append(subprocess.Popen(
                [str(Path(sys.executable).with_name("twistd")), "--pidfile=", "-n", "n2gateway",
                 "--http", f"tcp:{gateway_port}:interface=127.0.0.1", "--data-dir", tmp],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            gateway = f"http://127.0.0.1:{gateway_port}"
            wait_http(gateway + "/health", 120)
            results = {
                "reference": run_clients(node, "reference", f"http://127.0.0.1:{reference_port}", args),
                "n2gateway": run_clients(node, "n2gateway", gateway, args),
            }
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)

    for kind, rows in results.items():
        for row in rows:
            sys.stdout.write(f"{kind:10} {row['rate']:>5}/s events  delivered {row['delivered']:>7}"
                             f"/{row['expected']:<7} {row['deliveriesPerSecond']:>7} deliveries/s"
                             f"  p99 {row['p99']} ms\n")
        top = best(rows)
        sys.stdout.write(f"{kind:10} best with p99 <= {P99_LIMIT_MS} ms: "
                         f"{top['deliveriesPerSecond'] if top else 'none'} deliveries/s\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
