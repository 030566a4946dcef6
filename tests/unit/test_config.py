"""Settings: every option from its variable or its option (the option wins), and a
bad value is one ``UsageError`` line that never echoes a password or a key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from twisted.internet.task import Clock
from twisted.python import usage

from n2gateway import tap
from n2gateway.config import OPTIONS, Settings, build_settings

PASSWORD = "Sup3rS3cretPw"

# A value for each option that passes validation (data-dir is filled in per test).
GOOD_VALUES = {
    "http": "tcp:9001:interface=127.0.0.1",
    "database-url": f"postgresql://gw:{PASSWORD}@db.example:5433/n2",
    "admin-token": "admin-token-of-the-tests",
    "jwt-secret": "jwt-secret-of-the-tests",
    "credentials-key": Fernet.generate_key().decode(),
    "disable-plugin": "tpos, chat",
    "retention": "30m",
    "retention-rows": "500",
    "poll-interval": "2.5",
    "recovery-ttl": "5m",
    "token-warning": "3d",
    "max-subscriptions": "50",
    "node-id": "gw-1",
    "log-format": "json",
    "cors-origins": "https://app.example, http://localhost:3000",
}

# A second good value, for the variable when the option also gives one.
OTHER_VALUES = {
    "database-url": "postgresql://env@envhost/db",
    "http": "tcp:9002",
    "credentials-key": Fernet.generate_key().decode(),
    "disable-plugin": "pancake",
    "retention": "2h",
    "retention-rows": "7",
    "poll-interval": "9",
    "recovery-ttl": "45s",
    "cors-origins": "https://other.example",
    "token-warning": "12h",
    "max-subscriptions": "3",
}

FIELDS = {
    "http": "http", "database-url": "database_url", "data-dir": "data_dir",
    "admin-token": "admin_token", "jwt-secret": "jwt_secret", "credentials-key": "credentials_key",
    "disable-plugin": "disabled_plugins", "retention": "retention",
    "retention-rows": "retention_rows", "poll-interval": "poll_interval",
    "recovery-ttl": "recovery_ttl", "token-warning": "token_warning", "node-id": "node_id",
    "log-format": "log_format", "max-subscriptions": "max_subscriptions",
    "cors-origins": "cors_origins",
}


def settings(options=None, env=None) -> Settings:
    return build_settings(options or {}, env or {}, Clock())


def expected(name: str, value: str):
    if name == "data-dir":
        return Path(value)
    if name in ("disable-plugin", "cors-origins"):
        return tuple(v.strip() for v in value.split(","))
    if name in ("retention", "recovery-ttl", "token-warning"):
        return {"30m": 1800.0, "2h": 7200.0, "5m": 300.0, "45s": 45.0, "3d": 259200.0,
                "12h": 43200.0}[value]
    if name in ("retention-rows", "max-subscriptions"):
        return int(value)
    if name == "poll-interval":
        return float(value)
    return value


def test_every_option_is_covered_here():
    assert {o.name for o in OPTIONS} == set(FIELDS)


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.name)
def test_each_option_comes_from_its_environment_variable(option, tmp_path):
    value = str(tmp_path / "d") if option.name == "data-dir" else GOOD_VALUES[option.name]
    s = settings({}, {option.env: value, "N2GATEWAY_DATA_DIR": str(tmp_path)}
                 if option.name != "data-dir" else {option.env: value})
    assert getattr(s, FIELDS[option.name]) == expected(option.name, value)


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.name)
def test_the_option_wins_over_its_variable(option, tmp_path):
    if option.name == "data-dir":
        env_value, opt_value = str(tmp_path / "env"), str(tmp_path / "opt")
    else:
        env_value = OTHER_VALUES.get(option.name, "from-env-long-enough")
        opt_value = GOOD_VALUES[option.name]
    options = {option.name: opt_value}
    if option.name != "data-dir":
        options["data-dir"] = str(tmp_path)
    s = settings(options, {option.env: env_value})
    assert getattr(s, FIELDS[option.name]) == expected(option.name, opt_value)


def test_defaults_without_options_or_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = settings()
    assert s.http == "tcp:8080"
    assert s.database_url is None and s.database_kind == "embedded"
    assert s.data_dir == Path(".n2gateway") and (tmp_path / ".n2gateway").is_dir()
    assert s.admin_token is None and s.jwt_secret is None and s.credentials_key is None
    assert s.plugins == () and s.disabled_plugins == ()
    assert (s.retention, s.retention_rows, s.poll_interval) == (86400.0, 1_000_000, 1.0)
    assert s.recovery_ttl == 120.0
    assert s.cors_origins == ()
    assert s.max_subscriptions == 1000


@pytest.mark.parametrize("value", ["app.example", "https://app.example/path", "ftp://x.example"])
def test_cors_origins_must_be_origins(value, tmp_path):
    message = usage_error({"cors-origins": value, "data-dir": str(tmp_path)})
    assert message.startswith(f"--cors-origins: {value!r} is not an origin like")


@pytest.mark.parametrize("option, value, says", [
    ("retention", "soon", "expected a duration like 90s, 30m or 24h"),
    ("retention", "0s", "must be more than zero"),
    ("retention", "-5m", "must be more than zero"),
    ("poll-interval", "1w", "expected a duration like 90s, 30m or 24h"),
    ("recovery-ttl", "0", "must be more than zero"),
    ("retention-rows", "0", "expected a positive whole number"),
    ("retention-rows", "1e6", "expected a positive whole number"),
    ("max-subscriptions", "0", "expected a positive whole number"),
])
def test_bad_retention_and_poll_values_are_one_line(option, value, says, tmp_path):
    message = usage_error({option: value, "data-dir": str(tmp_path)})
    assert message == f"--{option}: {says}"


def test_port_is_the_fallback_for_http(tmp_path):
    env = {"PORT": "10000", "N2GATEWAY_DATA_DIR": str(tmp_path)}
    assert settings({}, env).http == "tcp:10000"
    assert settings({}, {**env, "N2GATEWAY_HTTP": "tcp:9003"}).http == "tcp:9003"
    assert settings({"http": "tcp:9004"}, env).http == "tcp:9004"


def test_plugins_come_from_the_option_or_the_comma_list(tmp_path):
    env = {"N2GATEWAY_PLUGINS": " a.b , c ,", "N2GATEWAY_DATA_DIR": str(tmp_path)}
    assert settings({}, env).plugins == ("a.b", "c")
    assert settings({"plugin": ["x.y"]}, env).plugins == ("x.y",)


def test_command_line_options_reach_the_settings(tmp_path, monkeypatch):
    """Through ``twistd``'s own parser: dashed names, repeatable --plugin."""
    for option in OPTIONS:
        monkeypatch.delenv(option.env, raising=False)
    monkeypatch.setenv("N2GATEWAY_ADMIN_TOKEN", "from-env-long-enough")
    options = tap.Options()
    options.parseOptions([
        "--http", "tcp:9005", "--data-dir", str(tmp_path), "--admin-token", "from-opt-long-enough",
        "--database-url", GOOD_VALUES["database-url"], "--disable-plugin", "tpos"])
    s = options.settings
    assert (s.http, s.admin_token, s.database_url, s.data_dir, s.disabled_plugins) == (
        "tcp:9005", "from-opt-long-enough", GOOD_VALUES["database-url"], tmp_path, ("tpos",))


