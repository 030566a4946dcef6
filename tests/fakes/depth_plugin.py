"""A third-party plugin for ``--plugin tests.fakes.depth_plugin``: one option of its own."""

from n2gateway.hookspecs import hookimpl
from n2gateway.plugin_options import PluginOption, positive_int


@hookimpl
def n2gateway_options(register):
    register(PluginOption("depth", "How deep it looks.", "3", positive_int))
