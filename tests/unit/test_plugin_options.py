"""Plugin options: declared by the plugins, parsed with the core's, listed by --help."""

from __future__ import annotations

import pytest
from twisted.python import usage

from n2gateway import tap
from n2gateway.hookspecs import hookimpl
from n2gateway.plugin_options import PluginOption
from n2gateway.plugins import declared_options, load_plugins, plugin_choice

PANCAKE = "ws://127.0.0.1:4000/socket/websocket"
TPOS = "ws://127.0.0.1:4001/socket.io/"


def parsed(args: list[str], monkeypatch, tmp_path, env: dict[str, str] | None = None):
    for name in ("N2GATEWAY_PLUGINS", "N2GATEWAY_DISABLE_PLUGINS", "N2GATEWAY_PANCAKE_URL",
                 "N2GATEWAY_TPOS_URL", "N2GATEWAY_TPOS_RENEWAL_MARGIN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    options = tap.Options()
    options.parseOptions(["--data-dir", str(tmp_path), *args])
    return options.settings.plugin_options


def test_pancake_and_tpos_urls_keep_their_options_and_variables(monkeypatch, tmp_path):
    given = parsed(["--pancake-url", PANCAKE, "--tpos-url", TPOS], monkeypatch, tmp_path)
    assert (given["pancake-url"], given["tpos-url"]) == (PANCAKE, TPOS)
    from_env = parsed([], monkeypatch, tmp_path,
                      {"N2GATEWAY_PANCAKE_URL": PANCAKE, "N2GATEWAY_TPOS_URL": TPOS})
    assert (from_env["pancake-url"], from_env["tpos-url"]) == (PANCAKE, TPOS)
    # The option wins over its variable.
    both = parsed(["--tpos-url=" + TPOS], monkeypatch, tmp_path,
                  {"N2GATEWAY_TPOS_URL": "ws://127.0.0.1:9/socket.io/"})
    assert both["tpos-url"] == TPOS


def test_defaults_are_parsed_like_given_values(monkeypatch, tmp_path):
    values = parsed([], monkeypatch, tmp_path)
    assert values["pancake-url"] == "wss://pancake.vn/socket/websocket"
    assert values["pancake-page-retry"] == 300.0
    assert values["tpos-renewal-margin"] == 300.0
    assert values["tpos-renewal-timeout"] == 30.0
    assert values["chat-gap-grace"] == 10.0
    assert values["chat-users-table"] == "users"


@pytest.mark.parametrize("args, env, says", [
    (["--pancake-url", "http://pancake.example/"], {},
     "--pancake-url / N2GATEWAY_PANCAKE_URL: expected a ws or wss URL with a host"),
    ([], {"N2GATEWAY_TPOS_RENEWAL_MARGIN": "soon"},
     "--tpos-renewal-margin / N2GATEWAY_TPOS_RENEWAL_MARGIN: expected a duration"),
    (["--chat-users-table", "users; drop table x"], {},
     "--chat-users-table / N2GATEWAY_CHAT_USERS_TABLE: "),
])
def test_a_bad_value_is_one_usage_line(args, env, says, monkeypatch, tmp_path):
    with pytest.raises(usage.UsageError) as caught:
        parsed(args, monkeypatch, tmp_path, env)
    assert str(caught.value).startswith(says) and "\n" not in str(caught.value)


def test_help_lists_the_loaded_plugins_options(monkeypatch, tmp_path, capsys):
    with pytest.raises(SystemExit):
        parsed(["--disable-plugin", "chat", "--help"], monkeypatch, tmp_path)
    shown = " ".join(capsys.readouterr().out.split())  # unwrapped
    assert "--pancake-page-retry=" in shown and "[N2GATEWAY_PANCAKE_PAGE_RETRY]" in shown
    assert "--tpos-url=" in shown and "(default: wss://rt-2.tpos.app/socket.io/)" in shown
    assert "--chat-users-table" not in shown


def test_a_disabled_plugin_takes_its_options_with_it(monkeypatch, tmp_path):
    with pytest.raises(usage.UsageError, match="tpos-url"):
        parsed(["--disable-plugin=tpos", "--tpos-url", TPOS], monkeypatch, tmp_path)
    with pytest.raises(usage.UsageError, match="tpos-url"):
        parsed(["--tpos-url", TPOS], monkeypatch, tmp_path, {"N2GATEWAY_DISABLE_PLUGINS": "tpos"})


def test_a_plugin_named_on_the_command_line_brings_its_options(monkeypatch, tmp_path):
    values = parsed(["--plugin", "tests.fakes.depth_plugin", "--depth-plugin-depth", "7"],
                    monkeypatch, tmp_path)
    assert values["depth-plugin-depth"] == 7
    assert parsed([], monkeypatch, tmp_path, {"N2GATEWAY_PLUGINS": "tests.fakes.depth_plugin",
                  "N2GATEWAY_DEPTH_PLUGIN_DEPTH": "9"})["depth-plugin-depth"] == 9
    with pytest.raises(usage.UsageError, match="--depth-plugin-depth"):
        parsed(["--depth-plugin-depth", "7"], monkeypatch, tmp_path)


def test_the_choice_of_plugins_is_read_before_the_parse() -> None:
    assert plugin_choice(["--plugin", "a.b", "--plugin=c", "--disable-plugin", "x, y"], {}) == (
        ("a.b", "c"), ("x", "y"))
    assert plugin_choice(["--", "--plugin", "a.b"], {"N2GATEWAY_PLUGINS": "e"}) == (("e",), ())


@pytest.mark.parametrize("words", [["--disable", "tpos"], ["--disable-plug=tpos"],
                                   ["--plug", "tests.fakes.depth_plugin"]])
def test_an_abbreviated_plugin_choice_is_refused_not_ignored(words, monkeypatch, tmp_path):
    # Twisted's parse takes a unique prefix: --disable tpos was accepted and TPOS loaded.
    with pytest.raises(usage.UsageError, match="in full"):
        parsed(words, monkeypatch, tmp_path)


class _Retention:
    @hookimpl
    def n2gateway_options(self, register):
        register(PluginOption("rows", "Clashes with the core's --retention-rows."))


def test_an_option_name_the_core_has_is_refused() -> None:
    pm = load_plugins(disabled=("chat", "pancake", "tpos"))
    pm.register(_Retention(), name="retention")
    with pytest.raises(usage.UsageError, match="--retention-rows exists already"):
        declared_options(pm, ["retention-rows"])
