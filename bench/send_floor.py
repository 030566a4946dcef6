"""The floor of a broadcast on this machine: the CPU a sender spends writing one
small frame to each of ``--receivers`` loopback TCP connections per event, and
nothing else (no protocol, no rooms, no journal), in a Python and in a Node sender.

On loopback the kernel runs the receiving end's TCP processing inside the sender's
``send``, so this is the least any server here spends per delivery while each event
leaves in a write of its own (events further apart than one burst of writes takes).
``bench.socketio_broadcast`` reports the servers' CPU per delivery at the same rates,
to set beside it.

    python -m bench.send_floor [--receivers 1000] [--rates 20,40,80] [--seconds 5] [--runs 3]
"""

from __future__ import annotations

import argparse
import selectors
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.support import command_line, cpu_seconds, raise_file_limit

#: What n2gateway writes for one "bench" event of the broadcast benchmark: a text
#: frame of ``42["bench",{t, i, step},"<offset>"]``.
PAYLOAD = b'42["bench",{"t":1796300294772.0232,"i":123,"step":3},"27"]'
FRAME = bytes([0x81, len(PAYLOAD)]) + PAYLOAD
NODE_SENDER = Path(__file__).with_name("send_floor.mjs")


def serve(receivers: int) -> None:
    """The Python sender: accepts ``receivers`` connections, then for each ``run <rate>
    <seconds>`` line writes FRAME to every connection ``rate`` times a second and
    prints ``done <events>``."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=receivers)
    print(f"listening {listener.getsockname()[1]}", flush=True)
    connections = [listener.accept()[0] for _ in range(receivers)]
    for connection in connections:
        connection.setblocking(False)
    sends = [connection.send for connection in connections]
    for line in sys.stdin:
        rate, seconds = (float(v) for v in line.split()[1:])
        events = max(1, int(rate * seconds))
        started = time.monotonic()
        for i in range(events):
            for send in sends:
                send(FRAME)
            time.sleep(max(0.0, started + (i + 1) / rate - time.monotonic()))
        print(f"done {events}", flush=True)


def drain(sockets: list[socket.socket], stop: threading.Event) -> None:
    selector = selectors.DefaultSelector()
    for sock in sockets:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    while not stop.is_set():
        for key, _ in selector.select(0.2):
            key.fileobj.recv(65536)


def measure(command: list[str], receivers: int, rates: list[float], seconds: float) -> dict:
    """µs of the sender's CPU per send, by rate (its CPU read as every bench reads it)."""
    sender = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    stop = threading.Event()
    sockets: list[socket.socket] = []
    reader = None
    try:
        port = int(sender.stdout.readline().split()[1])
        sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(receivers)]
        reader = threading.Thread(target=drain, args=(sockets, stop))
        reader.start()
        per_send = {}
        for rate in rates:
            before = cpu_seconds([sender.pid])
            sender.stdin.write(f"run {rate} {seconds}\n")
            sender.stdin.flush()
            events = int(sender.stdout.readline().split()[1])
            per_send[rate] = (cpu_seconds([sender.pid]) - before) / (events * receivers) * 1e6
        return per_send
    finally:
        sender.stdin.close()
        sender.wait(30)
        stop.set()
        if reader is not None:
            reader.join()
        for sock in sockets:
            sock.close()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.send_floor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--receivers", type=int, default=1000, help="loopback connections")
    parser.add_argument("--rates", default="20,40,80", help="events/s, comma list")
    parser.add_argument("--seconds", type=float, default=5, help="per rate")
    parser.add_argument("--runs", type=int, default=3, help="runs of each sender, in turns")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the Python sender
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args.serve)
    if args.receivers < 1 or args.runs < 1 or args.seconds <= 0:
        parser.error("--receivers and --runs take a count of at least 1, --seconds a duration")
    node = shutil.which("node")
    if node is None:
        raise SystemExit("bench.send_floor needs node")
    raise_file_limit()
    rates = [float(rate) for rate in args.rates.split(",")]
    senders = {"Python": [sys.executable, "-m", "bench.send_floor", "--serve", str(args.receivers)],
               "Node": [node, str(NODE_SENDER), str(args.receivers), FRAME.hex()]}
    figures: dict[str, list[dict]] = {name: [] for name in senders}
    for _ in range(args.runs):
        for name, command in senders.items():
            figures[name].append(measure(command, args.receivers, rates, args.seconds))
    print(f"Command: `{command_line('bench.send_floor', argv)}`\n\n"
          f"{args.receivers} loopback connections, a {len(FRAME)}-byte frame to each per event, "
          f"{args.seconds:g} s per rate, {args.runs} runs of each sender in turns.\n\n"
          "| events/s | " + " | ".join(f"{name} µs per send" for name in senders) + " |\n"
          "|---|" + "---|" * len(senders))
    for rate in rates:
        cells = []
        for name in senders:
            values = sorted(run[rate] for run in figures[name])
            cells.append(f"{values[0]:.1f}–{values[-1]:.1f}")
        print(f"| {rate:g} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
