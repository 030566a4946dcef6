"""``twistd n2gateway``: the command-line options and the service they build."""

from __future__ import annotations

import os

from twisted.python import usage

from n2gateway.config import OPTIONS, build_settings


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run the n2gateway realtime gateway. Every option can also be given by its "
        "environment variable (shown in brackets); an option wins over its variable.")
    optParameters = [
        [o.name, None, None, f"{o.help} [{o.env}]" + (f" (default: {o.default})" if o.default else "")]
        for o in OPTIONS
    ]

    def __init__(self) -> None:
        super().__init__()
        self["plugin"] = []

    def opt_plugin(self, module: str) -> None:
        """Also load the plugin in this module (repeatable) [N2GATEWAY_PLUGINS, comma list]."""
        self["plugin"].append(module)

    def postOptions(self) -> None:
        from twisted.internet import reactor

        from n2gateway.plugins import load_plugins

        self.settings = build_settings(self, os.environ, reactor)
        # twistd starts logging after this, with the observer factory named by its
        # own --logger option (an explicit --logger wins).
        if self.settings.log_format == "json" and self.parent is not None \
                and self.parent.get("logger", False) is None:
            self.parent["logger"] = "n2gateway.logs.json_observer"
        # Loaded here so that a plugin that cannot be imported is a usage error too.
        self.plugin_manager = load_plugins(self.settings.plugins, self.settings.disabled_plugins)


def makeService(options: Options):
    from twisted.internet import reactor

    from n2gateway.gateway import Gateway

    return Gateway(options.settings, options.plugin_manager, reactor)
