"""The plugin manager: built-ins and third-party plugins found the same way.

Plugins come from the ``n2gateway`` entry-point group (the built-ins are declared
there in ``setup.cfg`` like any other package) and from ``--plugin module.path``.
``--disable-plugin name`` blocks one before it is loaded.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pluggy
from twisted.python import usage

from n2gateway import hookspecs
from n2gateway.db.migrations import CORE_SCHEMA, MigrationFolder


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
