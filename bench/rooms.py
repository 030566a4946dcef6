"""Sessions each in their own ``user:<id>`` room, events spread over them at a steady
rate: nothing lost, p99 publish-to-receive latency (target ≤ 50 ms)."""

from __future__ import annotations

import time

from bench.support import Clients, Gateway, percentile, run_publisher


def run(args) -> str:
    gateway = Gateway()
    try:
        gateway.wait_ready()
        clients = Clients(gateway, args.sessions, processes=2)
        ready = clients.wait_ready()
        rooms = [f"user:{i}" for i in range(args.sessions)]
        state = run_publisher(gateway, args.rate, args.seconds, rooms)
        time.sleep(3)
        result = clients.collect()
        status = gateway.request("GET", "/api/hub/status")
    finally:
        gateway.stop()
    lost = state["durable"] - result["received"]
    p50, p99 = percentile(result["buckets"], 0.5), percentile(result["buckets"], 0.99)
    verdict = "met" if p99 <= 50 and lost == 0 else "MISSED"
    return (f"### rooms: {ready} sessions, one `user:<id>` room each, "
            f"{args.rate:g} events/s for {args.seconds:g} s\n\n"
            f"- published {state['durable']} (failed {state['failed']}), received "
            f"{result['received']}: **lost {lost}**, out of order {result['disordered']}, "
            f"slow-closed {result['closed']}\n"
            f"- publish-to-receive latency p50 {p50} ms, **p99 {p99} ms**, max "
            f"{max(result['buckets'], default=0)} ms (target p99 ≤ 50 ms, none lost: {verdict})\n"
            f"- hub delivered {status['delivered']}\n")
