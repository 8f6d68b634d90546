"""How an idle uplink sleeps: in ``select()`` on its own socket and a socketpair that another
thread writes a byte to (new readings committed, a reply ready, stop). No wake-ups of its own."""

from __future__ import annotations

import contextlib
import select
import socket
from typing import Protocol


class HasSocket(Protocol):
    sock: socket.socket


class Waker:
    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)

    @property
    def sock(self) -> socket.socket:
        """The end to ``select()`` on beside the uplink's own socket."""
        return self._r

    def poke(self) -> None:
        """Interrupt a sleep (thread-safe)."""
        with contextlib.suppress(OSError):  # full: a wake-up is already pending
            self._w.send(b"\0")

    def drain(self) -> None:
        """Take the pokes that woke the sleeper."""
        with contextlib.suppress(OSError):
            while self._r.recv(4096):
                pass

    def wait(self, link: HasSocket | None, timeout: float) -> tuple[bool, bool]:
        """(poked, link readable) after at most ``timeout`` seconds."""
        watched = [self._r] if link is None else [self._r, link.sock]
        ready, _, _ = select.select(watched, [], [], max(0.0, timeout))
        poked = self._r in ready
        if poked:
            self.drain()
        return poked, link is not None and link.sock in ready

    def close(self) -> None:
        self._r.close()
        self._w.close()
