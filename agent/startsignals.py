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

    def install(self) -> StartSignals:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, self._reload)
        return self

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        raise StopBeforeStart(signum)

    def _reload(self, _signum: int, _frame: FrameType | None) -> None:
        self.reload_pending = True
