"""A TCP fault proxy for tests: put it between a client and a server and break the path.

    proxy = FaultProxy(seed=7).start(listen_port=0, target_port=broker.port)
    ... client connects to 127.0.0.1:proxy.port ...
    proxy.cut()                 # close every live connection (both ends see it at once)
    proxy.partition(True)       # hold: connections are accepted, no byte passes either way
    proxy.partition(False)      #   ... and what was held flows again
    proxy.drop_bytes(True)      # live connections silently lose every byte from now on
    proxy.drop_bytes(0.01)      # each forwarded chunk has a 1 % chance to kill its direction
    proxy.drop_bytes(False)     # new connections are clean again
    proxy.stop()

Dropping never resumes mid-stream: once a direction of a connection starts losing bytes it
loses all of them until the connection is closed, like a dead NAT entry or a black-holed
route. (Passing bytes again after a gap would hand the peer a spliced stream that real
TCP never delivers, and an MQTT broker would accept a PUBLISH with a corrupt payload.)
The sockets stay open, so the client sees no error: only its own timeouts can tell.
"""

from __future__ import annotations

import contextlib
import random
import select
import socket
import threading
from dataclasses import dataclass, field

CHUNK = 65536
POLL = 0.05


@dataclass
class ProxyStats:
    accepted: int = 0
    refused: int = 0  # the target did not answer
    cuts: int = 0
    bytes_passed: int = 0
    bytes_dropped: int = 0


@dataclass
class _Link:
    client: socket.socket
    upstream: socket.socket
    closed: threading.Event = field(default_factory=threading.Event)
    dead: dict[str, bool] = field(default_factory=lambda: {"up": False, "down": False})

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for s in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()


class FaultProxy:
    def __init__(self, host: str = "127.0.0.1", seed: int = 0) -> None:
        self.host = host
        self.port = 0
        self.target_port = 0
        self.stats = ProxyStats()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._links: list[_Link] = []
        self._threads: list[threading.Thread] = []
        self._flowing = threading.Event()
        self._flowing.set()
        self._drop: float = 0.0
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None

    # -- the API ----------------------------------------------------------------------
    def start(self, listen_port: int = 0, target_port: int = 0) -> FaultProxy:
        """Listen on ``host:listen_port`` (0: a free port, see ``.port``), forward to ``target_port``."""
        self.target_port = target_port
        lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind((self.host, listen_port))
        lst.listen(64)
        lst.settimeout(POLL)
        self._listener = lst
        self.port = int(lst.getsockname()[1])
        self._spawn(self._accept_loop, "faultproxy-accept")
        return self

    def cut(self) -> int:
        """Close every live connection; return how many there were."""
        with self._lock:
            links, self._links = self._links, []
        for link in links:
            link.close()
        self.stats.cuts += len(links)
        return len(links)

    def partition(self, on: bool) -> None:
        """Hold every byte (new connections are still accepted) until ``partition(False)``."""
        if on:
            self._flowing.clear()
        else:
            self._flowing.set()

    def drop_bytes(self, on: bool | float) -> None:
        """``True``: every live or new connection silently loses all bytes from now on.
        A probability: each forwarded chunk has that chance to black-hole its direction.
        ``False``: new connections are clean (black-holed ones stay so until closed)."""
        if on is True:
            self._drop = 1.0
        elif on is False:
            self._drop = 0.0
        else:
            self._drop = float(on)
        if self._drop >= 1.0:
            with self._lock:
                for link in self._links:
                    link.dead["up"] = link.dead["down"] = True

    def stop(self) -> None:
        self._stopping.set()
        self._flowing.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        self.cut()
        for t in self._threads:
            t.join(2)

    def connections(self) -> int:
        with self._lock:
            return sum(1 for link in self._links if not link.closed.is_set())

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the machinery ----------------------------------------------------------------
    def _spawn(self, target: object, name: str, *args: object) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)  # type: ignore[arg-type]
        t.start()
        self._threads = [x for x in self._threads if x.is_alive()] + [t]

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection((self.host, self.target_port), timeout=2)
            except OSError:
                self.stats.refused += 1
                with contextlib.suppress(OSError):
                    client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.settimeout(None)  # sends block (a slow peer is not an error); reads poll
            link = _Link(client, upstream)
            if self._drop >= 1.0:
                link.dead["up"] = link.dead["down"] = True
            with self._lock:
                self._links.append(link)
            self.stats.accepted += 1
            self._spawn(self._pump, "faultproxy-up", link, client, upstream, "up")
            self._spawn(self._pump, "faultproxy-down", link, upstream, client, "down")

    def _pump(self, link: _Link, src: socket.socket, dst: socket.socket, direction: str) -> None:
        while not link.closed.is_set():
            if not self._flowing.is_set():  # partitioned: hold the bytes where they are
                self._flowing.wait(POLL)
                continue
            try:
                readable, _, _ = select.select([src], [], [], POLL)
                if not readable:
                    continue
                data = src.recv(CHUNK)
            except (OSError, ValueError):  # closed by cut()
                break
            if not data:
                break
            while not self._flowing.is_set() and not link.closed.is_set():  # partitioned meanwhile: hold it
                self._flowing.wait(POLL)
            if not link.dead[direction] and self._drop > 0 and self._rng.random() < self._drop:
                link.dead[direction] = True
            if link.dead[direction]:
                self.stats.bytes_dropped += len(data)
                continue
            try:
                dst.sendall(data)
            except OSError:
                break
            self.stats.bytes_passed += len(data)
        link.close()
        with self._lock:
            if link in self._links:
                self._links.remove(link)
