"""The HJ 212 uplink: one thread per platform, fed from the outbox like the MQTT uplinks.

Readings are folded into this uplink's store (minute/hour/day aggregates) whether or not
the platform is reachable, then acknowledged to the outbox: one uplink down holds nothing
back for the others, and the aggregates are right after an outage. A closed period becomes
a stored packet, kept until the platform answers 9014 with its QN; unanswered packets go
out oldest first (their own DataTime, a fresh QN), rate-limited, beside the real-time
2011 data. No answer within ``overtime`` → the same frame again, ``recount`` times; then
the link counts as down and is opened again with back-off.

The readings side (folding, closing periods) is :mod:`.readings_in`; this module is the
thread, the link and what goes over it.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from buffer.outbox import Outbox, OutboxReader

from ..delivery import TokenBucket
from ..logonce import LogsOnce
from ..reconnect import backoff_delay
from ..waker import Waker
from . import packet as pk
from .aggregate import Carried, Sample, carried_points, local, realtime_flag
from .config import Hj212Uplink
from .frame import BadCrc, FrameError
from .link import Link, LinkClosed
from .packet import Packet, PacketError
from .readings_in import ReadingsIn
from .requests import Commands, Settings
from .store import Hj212Store, store_path

log = logging.getLogger(__name__)

STORED_WINDOW = 10  # stored packets awaiting an answer at once
CONNECT_TIMEOUT = 5.0
HEALTHY_LINK = 10.0
LONG_SEGMENT = 1024  # the longest data segment some platforms take (the 2005 edition's limit)


@dataclass(slots=True)
class Hj212Stats:
    connected: bool = False
    connects: int = 0
    packets_sent: int = 0
    answered: int = 0
    resent: int = 0
    link_downs: int = 0
    bad_frames: int = 0
    late_readings: int = 0
    waiting: int = 0  # stored packets not yet answered
    last_error: str = ""
    connected_since: int = 0  # epoch ms (for status)
    last_ack: int = 0  # epoch ms of the last 9014 answer


@dataclass(slots=True)
class _Sent:
    segment: str
    sent: float
    tries: int
    packet_id: int | None


class Hj212UplinkWorker(ReadingsIn, LogsOnce):
    _once_log = log

    def __init__(self, name: str, cfg: Hj212Uplink, outbox: Outbox, data_dir: Path,
                 device_points: dict[str, list[str]], poll_intervals: dict[str, float], tz: ZoneInfo) -> None:
        self.name, self.cfg, self.outbox, self.tz = name, cfg, outbox, tz
        self.bit = outbox.uplink_bits[name]
        self.points = carried_points(cfg, device_points)
        self._by_device: dict[str, list[Carried]] = {}
        for p in self.points:
            self._by_device.setdefault(p.device, []).append(p)
        self.carried = frozenset(self._by_device)  # the devices this uplink reports (completeness)
        self.poll_intervals = poll_intervals
        self.store = Hj212Store(store_path(data_dir, name))
        self.settings = Settings.load(cfg, self.store)
        self.commands = Commands(name, cfg, self.settings, self.store, tz)
        self.stats = Hj212Stats(waiting=self.store.count_unanswered())
        self.link: Link | None = None
        self._latest: dict[str, tuple[int, list[Sample]]] = {}  # device → (ts ms, samples)
        self._inflight: dict[str, _Sent] = {}
        self._cursor = 0
        self._releases_seen = outbox.counters.clock_releases  # held readings given UTC times (buffer.clockfix)
        self._evictions_seen = -1
        self._attempt = 0
        self._next_connect = 0.0
        self._connected_at = 0.0
        self._next_rtd = 0.0
        self._bucket = TokenBucket(cfg.backlog_rate, 1.0, time.monotonic())  # stored packets re-sent
        self._last_qn = 0
        self._logged: set[str] = set()
        self._stop = threading.Event()
        self._waker = Waker()
        self._new_readings = True
        self._next_close: float | None = 0.0  # wall-clock end of the earliest open period (+ grace)
        self._thread: threading.Thread | None = None
        self._on_commit: Callable[[int], None] = lambda _seq: self._waker.poke()
        outbox.add_listener(self._on_commit)

    # -- life cycle -----------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"uplink-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.outbox.remove_listener(self._on_commit)
        self._stop.set()
        self._waker.poke()
        if self._thread is not None:
            self._thread.join(timeout)

    def publish_health(self, data: str) -> None:
        """The health topic is MQTT's; an environmental platform computes its own figures."""

    def update_info(self, info: object) -> None:
        """A reload kept this uplink: its settings and the devices it carries did not change."""

    def _run(self) -> None:
        reader = self.outbox.reader()
        failing = ""
        try:
            while not self._stop.is_set():
                try:
                    self._tick(reader)
                except Exception as exc:  # never let one bad moment end the uplink (a full disk: retried)
                    text = f"{type(exc).__name__}: {exc}"
                    self.stats.last_error = text
                    if text != failing:
                        log.exception("hj212 %s: %s; retrying every second (readings stay in the buffer)",
                                      self.name, text)
                    failing = text
                    if not isinstance(exc, sqlite3.Error):  # the store's trouble is no reason to drop the link
                        self._drop_link("unexpected error")
                    self._new_readings = True
                    self._stop.wait(1.0)
                    continue
                if failing:
                    log.info("hj212 %s: works again (after: %s)", self.name, failing)
                    failing = ""
        finally:
            self._drop_link("stopping")
            reader.close()
            self.store.close()
            self._waker.close()

    def _tick(self, reader: OutboxReader) -> None:
        if self._new_readings:
            self._new_readings = False
            self._ingest(reader)
        if self._next_close is not None and time.time() >= self._next_close:
            self._close_periods(time.time())
        if self.link is None and time.monotonic() >= self._next_connect:
            self._connect()
        try:
            if self.link is not None:
                self._send_due(time.time(), time.monotonic())
            poked, readable = self._waker.wait(self.link, self._sleep())
            self._new_readings = self._new_readings or poked
            if readable and self.link is not None:
                for item in self.link.receive():
                    self._received(item)
        except LinkClosed as exc:
            self._log_once(logging.WARNING, "lost", "hj212 %s: link to %s:%d lost: %s", self.name,
                           self.cfg.host, self.cfg.port, exc)
            self._drop_link(str(exc))

    def _sleep(self) -> float:
        """Seconds until the next thing to do without being poked (at most a minute)."""
        now, mono = time.time(), time.monotonic()
        due = [60.0]
        if self._next_close is not None:
            due.append(self._next_close - now)
        if self.link is None:
            due.append(self._next_connect - mono)
        else:
            if self.settings.realtime and self._latest:
                due.append(self._next_rtd - now)
            due += [s.sent + self.settings.overtime - mono for s in self._inflight.values()]
            stored = sum(1 for s in self._inflight.values() if s.packet_id is not None)
            ready_at = self._bucket.due(1, mono)
            if self.stats.waiting > stored and stored < STORED_WINDOW and ready_at is not None:
                due.append(ready_at - mono)
        return max(0.0, min(due))

    # -- the link --------------------------------------------------------------------------
    def _connect(self) -> None:
        cfg = self.cfg
        try:
            self.link = Link.open(cfg.host, cfg.port, CONNECT_TIMEOUT)
        except OSError as exc:
            self.stats.last_error = f"connect to {cfg.host}:{cfg.port}: {exc}"
            self._log_once(logging.WARNING, f"connect:{exc}", "hj212 %s: cannot connect to %s:%d: %s; retrying"
                           " with back-off", self.name, cfg.host, cfg.port, exc)
            self._schedule_reconnect(healthy=False)
            return
        self.stats.connects += 1
        self.stats.connected = True
        self.stats.connected_since = int(time.time() * 1000)
        self._connected_at = time.monotonic()
        self._logged.clear()
        self._inflight.clear()
        self._next_rtd = 0.0
        log.info("hj212 %s: connected to %s:%d (MN %s); %d stored packets to send", self.name, cfg.host,
                 cfg.port, cfg.mn, self.store.count_unanswered())

    def _drop_link(self, why: str) -> None:
        if self.link is None:
            return
        self.link.close()
        self.link = None
        self.stats.connected = False
        self._inflight.clear()
        self._schedule_reconnect(healthy=time.monotonic() - self._connected_at >= HEALTHY_LINK)
        log.debug("hj212 %s: link closed (%s)", self.name, why)

    def _schedule_reconnect(self, healthy: bool) -> None:
        """A link that lasted and was answered reconnects at once-ish; failures back off."""
        self._attempt = 0 if healthy and self._attempt == 0 else self._attempt + 1
        self._next_connect = time.monotonic() + backoff_delay(self._attempt, self.cfg.reconnect_min,
                                                              self.cfg.reconnect_max)

    # -- what arrives ------------------------------------------------------------------------
    def _received(self, item: str | FrameError) -> None:
        if isinstance(item, FrameError):
            self.stats.bad_frames += 1
            self._log_once(logging.WARNING, f"frame:{item.status}", "hj212 %s: ignored a frame from the platform"
                           " (%s: %s); the link stays up", self.name, item.status, item)
            if isinstance(item, BadCrc) and self.link is not None:
                for answer in self.commands.bad_crc(item.raw):
                    self.link.send(answer.segment())
            return
        try:
            pkt = pk.parse(item)
        except PacketError as exc:
            self.stats.bad_frames += 1
            self._log_once(logging.WARNING, "packet", "hj212 %s: ignored a data segment from the platform (%s)",
                           self.name, exc)
            return
        if pkt.cn == pk.DATA_ANSWER:
            self._answered(pkt.qn or pkt.fields().get("QN", ""))
            return
        assert self.link is not None
        for answer in self.commands.handle(pkt):
            self.link.send(answer.segment())

    def _answered(self, qn: str) -> None:
        sent = self._inflight.pop(qn, None)
        if sent is None:
            return
        self.stats.answered += 1
        self.stats.last_ack = int(time.time() * 1000)
        self._attempt = 0
        if sent.packet_id is not None:
            self.outbox.count_delivered(self.name, self.store.answered([sent.packet_id]))
            self.stats.waiting = max(0, self.stats.waiting - 1)

    # -- what goes out -----------------------------------------------------------------------
    def _fresh_qn(self) -> tuple[str, datetime]:
        """A QN never used before by this uplink (the clock's milliseconds, bumped on a tie)."""
        ms = max(int(time.time() * 1000), self._last_qn + 1)
        self._last_qn = ms
        at = datetime.fromtimestamp(ms / 1000, self.tz)
        return pk.qn(at), at

    def _send(self, pkt: Packet, packet_id: int | None) -> None:
        assert self.link is not None
        segment = pkt.segment()
        if len(segment) > LONG_SEGMENT:
            self._log_once(logging.WARNING, "long", "hj212 %s: a CN=%s data segment of %d characters; some platforms"
                           " take at most %d (the agent does not split packets)", self.name, pkt.cn, len(segment),
                           LONG_SEGMENT)
        self.link.send(segment)
        self.stats.packets_sent += 1
        if pkt.wants_answer and pkt.qn is not None:
            self._inflight[pkt.qn] = _Sent(segment, time.monotonic(), 1, packet_id)
        elif packet_id is not None:  # no answer asked for (ack: false): sent is done
            self.outbox.count_delivered(self.name, self.store.answered([packet_id]))
            self.stats.waiting = max(0, self.stats.waiting - 1)

    def _send_due(self, now: float, mono: float) -> None:
        if not self._check_overtime(mono):
            return
        rtd = self.settings.rtd_interval
        if self.settings.realtime and now >= self._next_rtd and self._latest:  # first one as soon as there is data
            self._next_rtd = (now // rtd + 1) * rtd
            self._send_realtime()
        self._bucket.refill(mono)
        waiting = [s.packet_id for s in self._inflight.values() if s.packet_id is not None]
        room = min(STORED_WINDOW - len(waiting), int(self._bucket.tokens), self.stats.waiting - len(waiting))
        if room <= 0:
            return
        cfg = self.cfg
        due = self.store.unanswered(room, waiting)
        if len(due) < room:  # fewer than counted: count again (the count only guides the wait)
            self.stats.waiting = self.store.count_unanswered()
        for stored in due:
            qn, at = self._fresh_qn()
            pkt = pk.aggregate(stored.cn, cfg.mn, cfg.pw, cfg.st, at, local(stored.start, self.tz), stored.values,
                               answer=cfg.ack)
            self._send(pkt.with_qn(qn), stored.id)
            self._bucket.take(1)

    def _send_realtime(self) -> None:
        taken = max(ts for ts, _ in self._latest.values())
        values: dict[str, tuple[float | None, str]] = {}
        for _ts, reading in self._latest.values():
            for s in reading:
                value = None if s.value is None else round(s.value * s.point.scale, 6)
                values[s.point.code] = (value, realtime_flag(s))
        qn, at = self._fresh_qn()
        cfg = self.cfg
        pkt = pk.realtime(cfg.mn, cfg.pw, cfg.st, at, datetime.fromtimestamp(taken // 1000, self.tz), values,
                          answer=cfg.ack)
        self._send(pkt.with_qn(qn), None)

    def _check_overtime(self, mono: float) -> bool:
        """Send again what was not answered in time; False when the link was given up."""
        assert self.link is not None
        for qn, sent in list(self._inflight.items()):
            if mono - sent.sent < self.settings.overtime:
                continue
            if sent.tries > self.settings.recount:
                self.stats.link_downs += 1
                log.warning("hj212 %s: no answer to QN %s after %d sends; the link counts as down, reconnecting",
                            self.name, qn, sent.tries)
                self._drop_link("no answer")
                return False
            self.link.send(sent.segment)
            sent.sent, sent.tries = mono, sent.tries + 1
            self.stats.resent += 1
        return True
