"""``python -m bench [idle] [rooms] [fanout]`` (all three by default): loopback load
tests of one gateway process; figures are appended to ``bench/RESULTS.md`` with the
exact command that produced them.

The comparisons run on their own, each recorded in its section of ``RESULTS.md``:
``python -m bench.chat_sync`` (against the seed's chat listener),
``python -m bench.socketio_broadcast``, ``python -m bench.several``,
``python -m bench.floods`` (memory under ping and subscription floods) and
``python -m bench.send_floor`` (what a bare write to each receiver costs here)."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
from pathlib import Path

from bench import fanout, idle, rooms
from bench.support import command_line, raise_file_limit

SCENARIOS = {"idle": idle, "rooms": rooms, "fanout": fanout}
RESULTS = Path(__file__).with_name("RESULTS.md")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("scenarios", nargs="*", metavar="scenario",
                        help=f"any of {', '.join(SCENARIOS)} (default: all)")
    parser.add_argument("--connections", type=int, default=10_000, help="idle: connections")
    parser.add_argument("--sessions", type=int, default=1_000, help="rooms/fanout: sessions")
    parser.add_argument("--rate", type=float, default=1_000, help="rooms: events per second")
    parser.add_argument("--seconds", type=float, default=60, help="rooms: duration")
    parser.add_argument("--fanout-rates", type=float, nargs="+", default=[10, 25, 50, 100, 200],
                        help="fanout: publish rates to step through")
    parser.add_argument("--step-seconds", type=float, default=10, help="fanout: seconds per step")
    args = parser.parse_args(argv)
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario {', '.join(sorted(unknown))}")
    limit = raise_file_limit()
    sections = []
    for name in args.scenarios or SCENARIOS:
        section = SCENARIOS[name].run(args)
        sys.stdout.write(section + "\n")
        sections.append(section)
    command = command_line("bench", argv)
    header = (f"\n## {datetime.datetime.now():%Y-%m-%d %H:%M} — `{command}`\n\n"
              f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
              f"open-files limit {limit}; gateway, PostgreSQL and Node clients on one machine.\n\n")
    with RESULTS.open("a") as results:
        results.write(header + "\n".join(sections) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
