"""The garbage collector's settings of a gateway process, applied once it is ready.

With 1,000 clients, CPython's defaults gave a full collection of 70–110 ms every
10–25 s under broadcast load: it walks every object of the process, most of them
from start-up (modules, classes, plugins), which never become garbage. A client
whose event waits behind such a pause sees it in its latency. So, once start-up is
over, those objects are frozen (``gc.freeze``: no collection walks them again), and
young collections run every ``YOUNG_THRESHOLD`` allocations instead of 700: each
promotes what is alive at that moment (frames and reads in flight) to the older
generations, and those promotions are what lead to full collections, so fewer
young collections mean far fewer full ones. Cycles are still collected, later.
"""

from __future__ import annotations

import gc

#: Net allocations of container objects between two young collections (CPython: 700).
YOUNG_THRESHOLD = 20_000


def settle_after_start() -> None:
    """Collect what start-up left, freeze the rest and space out young collections."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, oldest)
