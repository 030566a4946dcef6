"""One room, many sessions: deliveries per second sustained with p99 ≤ 100 ms.

Steps the publish rate up; each step runs ``--step-seconds`` and is kept when nothing
was lost and p99 stayed within the target."""

from __future__ import annotations

import time

from bench.support import Clients, Gateway, percentile, run_publisher


def run(args) -> str:
    lines = []
    best = None
    for rate in args.fanout_rates:
        gateway = Gateway()
        try:
            gateway.wait_ready()
            clients = Clients(gateway, args.sessions, processes=2, room="fanout")
            ready = clients.wait_ready()
            state = run_publisher(gateway, rate, args.step_seconds, ["fanout"])
            time.sleep(3)
            result = clients.collect()
        finally:
            gateway.stop()
        expected = state["durable"] * ready
        p99 = percentile(result["buckets"], 0.99)
        rate_out = expected / args.step_seconds
        ok = result["received"] == expected and p99 <= 100
        lines.append(f"| {rate:g} | {rate_out:,.0f} | {result['received']:,} / {expected:,} | "
                     f"{percentile(result['buckets'], 0.5)} | {p99} | {'yes' if ok else 'no'} |")
        if ok:
            best = rate_out
        else:
            break
    table = "\n".join(["| events/s | deliveries/s | received / expected | p50 ms | p99 ms | within target |",
                       "|---|---|---|---|---|---|", *lines])
    summary = (f"**{best:,.0f} deliveries/s sustained at p99 ≤ 100 ms**" if best
               else "**no step met p99 ≤ 100 ms**")
    return (f"### fanout: one room, {args.sessions} sessions, {args.step_seconds:g} s per step\n\n"
            f"{table}\n\n- {summary}\n")