def usage_error(options=None, env=None) -> str:
    with pytest.raises(usage.UsageError) as caught:
        settings(options, env)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("endpoint", ["nonsense:1", "tcp:notaport", "tcp:8080:colour=blue"])
def test_a_bad_endpoint_is_one_usage_line(endpoint, tmp_path):
    message = usage_error({"http": endpoint, "data-dir": str(tmp_path)})
    assert message.startswith("--http: bad endpoint")


@pytest.mark.parametrize("url, says", [
    (f"mysql://gw:{PASSWORD}@db/n2", "expected postgresql://"),
    (f"postgresql://gw:{PASSWORD}@db:fivefour/n2", "port is not a number"),
    (f"postgresql://gw:{PASSWORD}@/n2", "no host"),
    (f"gw:{PASSWORD}@db/n2", "expected postgresql://"),
])
def test_a_malformed_database_url_never_echoes_the_password(url, says, tmp_path):
    for source in ({"options": {"database-url": url}}, {"env": {"DATABASE_URL": url}}):
        message = usage_error({"data-dir": str(tmp_path), **source.get("options", {})},
                              source.get("env"))
        assert message.startswith("--database-url:") and says in message
        assert PASSWORD not in message


def test_a_socket_database_url_is_accepted(tmp_path):
    url = f"postgresql://postgres:{PASSWORD}@/db?host=/run/postgresql"
    s = settings({"database-url": url, "data-dir": str(tmp_path)})
    assert s.database_url == url and PASSWORD not in s.describe_database()


def test_the_database_banner_never_shows_the_password(tmp_path):
    s = settings({"database-url": GOOD_VALUES["database-url"], "data-dir": str(tmp_path)})
    assert s.describe_database() == "PostgreSQL at db.example:5433/n2"


def test_a_data_dir_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    message = usage_error({"data-dir": str(blocker / "data")})
    assert message.startswith(f"--data-dir: cannot create {blocker / 'data'}")


def test_a_data_dir_without_access(tmp_path, monkeypatch):
    # Root reads every directory, so the refusal is simulated where it is decided.
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == tmp_path
                        else real_access(path, mode))
    assert usage_error({"data-dir": str(tmp_path)}) == (
        f"--data-dir: {tmp_path} is not readable and writable")


@pytest.mark.parametrize("key", ["short", "x" * 44, Fernet.generate_key().decode()[:-2]])
def test_a_bad_fernet_key_is_one_line_without_the_key(key, tmp_path):
    message = usage_error({"credentials-key": key, "data-dir": str(tmp_path)})
    assert message.startswith("--credentials-key: not a Fernet key")
    assert key not in message


@pytest.mark.parametrize("name", ["admin-token", "jwt-secret"])
@pytest.mark.parametrize("value, says", [("", "empty"), ("fifteen-bytes!!", "too short"),
                                         ("ééééééé", "too short")])  # 14 bytes, 7 characters
def test_an_empty_or_short_secret_is_one_usage_line_that_never_repeats_it(
        name, value, says, tmp_path):
    env = next(o.env for o in OPTIONS if o.name == name)
    for source in ({"options": {name: value}}, {"env": {env: value}}):
        message = usage_error({"data-dir": str(tmp_path), **source.get("options", {})},
                              source.get("env"))
        assert message.startswith(f"--{name}: {says}; use at least 16 bytes")
        assert not value or value not in message


def test_a_secret_of_sixteen_bytes_is_enough(tmp_path):
    s = settings({"admin-token": "x" * 16, "jwt-secret": "y" * 16, "data-dir": str(tmp_path)})
    assert (s.admin_token, s.jwt_secret) == ("x" * 16, "y" * 16)


def test_settings_are_frozen(tmp_path):
    s = settings({"data-dir": str(tmp_path)})
    with pytest.raises(AttributeError):
        s.http = "tcp:1"  # type: ignore[misc]
