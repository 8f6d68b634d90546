"""A platform to test against: listens like an environmental platform, checks each
frame's length and CRC, answers 9014 to data packets that ask for it, records (and can
print) every decoded packet, and pulls history (2051/2061/2031 + BeginTime/EndTime).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from . import packet as pk
from .frame import FrameError, FrameReader, encode
from .packet import Packet, PacketError

ANSWERS = {pk.DATA_ANSWER, pk.REQUEST_ANSWER, pk.EXECUTION_RESULT, "9013"}


@dataclass(frozen=True, slots=True)
class Received:
    at: float  # time.time() on arrival
    packet: Packet


class Hj212Platform:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, answer: bool = True,
                 show: Callable[[str], None] | None = None, mn: str = "", pw: str = "123456") -> None:
        self.answer = answer
        self.show = show
        self.mn, self.pw = mn, pw
        self.received: list[Received] = []
        self.bad: list[FrameError] = []
        self.stream = bytearray()  # every byte received, as it came (for checks of the frames themselves)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._server = socket.create_server((host, port), reuse_port=False)
        self._server.settimeout(0.2)  # accept() wakes up to see a stop
        self.port = int(self._server.getsockname()[1])
        self._clients: list[socket.socket] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> Hj212Platform:
        t = threading.Thread(target=self._accept, name="hj212-platform", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._server.close()
        self.disconnect()
        for t in self._threads:
            t.join(2)

    def disconnect(self) -> None:
        """Close every client connection (the server keeps listening)."""
        with self._lock:
            clients, self._clients = self._clients, []
        for c in clients:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    @property
    def connected(self) -> bool:
        with self._lock:
            return bool(self._clients)

    def packets(self, cn: str | None = None) -> list[Packet]:
        with self._lock:
            return [r.packet for r in self.received if cn is None or r.packet.cn == cn]

    # -- the wire -----------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, addr = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self._lock:
                self._clients.append(conn)
            if self.show:
                self.show(f"# connection from {addr[0]}:{addr[1]}")
            t = threading.Thread(target=self._serve, args=(conn,), name="hj212-platform-client", daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn: socket.socket) -> None:
        reader = FrameReader()
        try:
            while not self._stop.is_set():
                data = conn.recv(65536)
                if not data:
                    break
                with self._lock:
                    self.stream += data
                for item in reader.feed(data):
                    self._handle(conn, item)
        except OSError:
            pass
        finally:
            with self._lock:
                if conn in self._clients:
                    self._clients.remove(conn)
            conn.close()
            if self.show:
                self.show("# connection closed")

    def _handle(self, conn: socket.socket, item: str | FrameError) -> None:
        if isinstance(item, FrameError):
            with self._lock:
                self.bad.append(item)
            if self.show:
                self.show(f"! bad frame ({item.status}): {item}")
            return
        try:
            pkt = pk.parse(item)
        except PacketError as exc:
            if self.show:
                self.show(f"! bad data segment ({exc}): {item}")
            return
        with self._changed:
            self.received.append(Received(time.time(), pkt))
            self._changed.notify_all()
        if self.show:
            self.show(item)
        if self.answer and pkt.wants_answer and pkt.cn not in ANSWERS:
            with contextlib.suppress(OSError):
                conn.sendall(encode(pk.answer_to(pkt, pk.DATA_ANSWER).segment()))

    # -- asking the logger ------------------------------------------------------------------
    def send_raw(self, data: bytes) -> None:
        """Bytes to every connected logger, as they are (garbage, bad frames, ...)."""
        with self._lock:
            clients = list(self._clients)
        for c in clients:
            with contextlib.suppress(OSError):
                c.sendall(data)

    def request(self, cn: str, timeout: float = 10.0, **fields: str) -> list[Packet]:
        """Send request ``cn`` (Flag A) and wait for its 9012 or 9013 (or a 9011 refusing it);
        every packet with its QN."""
        qn = pk.qn(datetime.now())
        with self._lock:  # the logger's MN: as given, else as it introduced itself
            mn = self.mn or next((r.packet.mn for r in reversed(self.received)), "")
        req = Packet(cn, mn, self.pw, "32", pk.VERSION_2017 | pk.FLAG_ANSWER, qn,
                     [list(fields.items())] if fields else [])
        with self._changed:
            first = len(self.received)
        self.send_raw(encode(req.segment()))
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                got = [r.packet for r in self.received[first:] if r.packet.qn == qn]
                if any(p.cn in (pk.EXECUTION_RESULT, "9013") or (
                        p.cn == pk.REQUEST_ANSWER and p.fields().get("QnRtn") != pk.QN_RTN_READY) for p in got):
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no 9012 to CN={cn} QN={qn} within {timeout:g}s")
                self._changed.wait(left)

    def pull(self, cn: str, begin: str, end: str, timeout: float = 10.0) -> list[Packet]:
        """A history pull: the records the logger sends between its 9011 and 9012."""
        got = self.request(cn, timeout, BeginTime=begin, EndTime=end)
        return [p for p in got if p.cn == cn]
