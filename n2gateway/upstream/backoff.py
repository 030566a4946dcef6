"""
Reconnect delays shared by every upstream session and channel rejoin.
"""

import random
from typing import Callable

from twisted.application.internet import backoffPolicy

INITIAL_DELAY = 2.0
MAX_DELAY = 60.0
FACTOR = 2.0

BackoffPolicy = Callable[[int], float]


def upstream_backoff(jitter: Callable[[], float] = random.random) -> BackoffPolicy:
    """
    Delay in seconds before retry ``n`` (0 for the first retry):
    ``min(2 s * 2**n, 60 s)`` plus ``jitter()``, so that many gateways cut off
    together do not come back in lockstep.
    """
    return backoffPolicy(
        initialDelay=INITIAL_DELAY, maxDelay=MAX_DELAY, factor=FACTOR, jitter=jitter
    )
