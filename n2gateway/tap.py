"""``twistd n2gateway``: the command-line options and the service they build."""

from __future__ import annotations

import os
import sys

from twisted.python import usage

from n2gateway import __version__
from n2gateway.config import OPTIONS, Option, build_settings
from n2gateway.plugin_options import DeclaredOption


def _doc(option: Option | DeclaredOption) -> str:
    return f"{option.help} [{option.env}]" + (
        f" (default: {option.default})" if option.default else "")


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run the n2gateway realtime gateway. Every option can also be given by its "
        "environment variable (shown in brackets); an option wins over its variable.")
    optParameters = [[o.name, None, None, _doc(o)] for o in OPTIONS]

    def __init__(self) -> None:
        super().__init__()
        self["plugin"] = []
        self.plugin_options: list[DeclaredOption] = []

    def parseOptions(self, options: list[str] | None = None) -> None:
        # The plugins chosen on this command line declare options of their own:
        # load them first, so that --help lists those options and the parse knows them.
        from n2gateway.plugins import declared_options, load_plugins, plugin_choice

        args = sys.argv[1:] if options is None else options
        self.plugin_manager = load_plugins(*plugin_choice(args, os.environ))
        self.plugin_options = declared_options(
            self.plugin_manager, [o.name for o in OPTIONS] + ["plugin", "version", "help"])
        for declared in self.plugin_options:
            self.longOpt.append(declared.name + "=")
            self.docs[declared.name] = _doc(declared)
            self.synonyms[declared.name] = declared.name
            self._dispatch[declared.name] = usage.CoerceParameter(self, str)
            self[declared.name] = None
        super().parseOptions(options)

    def opt_version(self) -> None:
        """Print the gateway's version (and Twisted's) and exit."""
        from twisted import __version__ as twisted_version

        sys.stdout.write(f"n2gateway {__version__} (Twisted {twisted_version})\n")
        raise SystemExit(0)

    def opt_plugin(self, module: str) -> None:
        """Also load the plugin in this module (repeatable) [N2GATEWAY_PLUGINS, comma list]."""
        self["plugin"].append(module)

    def postOptions(self) -> None:
        from twisted.internet import reactor

        self.settings = build_settings(self, os.environ, reactor, self.plugin_options)
        # twistd starts logging after this, with the observer factory named by its
        # own --logger option (an explicit --logger wins).
        if self.settings.log_format == "json" and self.parent is not None \
                and self.parent.get("logger", False) is None:
            self.parent["logger"] = "n2gateway.logs.json_observer"


def makeService(options: Options):
    from twisted.internet import reactor

    from n2gateway.collector import settle_after_start
    from n2gateway.gateway import Gateway

    return Gateway(options.settings, options.plugin_manager, reactor, settle_after_start)
