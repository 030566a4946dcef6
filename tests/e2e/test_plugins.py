"""A third-party plugin, installed like any package, extends the gateway unchanged."""

from __future__ import annotations

import re

import json
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import psycopg2
import pytest
import pytest_twisted

from tests.support.plugin_venv import twistd_of, venv_with


PLUGIN = {
    "setup.cfg": """
        [metadata]
        name = n2gateway-hello
        version = 1.0

        [options]
        packages = n2gateway_hello
        include_package_data = True

        [options.package_data]
        n2gateway_hello = migrations/*.sql

        [options.entry_points]
        n2gateway =
            hello = n2gateway_hello
        """,
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        """,
    "n2gateway_hello/__init__.py": '''
        from pathlib import Path

        from n2gateway.hookspecs import hookimpl


        @hookimpl
        def n2gateway_migrations(register):
            register(Path(__file__).parent / "migrations")


        @hookimpl
        def n2gateway_routes(context, routes):
            async def hello(request):
                return {"hello": "world"}

            routes.add("GET", "/hello", hello)
        ''',
    "n2gateway_hello/migrations/0001_greetings.sql":
        "CREATE TABLE hello_greetings (word TEXT);",
}


def write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())


@pytest.fixture(scope="module")
def plugin_venv(tmp_path_factory) -> Path:
    """A new virtualenv seeing the project's packages, with the plugin pip-installed."""
    tmp = tmp_path_factory.mktemp("plugin")
    write_tree(tmp / "src", PLUGIN)
    return venv_with(tmp / "src", tmp / "venv")


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def migrations(database_url: str) -> list[tuple[str, str]]:
    with psycopg2.connect(database_url) as connection, connection.cursor() as cur:
        cur.execute("SELECT namespace, name FROM schema_migrations ORDER BY namespace, name")
        return cur.fetchall()


@pytest_twisted.ensureDeferred
async def test_an_installed_plugin_adds_its_route_and_migration(
        plugin_venv, gateway_process, database_url):
    gateway = gateway_process(database_url=database_url, twistd=twistd_of(plugin_venv)).start()
    await gateway.wait_healthy(timeout=60)
    assert get(gateway.url + "/hello") == (200, {"hello": "world"})
    assert ("hello", "0001_greetings.sql") in migrations(database_url)
    banner = re.search(r"plugins: (.*)$", gateway.log_text(), re.M)
    assert "hello" in banner.group(1).split(", ")
    assert await gateway.terminate() == 0


@pytest_twisted.ensureDeferred
async def test_disable_plugin_blocks_an_installed_plugin(
        plugin_venv, gateway_process, database_url):
    gateway = gateway_process("--disable-plugin", "hello", database_url=database_url,
                              twistd=twistd_of(plugin_venv)).start()
    await gateway.wait_healthy(timeout=60)
    assert get(gateway.url + "/hello")[0] == 404
    assert [m for m in migrations(database_url) if m[0] == "hello"] == []
    assert await gateway.terminate() == 0


@pytest_twisted.ensureDeferred
async def test_plugin_option_loads_a_module(gateway_process, database_url, tmp_path):
    write_tree(tmp_path / "mods", {"hello_by_path.py": PLUGIN["n2gateway_hello/__init__.py"]
                                   .replace('Path(__file__).parent / "migrations"',
                                            'Path(__file__).parent / "hello_migrations"'),
                                   "hello_migrations/0001_greetings.sql":
                                       PLUGIN["n2gateway_hello/migrations/0001_greetings.sql"]})
    gateway = gateway_process("--plugin", "hello_by_path", database_url=database_url,
                              env={"PYTHONPATH": str(tmp_path / "mods")}).start()
    await gateway.wait_healthy(timeout=60)
    assert get(gateway.url + "/hello") == (200, {"hello": "world"})
    assert ("hello_by_path", "0001_greetings.sql") in migrations(database_url)
    assert await gateway.terminate() == 0


def test_an_unimportable_plugin_is_one_line_and_a_failure(gateway_process):
    result = gateway_process("--plugin", "no_such_plugin.module").run_to_exit()
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if "no_such_plugin" in line]
    assert len(lines) == 1
    assert lines[0].endswith("--plugin no_such_plugin.module: cannot import it "
                             "(No module named 'no_such_plugin')")
