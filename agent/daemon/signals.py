"""Stop signals of a daemon: the first SIGTERM/SIGINT is a warm stop, the second a cold one.

As in rq and huey, the handlers only set flags; the daemon's main loop reads them and does
the logging, the waiting and the killing, where that is safe. The first signal's handler
swaps itself for the cold-stop handler, so a second signal escalates.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

#: Signals that ask a daemon to stop.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """Flags set by stop signals (or by :meth:`request_stop`, for code and tests).

    Attributes:
        warm: stop claiming, let the running task(s) finish, then exit.
        cold: abort the running task(s) and exit.
        received: the signal numbers received, in order.
    """

    def __init__(self) -> None:
        self.warm = False
        self.cold = False
        self.received: list[int] = []
        self._previous: dict[int, Any] = {}

    @property
    def stopping(self) -> bool:
        return self.warm or self.cold

    def install(self) -> None:
        """Install the warm-stop handler (main thread only)."""
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_warm_signal)

    def restore(self) -> None:
        """Put back the handlers that were there before :meth:`install`."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def request_stop(self) -> None:
        """Ask for a warm stop; a second call asks for a cold one."""
        if self.warm:
            self.cold = True
        self.warm = True

    def _on_warm_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signum)
        self.warm = True
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_cold_signal)

    def _on_cold_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signum)
        self.cold = True
