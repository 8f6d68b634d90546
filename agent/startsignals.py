"""Signals that reach ``edge-agent run`` while it starts, before its event loop takes them over.

Python's default for SIGTERM and SIGHUP is to end the process at once. systemd sends SIGTERM
for ``systemctl stop`` and SIGHUP for ``systemctl reload``, and either may come during the
second or two the agent needs to load its config and open the buffer. Until the runtime
installs its own handlers, SIGTERM and SIGINT stop the start cleanly (nothing has been polled
yet, so there is nothing to flush) and a SIGHUP is remembered: the reload runs once the agent
is up, so an edit made during the start is not missed.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

TAKEN = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class StopBeforeStart(BaseException):  # like KeyboardInterrupt: not an error
    """SIGTERM or SIGINT arrived before the agent was up. A BaseException, so no
    ``except Exception`` on the start path mistakes it for a failure."""

    def __init__(self, signum: int) -> None:
        self.signal_name = signal.Signals(signum).name
        super().__init__(self.signal_name)


class StartSignals:
    """Installed first thing in ``run``; the runtime's loop handlers replace it."""

    def __init__(self) -> None:
        self.reload_pending = False
        self._before: dict[int, Any] = {}

    def install(self) -> StartSignals:
        self._before = {sig: signal.getsignal(sig) for sig in TAKEN}
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, self._reload)
        return self

    def restore(self) -> None:
        """The handlers from before :meth:`install` (for a caller that goes on, e.g. a test)."""
        for sig, handler in self._before.items():
            signal.signal(sig, handler)

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        # a second stop while this one unwinds ends the process at once, as Python's default does
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        raise StopBeforeStart(signum)

    def _reload(self, _signum: int, _frame: FrameType | None) -> None:
        self.reload_pending = True
