"""``twistd -n n2gateway`` as a user runs it: a real subprocess, a real port."""

from __future__ import annotations

import json
import socket

import psutil
import pytest_twisted

from tests.support.gateway import free_port

PASSWORD = "pw-Qm72-never-logged"


def postmasters(pgdata) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(attrs=["name", "cmdline"]):
        if proc.info["name"] == "postgres" and str(pgdata) in " ".join(proc.info["cmdline"] or ()):
            found.append(proc)
    return found


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()
            and not line.startswith((" ", "Usage:", "Options:", "Run the n2gateway",
                                     "environment variable"))]


@pytest_twisted.ensureDeferred
async def test_embedded_postgresql_start_stop_and_restart(gateway_process, tmp_path):
    gateway = gateway_process().start()
    health = await gateway.wait_healthy(timeout=60)
    assert health["status"] == "ok"
    assert health["database"] == {"kind": "embedded", "state": "up"}
    pgdata = gateway.data_dir / "pgdata"
    assert postmasters(pgdata)

    assert await gateway.terminate() == 0
    first_run = gateway.log_text()
    assert "Traceback" not in first_run
    assert "applied migration core/0001_realtime_credentials.sql" in first_run
    assert "embedded PostgreSQL released" in first_run
    assert not (pgdata / "postmaster.pid").exists()
    assert postmasters(pgdata) == []

    # The second start finds the same data (no initdb, migrations already recorded).
    again = gateway_process(port=gateway.port).start()
    assert (await again.wait_healthy(timeout=60))["status"] == "ok"
    assert await again.terminate() == 0
    second_run = again.log_text()[len(first_run):]
    assert "gateway ready" in second_run
    assert "applied migration" not in second_run
    assert "Traceback" not in second_run
    assert postmasters(pgdata) == []


def test_an_unknown_option_is_one_line_and_a_failure(gateway_process):
    result = gateway_process("--colour", "blue").run_to_exit()
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    (line,) = error_lines(result.stdout + result.stderr)
    assert line.endswith(": option --colour not recognized")


def test_a_bad_endpoint_is_one_line_and_a_failure(gateway_process):
    result = gateway_process("--http", "tcp:eighty").run_to_exit()
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    (line,) = error_lines(result.stdout + result.stderr)
    assert "--http: bad endpoint 'tcp:eighty'" in line


def test_a_malformed_database_url_never_shows_its_password(gateway_process):
    result = gateway_process(
        env={"DATABASE_URL": f"postgresql://gw:{PASSWORD}@db:port/n2"}).run_to_exit()
    assert result.returncode != 0
    (line,) = error_lines(result.stdout + result.stderr)
    assert "--database-url: the port is not a number" in line
    assert PASSWORD not in result.stdout + result.stderr


def test_a_port_in_use_is_one_line_and_a_failure(gateway_process, database_url):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = gateway_process(port=port, database_url=database_url).run_to_exit()
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if "cannot listen" in line]
    assert len(lines) == 1 and "Address already in use" in lines[0]
    assert str(port) in lines[0]


@pytest_twisted.ensureDeferred
async def test_an_unreachable_database_is_retried_and_reported(gateway_process):
    url = f"postgresql://gw:{PASSWORD}@127.0.0.1:{free_port()}/n2"
    gateway = gateway_process(database_url=url).start()
    log = await gateway.wait_for_log("database unreachable", count=3, timeout=20)
    retries = [line for line in log.splitlines() if "database unreachable" in line]
    assert all("Connection refused" in line for line in retries)
    assert [line.split("retrying in ")[1] for line in retries[:3]] == ["0.5 s", "1.0 s", "2.0 s"]

    code, health = gateway.health()
    assert code == 503 and health["status"] == "degraded"
    assert health["database"]["kind"] == "external"
    assert "Connection refused" in health["database"]["error"]

    assert await gateway.terminate() == 0
    output = gateway.log_text()
    assert "Traceback" not in output
    assert PASSWORD not in output and PASSWORD not in json.dumps(health)
