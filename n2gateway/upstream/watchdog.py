"""
Drop a connection whose peer has gone quiet.
"""

from typing import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime


class InactivityWatchdog:
    """
    Calls ``on_silence`` once when ``touch`` has not been called for
    ``timeout`` seconds. Reset by every ``touch``; ``stop`` cancels it for good.
    """

    def __init__(
        self, clock: IReactorTime, timeout: float, on_silence: Callable[[], None]
    ) -> None:
        self._clock = clock
        self._timeout = timeout
        self._on_silence = on_silence
        self._call: IDelayedCall | None = None

    def touch(self) -> None:
        if self._call is not None and self._call.active():
            self._call.reset(self._timeout)
        else:
            self._call = self._clock.callLater(self._timeout, self._fire)

    def retime(self, timeout: float) -> None:
        """Expect a ``touch`` every ``timeout`` seconds from now on, counting from now."""
        self._timeout = timeout
        self.touch()

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _fire(self) -> None:
        self._call = None
        self._on_silence()
