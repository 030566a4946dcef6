"""What every scenario needs: a gateway subprocess, its RSS, Node client processes,
the bench publisher, gateway groups sharing a port (``reuseport:``), processes' CPU
time, and latency percentiles."""

from __future__ import annotations

import json
import os
import resource
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.support.gateway import ROOT, TWISTD, GatewayProcess, free_port, rss_kib

# The gateways started below (they inherit this environment) load
# ``--plugin bench.publisher`` from this checkout, which is not on their sys.path.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
CLIENTS = Path(__file__).with_name("clients.mjs")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes and all their descendants, with the
    children they have waited for (a PostgreSQL backend that exited meanwhile)."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        ticks[pid] = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    wanted = set(pids)
    grown = True
    while grown:
        children = {pid for pid, parent in parents.items() if parent in wanted} - wanted
        grown = bool(children)
        wanted |= children
    return sum(ticks.get(pid, 0) for pid in wanted) / CLOCK_TICKS


def command_line(module: str, argv: list[str]) -> str:
    """The command that ran ``module`` with ``argv``, quoted to run again as written
    (``--ws ''`` keeps its empty argument)."""
    return " ".join(["python -m", module, *map(shlex.quote, argv)])


def postmaster_pid(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().split()[0])


def raise_file_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def stop_process(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Gateway:
    """``twistd -n n2gateway`` with an embedded PostgreSQL and the bench publisher."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="n2bench-"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("N2GATEWAY_")}
        env.pop("DATABASE_URL", None)
        self.log = (self.dir / "gateway.log").open("wb")
        self.process = subprocess.Popen(
            [str(TWISTD), "--pidfile=", "-n", "n2gateway", "--http",
             f"tcp:{self.port}:interface=127.0.0.1:backlog=4096", "--data-dir", str(self.dir),
             "--plugin", "bench.publisher", "--poll-interval", "1"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws = f"ws://127.0.0.1:{self.port}/ws"

    def request(self, method: str, path: str, body: dict | None = None,
                timeout: float = 10) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return json.loads(answer.read())

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"gateway exited; see {self.dir / 'gateway.log'}")
            try:
                if self.request("GET", "/api/hub/status")["ready"]:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise SystemExit("gateway not ready in time")

    def rss_kib(self) -> int:
        return rss_kib(self.process.pid)

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def reuseport_gateways(folder: Path, count: int, database_url: str, port: int,
                       *args: str) -> list[GatewayProcess]:
    """``count`` gateways (not started) sharing ``port`` (``reuseport:``) and one database."""
    made = []
    for i in range(count):
        sub = folder / f"g{i}"
        sub.mkdir(parents=True)
        node = GatewayProcess(sub, "--node-id", f"g{i}", *args, database_url=database_url,
                              port=port)
        node.args[1] = f"reuseport:{port}:interface=127.0.0.1:backlog=4096"
        made.append(node)
    return made


class Clients:
    """``total`` WebSocket clients spread over ``processes`` Node processes."""

    def __init__(self, gateway: Gateway, total: int, processes: int, room: str = "-",
                 first_id: int = 0) -> None:
        node = shutil.which("node")
        if node is None or not (ROOT / "tests/interop/node_modules/ws").is_dir():
            raise SystemExit("bench needs node and `npm ci --prefix tests/interop`")
        per = -(-total // processes)
        self.processes = []
        for k in range(processes):
            count = min(per, total - k * per)
            if count <= 0:
                break
            self.processes.append(subprocess.Popen(
                [node, str(CLIENTS), gateway.ws, str(first_id + k * per), str(count), room],
                stdout=subprocess.PIPE, text=True))

    def wait_ready(self, timeout: float = 300) -> int:
        ready = 0
        for process in self.processes:
            line = process.stdout.readline()
            if not line.startswith("READY"):
                raise SystemExit(f"a client process failed: {line!r}")
            ready += int(line.split()[1])
        return ready

    def collect(self) -> dict:
        """Stop the clients; their counts and latency histograms, merged."""
        merged = {"ready": 0, "received": 0, "disordered": 0, "closed": 0, "buckets": {}}
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            out, _ = process.communicate(timeout=60)
            result = json.loads(out.strip().splitlines()[-1])
            for key in ("ready", "received", "disordered", "closed"):
                merged[key] += result[key]
            for ms, n in result["buckets"].items():
                merged["buckets"][int(ms)] = merged["buckets"].get(int(ms), 0) + n
        return merged


def percentile(buckets: dict[int, int], fraction: float) -> int:
    total = sum(buckets.values())
    seen = 0
    for ms in sorted(buckets):
        seen += buckets[ms]
        if seen >= fraction * total:
            return ms
    return 0


def run_publisher(gateway: Gateway, rate: float, seconds: float, rooms: list[str]) -> dict:
    return gateway.request("POST", "/api/bench/run", {"rate": rate, "seconds": seconds,
                                                      "rooms": rooms}, timeout=seconds + 60)
