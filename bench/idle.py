"""Idle connections: gateway RSS per open /ws connection (target ≤ 10 KB, issue 20)."""

from __future__ import annotations

import time

from bench.support import Clients, Gateway


def run(args) -> str:
    gateway = Gateway()
    try:
        gateway.wait_ready()
        time.sleep(2)
        before = gateway.rss_kib()
        clients = Clients(gateway, args.connections, processes=4, first_id=1_000_000)
        ready = clients.wait_ready()
        time.sleep(3)
        status = gateway.request("GET", "/api/hub/status")
        after = gateway.rss_kib()
        clients.collect()
    finally:
        gateway.stop()
    per = (after - before) * 1024 / max(ready, 1)
    verdict = "met" if per <= 10_000 else "MISSED"
    return (f"### idle: {ready} idle /ws connections\n\n"
            f"- gateway RSS before {before} KiB, after {after} KiB "
            f"(hub saw {status['connections']} connections)\n"
            f"- **{per / 1000:.1f} KB per connection** (target ≤ 10 KB: {verdict})\n")
