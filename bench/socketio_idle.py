"""Idle cost of Socket.IO sessions: n2gateway next to a Node socket.io server.

Each side serves ``--clients`` socket.io-client sessions on one ``--transport``
(long-polling by default, or WebSocket), subscribed to one room where nothing is
published, for ``--seconds``: the HTTP requests per second they make (counted by the
clients: each GET and POST; none on WebSocket), the server's CPU (for n2gateway with
its PostgreSQL), its resident memory, and that memory's growth from before its
clients connected, per session.

    python -m bench.socketio_idle [--clients 1000] [--seconds 30]
    python -m bench.socketio_idle --transport websocket --clients 10000 --client-processes 8
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.socketio_broadcast import ROOT, ClientFleet, Gateways, reference
from bench.support import command_line, cpu_seconds, postmaster_pid, raise_file_limit, rss_kib
from n2gateway.db.embedded import import_pgserver


def server_rss_kib(server) -> int:
    # The server's own processes; PostgreSQL's memory is shared buffers mostly.
    return sum(rss_kib(pid) for pid in server.pids if pid != getattr(server, "postmaster", None))


def measure(server, fleet: ClientFleet, seconds: float, step: int, rss_before: int,
            sessions: int) -> str:
    before = fleet.report(step)["requests"]
    cpu, started = cpu_seconds(server.pids), time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    cpu = cpu_seconds(server.pids) - cpu
    requests = fleet.report(step + 1)["requests"] - before
    rss = server_rss_kib(server)
    # On WebSocket the clients' count is of packets written, not of HTTP requests.
    rate = f"{requests / elapsed:,.1f}" if fleet.transport == "polling" else "–"
    return (f"| {server.name} | {sessions:,} | {rate} | {cpu / elapsed:.3f} "
            f"| {rss / 1024:,.0f} | {(rss - rss_before) * 1.024 / sessions:.1f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.socketio_idle",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000, help="per side")
    parser.add_argument("--client-processes", type=int, default=4, help="per side")
    parser.add_argument("--seconds", type=float, default=30.0, help="idle time measured")
    parser.add_argument("--transport", choices=("polling", "websocket"), default="polling",
                        help="the clients' only transport")
    parser.add_argument("--connections", choices=("keep-alive", "close"), default="keep-alive",
                        help="polling clients' HTTP connections (see bench.socketio_broadcast)")
    args = parser.parse_args(argv)
    node = shutil.which("node")
    if node is None or not (ROOT / "tests/interop/node_modules/socket.io-client").is_dir():
        raise SystemExit("needs node and `npm ci --prefix tests/interop`")
    raise_file_limit()
    pgserver = import_pgserver()

    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="n2-sioidle-") as tmp:
        folder = Path(tmp)
        pg = pgserver.get_server(folder / "pgdata", cleanup_mode="stop")
        postmaster = postmaster_pid(folder / "pgdata")
        servers: list = []
        fleets: list[ClientFleet] = []
        try:
            pg.psql("CREATE DATABASE idle;")
            servers = [reference(node, args.transport),
                       Gateways(1, folder / "g1", pg.get_uri("idle"), postmaster, args.transport)]
            time.sleep(2)  # start-up settles
            before, sessions = [], []
            for server in servers:
                before.append(server_rss_kib(server))
                fleets.append(ClientFleet(node, server.url, args.clients,
                                          args.client_processes, args.transport,
                                          args.connections))
                sessions.append(fleets[-1].wait_ready())
            time.sleep(5)  # the connection burst settles
            rows = [measure(server, fleet, args.seconds, 10 * n, before[n], sessions[n])
                    for n, (server, fleet) in enumerate(zip(servers, fleets))]
        finally:
            for fleet in fleets:
                fleet.close()
            for server in servers:
                server.stop()
            pg.cleanup()
    command = command_line("bench.socketio_idle", argv or sys.argv[1:])
    sys.stdout.write("\n".join([
        f"Command: `{command}`; {args.clients:,} idle {args.transport} sessions per side "
        f"over {args.client_processes} Node processes (polling connections: "
        f"{args.connections}), {args.seconds:g} s measured.", "",
        "| side | sessions | requests/s | server CPU cores (n2gateway: with PostgreSQL) "
        "| server RSS MiB (without PostgreSQL) | KB per session (RSS growth) |",
        "|---|---|---|---|---|---|", *rows]) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
