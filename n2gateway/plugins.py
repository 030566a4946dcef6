"""The plugin manager: built-ins and third-party plugins found the same way.

Plugins come from the ``n2gateway`` entry-point group (the built-ins are declared
there in ``setup.cfg`` like any other package) and from ``--plugin module.path``.
``--disable-plugin name`` blocks one before it is loaded. Both are read from the
command line (and their variables) before the rest of it: the loaded plugins'
options (``n2gateway_options``) complete the option table it is parsed with.
"""

from __future__ import annotations

import importlib
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import pluggy
from twisted.python import usage

from n2gateway import hookspecs
from n2gateway.config import Settings, comma_list
from n2gateway.db.migrations import CORE_SCHEMA, MigrationFolder
from n2gateway.plugin_options import DeclaredOption, PluginOption, parse_plugin_options


def load_plugins(extra: tuple[str, ...] = (), disabled: tuple[str, ...] = ()) -> pluggy.PluginManager:
    """Build a plugin manager; each gateway (and each test) gets its own."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in disabled:
        pm.set_blocked(name)
    pm.load_setuptools_entrypoints(hookspecs.PROJECT)
    for path in extra:
        if pm.is_blocked(path) or pm.has_plugin(path):
            continue
        try:
            module = importlib.import_module(path)
        except ImportError as e:
            raise usage.UsageError(f"--plugin {path}: cannot import it ({e})") from None
        pm.register(module, name=path)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as e:
        raise usage.UsageError(f"plugin {e.plugin!r}: {e}") from None
    return pm


def migration_folders(pm: pluggy.PluginManager) -> list[MigrationFolder]:
    """The core's migration folder, then each plugin's, in the order they are applied."""
    folders = [MigrationFolder("core", CORE_SCHEMA)]
    for impl in pm.hook.n2gateway_migrations.get_hookimpls():
        impl.function(register=lambda path, name=impl.plugin_name:
                      folders.append(MigrationFolder(name, Path(path))))
    return folders


def plugin_names(pm: pluggy.PluginManager) -> list[str]:
    return sorted(name for name, plugin in pm.list_name_plugin() if plugin is not None)


def call_each(pm: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> dict[str, Any]:
    """Call one hook on every plugin separately; return the answers by plugin name."""
    answers = {}
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        answer = impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
        if answer is not None:
            answers[impl.plugin_name] = answer
    return answers


def plugin_choice(args: Sequence[str],
                  environ: Mapping[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The ``--plugin`` modules and ``--disable-plugin`` names of a command line (or,
    when it gives none, of ``N2GATEWAY_PLUGINS`` / ``N2GATEWAY_DISABLE_PLUGINS``),
    read before the command line is parsed; the parse checks the rest. The parse
    would take an abbreviation (``--disable``) that this reading cannot see, and the
    plugin would load all the same: one is a ``UsageError``."""
    given: dict[str, list[str]] = {"plugin": [], "disable-plugin": []}
    words = iter(args)
    for word in words:
        if word == "--":
            break
        name, equals, value = word[2:].partition("=")
        if not word.startswith("--") or not name:
            continue
        if name in given:
            given[name].append(value if equals else next(words, ""))
        for full in given:
            if full.startswith(name) and name != full:
                raise usage.UsageError(f"--{name}: write --{full} in full (plugins are "
                                       "chosen before the rest of the command line is read)")
    plugins = tuple(given["plugin"]) or comma_list(environ.get("N2GATEWAY_PLUGINS"))
    disabled = given["disable-plugin"][-1:] or [environ.get("N2GATEWAY_DISABLE_PLUGINS", "")]
    return plugins, comma_list(disabled[0])


def declared_options(pm: pluggy.PluginManager, taken: Sequence[str] = ()) -> list[DeclaredOption]:
    """Every loaded plugin's options, in plugin order; a name already in ``taken``
    (the core's options) or declared twice is a ``UsageError``."""
    declared: list[DeclaredOption] = []
    names = set(taken)
    for impl in pm.hook.n2gateway_options.get_hookimpls()[::-1]:
        def register(option: PluginOption, plugin: str = impl.plugin_name) -> None:
            item = DeclaredOption(plugin, option)
            if item.name in names:
                raise usage.UsageError(f"plugin {plugin!r}: option --{item.name} exists already")
            names.add(item.name)
            declared.append(item)

        impl.function(register=register)
    return declared


def with_plugin_defaults(settings: Settings, pm: pluggy.PluginManager) -> Settings:
    """``settings`` with each option of the loaded plugins that it lacks at its default
    (``Settings`` made by hand, as tests do, hold only the options they name)."""
    missing = [d for d in declared_options(pm) if d.name not in settings.plugin_options]
    if not missing:
        return settings
    return replace(settings, plugin_options=MappingProxyType(
        {**parse_plugin_options(missing, {}, {}), **settings.plugin_options}))
