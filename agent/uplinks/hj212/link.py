"""One TCP connection to an environmental platform: frames out, data segments in."""

from __future__ import annotations

import contextlib
import socket

from .frame import FrameError, FrameReader, encode

SEND_TIMEOUT = 10.0


class LinkClosed(ConnectionError):
    """The platform closed the connection, or it broke."""


class Link:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = FrameReader()
        self.frames_out = 0
        self.bytes_out = 0

    @classmethod
    def open(cls, host: str, port: int, timeout: float) -> Link:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.settimeout(SEND_TIMEOUT)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return cls(sock)

    def send(self, segment: str) -> None:
        frame = encode(segment)
        try:
            self.sock.sendall(frame)
        except OSError as exc:
            raise LinkClosed(f"send failed: {exc}") from exc
        self.frames_out += 1
        self.bytes_out += len(frame)

    def receive(self) -> list[str | FrameError]:
        """Data segments (and bad stretches) in what arrived; call when the socket is readable."""
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return []
        except OSError as exc:
            raise LinkClosed(f"receive failed: {exc}") from exc
        if not data:
            raise LinkClosed("closed by the platform")
        return self.reader.feed(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
