"""A bench-only plugin (``--plugin bench.cpython_gc``): puts CPython's garbage collector
defaults back once the gateway is ready (nothing frozen, young collections every 700
allocations), undoing ``n2gateway.collector``, so the broadcast bench can run the
gateway as it was before that, beside the current one in the same run."""

from __future__ import annotations

import gc

from twisted.application import service

from n2gateway.hookspecs import hookimpl

CPYTHON_THRESHOLDS = (700, 10, 10)


class Defaults(service.Service):
    def __init__(self, reactor) -> None:
        self.reactor = reactor

    def startService(self) -> None:
        super().startService()
        # Plugin services start just before the gateway settles its collector: undo
        # that on the next reactor turn.
        self.reactor.callLater(0, self.restore)

    def restore(self) -> None:
        gc.unfreeze()
        gc.set_threshold(*CPYTHON_THRESHOLDS)


@hookimpl
def n2gateway_services(context, register) -> None:
    register(Defaults(context.reactor))
