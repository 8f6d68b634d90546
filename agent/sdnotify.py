"""The systemd notify protocol, without libsystemd: a datagram to ``$NOTIFY_SOCKET``.

``READY=1`` once the first poll cycle is scheduled, ``WATCHDOG=1`` from the event loop at
half of ``$WATCHDOG_USEC`` (a hung loop stops them and systemd restarts the agent),
``STATUS=`` a one-line summary, ``RELOADING=1`` ... ``READY=1`` around a reload. Outside
systemd (no ``NOTIFY_SOCKET``) every call is a no-op and no task wakes up for it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

STATUS_EVERY = 10.0  # seconds between STATUS= checks when systemd asks for no watchdog


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_interval = _watchdog_interval(env)
        self._status = ""
        self._failed = False

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *fields: str) -> None:
        """Send ``fields`` (``KEY=value``) as one message; a failure is logged once."""
        if not self.address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            if not self._failed:
                log.warning("systemd notify socket %s: %s; not telling systemd", self.address.lstrip("\0"),
                            exc.strerror or exc)
            self._failed = True

    def ready(self, status: str) -> None:
        self._status = status
        self.send("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def status(self, status: str) -> None:
        """STATUS= only when the summary changed."""
        if status != self._status:
            self._status = status
            self.send(f"STATUS={status}")

    async def keep_alive(self, status: Callable[[], str]) -> None:
        """From the event loop: WATCHDOG=1 at half the watchdog period, STATUS= when it changes.
        Returns at once outside systemd (nothing to wake up for)."""
        if not self.enabled:
            return
        period = self.watchdog_interval / 2 if self.watchdog_interval else STATUS_EVERY
        while True:
            if self.watchdog_interval:
                self.send("WATCHDOG=1")
            self.status(status())
            await asyncio.sleep(period)


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Seconds systemd waits for WATCHDOG=1, when it asks this process for them."""
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (e.g. a wrapper that exec'd us would have our pid)
    return int(usec) / 1e6
