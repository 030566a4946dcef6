"""A slowloris flood against one gateway: gateway RSS while ``--connections`` loopback
connections each send their headers one byte every ``--interval`` seconds.

Every such connection must be answered 408 and closed at the header deadline (10 s),
and the gateway's RSS must stay within ``--bound`` MiB of what it was before.

    python -m bench.slow_headers [--connections 250] [--interval 3] [--bound 32]
"""

from __future__ import annotations

import argparse
import sys
import time

from bench.support import Gateway, raise_file_limit
from tests.support.slow_clients import SLOW_HEADERS, SlowClients


def run(args) -> str:
    gateway = Gateway()
    try:
        gateway.wait_ready()
        time.sleep(2)  # let start-up allocations settle
        before = gateway.rss_kib()
        samples = [before]
        flood = SlowClients(gateway.port, [(args.connections, SLOW_HEADERS)])
        outcome = flood.run(args.interval, limit=args.limit,
                            on_tick=lambda: samples.append(gateway.rss_kib()))
        after = gateway.rss_kib()
    finally:
        gateway.stop()
    growth = (max(samples) - before) / 1024
    verdict = "met" if growth <= args.bound and outcome.still_open == 0 else "MISSED"
    answers = ", ".join(f"{n} × {status}" for status, n in outcome.answered.items()) or "none"
    return (f"### slow headers: {args.connections} connections, one header byte every "
            f"{args.interval:g} s\n\n"
            f"- answers: {answers}; closed without an answer: {outcome.closed_silently}; "
            f"still open at the end: {outcome.still_open}\n"
            + (f"- all closed after {outcome.seconds:.1f} s (header deadline 10 s)\n"
               if outcome.still_open == 0 else
               f"- {outcome.still_open} still open when the bench gave up at "
               f"{outcome.seconds:.0f} s\n") +
            f"- gateway RSS before {before} KiB, peak {max(samples)} KiB, after {after} KiB: "
            f"**+{growth:.1f} MiB at the peak** (bound {args.bound:g} MiB: {verdict})\n")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.slow_headers", description=__doc__)
    parser.add_argument("--connections", type=int, default=250)
    parser.add_argument("--interval", type=float, default=3.0)
    parser.add_argument("--bound", type=float, default=32.0, help="MiB of RSS growth allowed")
    parser.add_argument("--limit", type=float, default=60.0, help="seconds before giving up")
    args = parser.parse_args(argv)
    raise_file_limit()
    print(run(args))


if __name__ == "__main__":
    main(sys.argv[1:])
