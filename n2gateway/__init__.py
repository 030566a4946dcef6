"""n2gateway: a realtime gateway on Twisted."""

__version__ = "0.1.0"
