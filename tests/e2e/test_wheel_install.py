"""The gateway as an operator installs it: the built wheel in a new virtualenv.

Nothing of the checkout is on that virtualenv's path and every command runs from a
directory outside it, so the core's migrations, the built-in plugins and the twistd
drop-in can only come from the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

import psutil
import psycopg2
import pytest
import pytest_twisted
from n2gateway.db.embedded import import_pgserver
from tests.conftest import create_database
from tests.support.gateway import ROOT
from tests.support.ws import WsClient

JWT_SECRET = "wheel-jwt-secret-Xq81-never-logged"
#: Where each folder of the checkout is installed.
INSTALLED_AS = {"n2gateway": "n2gateway", "plugins": "n2gateway_plugins",
                "schema": "n2gateway/schema", "twisted/plugins": "twisted/plugins"}


class Installed:
    """A wheel built from this checkout, installed with its dependencies in a new venv."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # The operator's directory: a place of its own, not the checkout.
        self.cwd = root / "run"
        self.cwd.mkdir()
        self.bin = root / "venv" / "bin"
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("N2GATEWAY_") and k not in ("DATABASE_URL", "PYTHONPATH")}
        # A copy, because an in-tree build would ship whatever stale files build/ holds.
        source = shutil.copytree(ROOT, root / "source", ignore=shutil.ignore_patterns(
            ".*", "node_modules", "build", "dist", "*.egg-info", "__pycache__"))
        self.pip("wheel", "--no-deps", "--wheel-dir", str(root / "dist"), str(source))
        (self.wheel,) = (root / "dist").glob("n2gateway-*.whl")
        # No pip inside: the test's own pip installs into it (quicker, same result).
        self.run(sys.executable, "-m", "venv", "--without-pip", str(root / "venv"))
        self.pip("--python", str(self.bin / "python"), "install", "--no-compile", str(self.wheel))

    def pip(self, *args: str) -> None:
        self.run(sys.executable, "-m", "pip", "--quiet", *args)

    def run(self, *args: str, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(args, cwd=self.cwd, env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}{done.stderr}"
        return done.stdout

    def n2gateway(self, *args: str, env: dict[str, str] | None = None) -> str:
        return self.run(str(self.bin / "n2gateway"), *args, env=env)


@pytest.fixture(scope="module")
def installed():
    root = Path(tempfile.mkdtemp(prefix="n2gateway-wheel-"))
    try:
        yield Installed(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def checkout_files(folder: str) -> set[str]:
    """The files of a checkout folder, named as the wheel installs them."""
    base = ROOT / folder
    return {f"{INSTALLED_AS[folder]}/{p.relative_to(base)}" for p in base.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.name != "dropin.cache"}


def test_the_wheel_holds_every_file_of_the_core_the_plugins_and_the_migrations(installed):
    names = {n for n in zipfile.ZipFile(installed.wheel).namelist() if ".dist-info/" not in n}
    expected = set().union(*(checkout_files(folder) for folder in INSTALLED_AS))
    assert expected - names == set()
    # The project's own import names only: no top-level "plugins" or "schema".
    assert {n.split("/")[0] for n in names} == {"n2gateway", "n2gateway_plugins", "twisted"}
    assert {n for n in names if n.startswith("twisted/")} == {"twisted/plugins/n2gateway_dropin.py"}


def test_everything_is_imported_from_the_venv(installed):
    files = json.loads(installed.run(str(installed.bin / "python"), "-c", (
        "import json, n2gateway, n2gateway.schema, n2gateway_plugins.chat;"
        "from twisted.plugins import n2gateway_dropin as d;"
        "print(json.dumps([m.__file__ for m in (n2gateway, n2gateway.schema,"
        " n2gateway_plugins.chat, d)]))")))
    site = installed.root / "venv" / "lib"
    assert all(Path(f).is_relative_to(site) for f in files), files


def test_twistd_help_lists_the_gateway(installed):
    lines = installed.run(str(installed.bin / "twistd"), "--help").splitlines()
    assert any(line.split()[:1] == ["n2gateway"] for line in lines)


def alive(process: psutil.Process) -> bool:
    """Running, and not only a zombie waiting for its parent (init) to reap it."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def recorded_migrations(database_url: str) -> set[str]:
    with psycopg2.connect(database_url) as connection, connection.cursor() as cur:
        cur.execute("SELECT namespace || '/' || name FROM schema_migrations")
        return {row[0] for row in cur.fetchall()}


@pytest_twisted.ensureDeferred
async def test_the_installed_gateway_migrates_serves_and_stops_cleanly(installed, gateway_process):
    gateway = gateway_process("--jwt-secret", JWT_SECRET, tmp_path=installed.root,
                              twistd=[str(installed.bin / "twistd")], cwd=installed.cwd)
    gateway.env.pop("PYTHONPATH", None)
    pgdata = gateway.data_dir / "pgdata"
    expected = ({f"core/{p.name}" for p in (ROOT / "schema").glob("*.sql")}
                | {f"chat/{p.name}" for p in (ROOT / "plugins/chat/migrations").glob("*.sql")})
    import_pgserver()
    from pgserver.utils import PostmasterInfo
    try:
        gateway.start()
        health = await gateway.wait_healthy(timeout=60)
        assert health["database"] == {"kind": "embedded", "state": "up"}
        assert {"chat", "pancake", "tpos"} <= set(health["plugins"])
        server = PostmasterInfo.read_from_pgdata(pgdata)
        postmaster = psutil.Process(server.pid)
        # The gateway applied every migration, core and plugins, from the wheel.
        assert recorded_migrations(server.get_uri()) == expected
        assert all(f"applied migration {name}" in gateway.log_text() for name in expected)

        # The operator's commands, on a database of their own on that server.
        env = {"DATABASE_URL": create_database(server.get_uri())}
        migrated = installed.n2gateway("migrate", env=env)
        assert migrated.startswith(f"migrations: applied {len(expected)} (")
        assert recorded_migrations(env["DATABASE_URL"]) == expected
        assert installed.n2gateway("check", env=env).startswith("configuration: ok\ndatabase: ok")

        # A token minted by the installed command is accepted by the installed gateway.
        token = installed.n2gateway("token", "--sub", "42", "--rooms", "staff",
                                    env={"N2GATEWAY_JWT_SECRET": JWT_SECRET}).strip()
        client = await WsClient.connect(gateway.port, f"token={token}")
        assert client.frames[0]["userId"] == "42"
        assert (await client.subscribe("staff"))["type"] == "subscribed"
        request = urllib.request.Request(
            gateway.url + "/api/publish", method="POST", headers={"Content-Type": "application/json"},
            data=json.dumps({"rooms": ["staff"], "event": "wheel:hello", "payload": 1}).encode())
        urllib.request.urlopen(request, timeout=5).close()
        assert (await client.next("wheel:hello"))["payload"] == 1

        assert await gateway.terminate() == 0
        assert "Traceback" not in gateway.log_text()
        assert not alive(postmaster)
        assert not (pgdata / "postmaster.pid").exists()
    finally:
        gateway.ensure_stopped()
        left = PostmasterInfo.read_from_pgdata(pgdata)  # after a failure: stop what it left
        if left is not None and left.is_running():
            process = psutil.Process(left.pid)
            process.terminate()
            process.wait(30)
