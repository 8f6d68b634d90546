"""An MQTT uplink: reads the outbox, publishes with QoS 1, acknowledges on PUBACK.

The SQLite outbox is the only queue. Each uplink (one platform: its broker, credentials,
topics, format and delivery state) runs one thread that drives its own paho client, so a
platform that is down or slow never delays another. Readings become messages in two
small ready queues (live first, then backlog); at most ``max_inflight`` messages (or the
broker's v5 Receive Maximum) are handed to paho, and a message's readings are
acknowledged to the outbox only on a success PUBACK. A refused publish (v5 reason code
>= 0x80, e.g. 135 "not authorized") keeps its readings buffered and blocks that topic
for ``refused_retry`` (see refusals.py). paho never retransmits on a live connection, so
when the oldest unacknowledged publish is older than ``ack_timeout`` the uplink drops
the connection and starts a fresh session, which re-reads everything pending.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from buffer.outbox import ALARM_STATUS, Outbox, OutboxReader, Row

from ..alarms.config import ReportPoint
from ..config import MqttUplink
from . import payload
from .connection import Connection, Stopping
from .onchange import ChangeFilter
from .refusals import RefusalGate
from .security import UplinkError, read_secret, tls_context
from .topics import TopicMap

log = logging.getLogger(__name__)

HEALTHY_SESSION = 10.0  # a session that lasted this long resets the reconnect back-off
PACKET_TOO_LARGE = 0x95
# no PUBACK for this long (or 4 round trips, if longer): hand paho nothing more until one comes.
# A link that died silently then holds few readings that the next session sends again.
HOLD_AFTER = 0.1
SET_ASIDE_AFTER = 3  # sessions lost in a row with one oversize reading in flight before it is set aside
STOP_GRACE = 2.0  # on stop, wait this long for outstanding PUBACKs
_NO_SEQS: list[int] = []


@dataclass(slots=True)
class UplinkStats:
    connected: bool = False
    connects: int = 0
    messages: int = 0
    readings_acked: int = 0
    refused: int = 0
    stalls: int = 0
    errors: int = 0
    size_cap: int = 0  # learned: the largest payload this broker is sent (0: no cap learned)
    set_aside: int = 0  # readings too large for the broker even alone
    last_error: str = ""


@dataclass(slots=True)
class _Msg:
    kind: str  # "readings" | "alarm" | "eviction" | "other"
    topic: str
    data: bytes | str
    seqs: list[int]
    retain: bool = False
    sent: float = 0.0
    eviction_id: int = 0


@dataclass(frozen=True, slots=True)
class GatewayInfo:
    gateway: str
    version: str
    config_hash: str
    started_ms: int
    devices: dict[str, dict[str, Any]]  # device id → metadata (profile, units, location...)


def backoff_delay(attempt: int, lo: float, hi: float, rand: Callable[[], float] = random.random) -> float:
    """Exponential back-off with jitter: in [cap/2, cap], cap = min(hi, lo * 2**attempt).

    The jitter keeps a fleet of gateways from reconnecting in step after a broker restart.
    """
    cap = min(hi, lo * 2 ** min(attempt, 30))
    return cap / 2 + rand() * cap / 2


def _by_device(rows: Sequence[Row]) -> dict[str, list[Row]]:
    groups: dict[str, list[Row]] = {}
    for r in rows:
        group = groups.get(r.device)
        if group is None:
            groups[r.device] = [r]
        else:
            group.append(r)
    return groups


class AlarmBoard(Protocol):
    """What an uplink needs of the alarm engine: the retained set, as (version, payload)."""

    published: tuple[int, str]


class MqttUplinkWorker:
    """One platform: its broker, credentials, topics, format and delivery state."""

    def __init__(self, name: str, cfg: MqttUplink, info: GatewayInfo, outbox: Outbox,
                 base_dir: Path, alarms: AlarmBoard | None = None,
                 report: Mapping[str, Mapping[str, ReportPoint]] | None = None) -> None:
        self.name = name
        self.cfg = cfg
        self.info = info
        self.outbox = outbox
        self.base_dir = base_dir
        self.bit = outbox.uplink_bits[name]
        self.stats = UplinkStats()
        self.topics = TopicMap(cfg, info.gateway, info.devices)
        self.gate = RefusalGate(cfg.refused_retry)
        self.alarms = alarms
        self.changes = ChangeFilter(report or {}) if cfg.on_change else None
        self._alarm_topic = f"{cfg.topic_prefix}/{info.gateway}/alarm/"
        self._heads: dict[str, str] = {}
        self._retain = True  # until a broker says it has no retained messages
        self._stop = threading.Event()
        # an idle uplink sleeps in select() on the broker's socket and this pair: new readings,
        # eviction records and stop() write a byte to wake it (only while it sleeps)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._idle = False
        self._thread: threading.Thread | None = None
        self._logged: set[str] = set()
        self._rtt = 0.0  # smoothed seconds from PUBLISH to PUBACK
        # readings per backlog message: each session starts small and doubles with every
        # acknowledgement (slow start), so a flaky link that loses a PUBACK costs few duplicates
        self._batch = cfg.backlog_batch
        # messages in flight: each session starts with one and doubles with every PUBACK, so a
        # link whose return path is dead costs one message sent again, not a whole window
        self._window = 1
        self._largest_acked = 0  # bytes of the largest message the broker accepted (this process)
        self._oversize: dict[int, int] = {}  # seq → sessions lost while it was alone in flight
        outbox.add_listener(lambda _seq: self.wake() if self._idle else None)

    def _log_once(self, level: int, key: str, msg: str, *args: Any) -> None:
        """Log a state change once; repeats go to debug."""
        if key in self._logged:
            log.debug(msg, *args)
            return
        self._logged.add(key)
        log.log(level, msg, *args)

    # -- life cycle -------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"uplink-{self.name}", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Interrupt an idle sleep (thread-safe): there is something to send or to stop for."""
        with contextlib.suppress(OSError):  # BlockingIOError: a wake-up is already pending
            self._wake_w.send(b"\0")

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._thread is None or not self._thread.is_alive():
            self._wake_r.close()
            self._wake_w.close()

    def _run(self) -> None:
        reader = self.outbox.reader()
        attempt = 0
        try:
            while not self._stop.is_set():
                began = time.monotonic()
                connected = False
                try:
                    connected = self._session(reader)
                except Stopping:
                    break
                except UplinkError as exc:
                    self._error(str(exc))
                except Exception as exc:
                    self.stats.errors += 1
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"
                    log.exception("uplink %s: unexpected error", self.name)
                self.stats.connected = False
                healthy = connected and time.monotonic() - began >= HEALTHY_SESSION
                attempt = 0 if healthy else attempt + 1
                self._stop.wait(backoff_delay(attempt, self.cfg.reconnect_min, self.cfg.reconnect_max))
        finally:
            reader.close()

    def _error(self, text: str) -> None:
        self.stats.errors += 1
        self.stats.last_error = text
        self._log_once(logging.ERROR, f"err:{text}", "uplink %s: %s", self.name, text)

    # -- one connection ---------------------------------------------------------------
    def _session(self, reader: OutboxReader) -> bool:
        """One connection, from CONNECT until it drops, stalls or the agent stops."""
        cfg = self.cfg
        conn = Connection(cfg, cfg.client_id or f"{self.info.gateway}-{self.name}",
                          (self.topics.status, payload.STATUS_OFFLINE), read_secret(cfg, self.base_dir),
                          tls_context(cfg, self.base_dir), self._retain)
        try:
            try:
                conn.open(self._stop)
            finally:
                self._retain = conn.retain
            self.stats.connects += 1
            self.stats.connected = True
            self.stats.last_error = ""
            self._logged = {k for k in self._logged if k.startswith("refused:")}
            log.info("uplink %s: connected to %s:%d (MQTT %s%s)", self.name, cfg.host, cfg.effective_port,
                     cfg.protocol, ", TLS" if cfg.tls_enabled else "")
            self.gate.new_session()
            self._batch = min(self.cfg.live_batch, self.cfg.backlog_batch)
            self._window = 1
            inflight: dict[int, _Msg] = {}
            self._deliver(conn, reader, inflight)
            if self._stop.is_set():
                self._goodbye(conn, inflight)
            return True
        finally:
            conn.close()

    def _publish(self, conn: Connection, msg: _Msg, inflight: dict[int, _Msg], now: float) -> bool:
        mid = conn.publish(msg.topic, msg.data, msg.retain)
        if mid is None:
            return False
        msg.sent = now
        inflight[mid] = msg
        self.stats.messages += 1
        return True

    def _announcements(self) -> list[_Msg]:
        """Retained birth on the status topic, then each device's metadata."""
        info = self.info
        msgs = [_Msg("other", self.topics.status, payload.birth(info.version, info.config_hash, info.started_ms),
                     _NO_SEQS, retain=True)]
        if self.cfg.format == "thingsboard":
            msgs += [_Msg("other", "v1/gateway/connect", payload.thingsboard_connect(d), _NO_SEQS)
                     for d in info.devices]
            if info.devices:
                msgs.append(_Msg("other", self.topics.meta(""), payload.thingsboard_attributes(info.devices),
                                 _NO_SEQS))
        else:
            msgs += [_Msg("other", self.topics.meta(d), payload.device_meta(m), _NO_SEQS, retain=True)
                     for d, m in info.devices.items()]
        return msgs

    def _goodbye(self, conn: Connection, inflight: dict[int, _Msg]) -> None:
        """On stop: collect outstanding PUBACKs, then say offline (a clean DISCONNECT sends no will)."""
        if not self._drain(conn, inflight, STOP_GRACE):
            return
        offline = _Msg("other", self.topics.status, payload.STATUS_OFFLINE, _NO_SEQS, retain=True)
        if self._publish(conn, offline, inflight, time.monotonic()):
            self._drain(conn, inflight, 1.0)

    def _drain(self, conn: Connection, inflight: dict[int, _Msg], seconds: float) -> bool:
        """Wait up to ``seconds`` for the PUBACKs of what is in flight. False if the connection is gone."""
        deadline = time.monotonic() + seconds
        while inflight and time.monotonic() < deadline:
            alive = conn.loop(0.05)
            if conn.acks:
                self._settle(conn, inflight, time.monotonic())
            if not alive:
                return False
        return True

    # -- from rows to messages ---------------------------------------------------------------
    def _head(self, device: str) -> str:
        head = self._heads.get(device)
        if head is None:
            head = self._heads[device] = payload.native_head(self.info.gateway, device)
        return head

    def _build(self, rows: Sequence[Row], per_message: int, queue: deque[_Msg], max_payload: int) -> None:
        """Messages of at most ``per_message`` readings; native: one device per message."""
        if self.changes is not None:
            rows, quiet = self.changes.apply(list(rows))
            if quiet:  # nothing moved: delivered, as far as this platform asked
                self.outbox.ack(self.name, quiet)
        if self.cfg.format == "native":
            for device, drows in _by_device(rows).items():
                topic, head = self.topics.telemetry(device), self._head(device)
                for i in range(0, len(drows), per_message):
                    self._emit(queue, topic, drows[i:i + per_message], head, max_payload)
            return
        by_topic: dict[str, list[Row]] = {}
        for r in rows:
            by_topic.setdefault(self.topics.telemetry(r.device), []).append(r)
        for topic, trows in by_topic.items():
            for i in range(0, len(trows), per_message):
                self._emit(queue, topic, trows[i:i + per_message], None, max_payload)

    def _messages(self, rows: Sequence[Row], per_message: int) -> list[tuple[str, bytes, list[int]]]:
        """(topic, payload, seqs) as the delivery loop would publish ``rows`` (bench/backlog_drain.py)."""
        queue: deque[_Msg] = deque()
        self._build(rows, per_message, queue, 0)
        return [(m.topic, m.data if isinstance(m.data, bytes) else m.data.encode(), m.seqs) for m in queue]

    def _emit(self, queue: deque[_Msg], topic: str, rows: Sequence[Row], head: str | None,
              max_payload: int) -> None:
        data = payload.native(head, rows) if head is not None else payload.thingsboard(_by_device(rows))
        if max_payload and len(data) > max_payload and len(rows) > 1:  # the broker's Maximum Packet Size
            half = len(rows) // 2
            self._emit(queue, topic, rows[:half], head, max_payload)
            self._emit(queue, topic, rows[half:], head, max_payload)
            return
        queue.append(_Msg("readings", topic, data, [r.seq for r in rows]))

    def _alarm_messages(self, rows: Sequence[Row], queue: deque[_Msg]) -> None:
        """One QoS 1 message per alarm event: ``{"seq", "ts", "alarm", "state", ...}``."""
        for r in rows:
            body = f'{{"seq":{r.seq},"ts":{r.ts},{r.vals[1:]}' if r.vals != "{}" else f'{{"seq":{r.seq},"ts":{r.ts}}}'
            queue.append(_Msg("alarm", self._alarm_topic + r.device, body, [r.seq]))

    def _alarm_set(self, queue: deque[_Msg], shown: int) -> int:
        """Queue the retained set of active alarms when it changed since ``shown``; the version shown."""
        if self.alarms is None:
            return shown
        version, body = self.alarms.published
        if version != shown:
            queue.append(_Msg("other", f"{self.cfg.topic_prefix}/{self.info.gateway}/alarms", body, _NO_SEQS,
                              retain=True))
        return version

    # -- acknowledgements ------------------------------------------------------------------
    def _settle(self, conn: Connection, inflight: dict[int, _Msg], now: float) -> None:
        acked: list[int] = []
        acks = conn.acks
        while acks:
            mid, code, reason = acks.popleft()
            msg = inflight.pop(mid, None)
            if msg is None:
                continue
            if code == PACKET_TOO_LARGE and msg.kind == "readings":
                self._too_large(msg, f"PUBACK reason {code}")
                continue
            if code >= 0x80:
                self._refused(msg, reason, code, now)
                continue
            self._rtt += (now - msg.sent - self._rtt) * 0.2
            self._window = min(conn.window, self._window * 2)
            self._largest_acked = max(self._largest_acked, len(msg.data))
            if msg.kind == "alarm":
                acked += msg.seqs
            elif msg.kind == "readings":
                acked += msg.seqs
                self._batch = min(self.cfg.backlog_batch, self._batch * 2)
                if self.gate and self.gate.accepted(msg.topic):
                    self._logged = {k for k in self._logged if not k.startswith(f"refused:{msg.topic}:")}
                    log.info("uplink %s: broker accepts publishes to %s again; sending its buffered readings",
                             self.name, msg.topic)
            elif msg.kind == "eviction":
                self.outbox.ack_evictions(self.name, [msg.eviction_id])
        if acked:
            self.outbox.ack(self.name, acked)
            self.stats.readings_acked += len(acked)

    # -- messages the broker will not take for their size -----------------------------------
    def _payload_limit(self, conn: Connection) -> int:
        """The broker's announced Maximum Packet Size, or the size it was seen to refuse."""
        caps = [c for c in (conn.max_payload, self.stats.size_cap) if c]
        return min(caps) if caps else 0

    def _lost_with(self, inflight: dict[int, _Msg], why: str) -> None:
        """The session ended with messages unacknowledged: a broker with a payload cap it does
        not announce drops the connection (or answers 0x95, which paho cannot parse and drops
        it too). The largest readings message bigger than any accepted one is suspect; only a
        message that ends two sessions in a row is taken for too large (the next session
        sends the oldest readings first, so a real cap hits the same message again, a flaky
        link rarely does)."""
        suspects = [m for m in inflight.values() if m.kind == "readings" and len(m.data) > self._largest_acked]
        if not suspects:
            return
        msg = max(suspects, key=lambda m: len(m.data))
        if len(self._oversize) > 100:
            self._oversize.clear()
        lost = self._oversize[msg.seqs[0]] = self._oversize.get(msg.seqs[0], 0) + 1
        if lost >= (SET_ASIDE_AFTER if len(msg.seqs) == 1 else 2):
            self._too_large(msg, why)

    def _too_large(self, msg: _Msg, why: str) -> None:
        size = len(msg.data)
        if len(msg.seqs) > 1:
            cap = max(1, size // 2, self._largest_acked)
            if not self.stats.size_cap or cap < self.stats.size_cap:
                self.stats.size_cap = cap
                log.warning("uplink %s: a message of %d bytes (%d readings) was not accepted (%s); sending"
                            " messages of at most %d bytes from now on", self.name, size, len(msg.seqs), why, cap)
            return
        seq = msg.seqs[0]
        self._oversize.pop(seq, None)
        self.stats.set_aside += 1
        self.outbox.set_aside(self.name, seq, f"undeliverable: {size} bytes, too large for the broker ({why})")
        log.error("uplink %s: reading seq %d (%d bytes) is too large for the broker even alone (%s); set aside"
                  " and announced on the status topic", self.name, seq, size, why)

    def _refused(self, msg: _Msg, reason: object, code: int, now: float) -> None:
        self.stats.refused += 1
        self.stats.errors += 1
        self.stats.last_error = f"publish to {msg.topic} refused: {reason} (reason {code})"
        if msg.kind == "readings":
            self.gate.refused(msg.topic, now)
            self._log_once(logging.ERROR, f"refused:{msg.topic}:{code}",
                           "uplink %s: broker refused publish to %s: %s (reason %d); its readings stay in the"
                           " buffer, retried every %.0fs", self.name, msg.topic, reason, code,
                           self.cfg.refused_retry)
        else:
            self._log_once(logging.ERROR, f"refused:{msg.topic}:{code}",
                           "uplink %s: broker refused publish to %s: %s (reason %d)",
                           self.name, msg.topic, reason, code)

    # -- the delivery loop --------------------------------------------------------------
    def _deliver(self, conn: Connection, reader: OutboxReader, inflight: dict[int, _Msg]) -> None:
        cfg = self.cfg
        outbox = self.outbox
        outbox.sync()
        live_floor = live_cursor = outbox.last_seq  # readings up to live_floor are backlog
        backlog_cursor = 0
        skip: set[int] = set()  # in flight when a rescan began: not to be read again in that pass
        ready_other: deque[_Msg] = deque(self._announcements())  # status, metadata, eviction notices
        # alarm events first: those the buffer holds (raised while the link was down), then the active set
        ready_alarm: deque[_Msg] = deque()
        self._alarm_messages(reader.alarm_rows(self.bit, live_floor), ready_alarm)
        alarms_shown = self._alarm_set(ready_alarm, -1)
        if self.changes is not None:
            self.changes.reset()
        ready_live: deque[_Msg] = deque()
        ready_backlog: deque[_Msg] = deque()
        tokens = float(cfg.backlog_batch)
        last_refill = time.monotonic()
        evictions_seen = -1
        sent = 0
        while not self._stop.is_set():
            alive = conn.loop(0.0 if sent or not inflight else 0.01)
            now = time.monotonic()
            if conn.acks:
                self._settle(conn, inflight, now)
            if not alive:
                self._log_once(logging.WARNING, "lost", "uplink %s: connection to %s:%d lost", self.name,
                               cfg.host, cfg.effective_port)
                self._lost_with(inflight, "connection dropped while it was in flight")
                return
            # the stall watchdog: paho never retransmits on a live connection
            if inflight:
                oldest = next(iter(inflight.values())).sent
                if now - oldest > cfg.ack_timeout:
                    self.stats.stalls += 1
                    log.warning("uplink %s: no PUBACK for %.0fs (%d messages in flight); reconnecting",
                                self.name, now - oldest, len(inflight))
                    self._lost_with(inflight, "no PUBACK")
                    return
            # a refused topic is due for a probe, or accepted again: read the buffer from the start
            if self.gate and self.gate.rescan_due(now):
                self.gate.rescan_started(now)
                outbox.sync()  # acknowledgements so far are committed: they are not read again
                skip = {s for q in (inflight.values(), ready_live, ready_backlog) for m in q for s in m.seqs}
                live_floor = live_cursor
                backlog_cursor = 0
            if outbox.counters.eviction_records != evictions_seen:
                evictions_seen = outbox.counters.eviction_records
                outbox.sync()
                announcing = {m.eviction_id for q in (inflight.values(), ready_other) for m in q
                              if m.kind == "eviction"}
                for ev in reader.evictions(self.bit):
                    if ev.id in announcing:
                        continue
                    event = "undeliverable" if ev.reason.startswith("undeliverable") else "evicted"
                    notice = {"status": "online", "event": event, "first_seq": ev.first_seq,
                              "last_seq": ev.last_seq, "count": ev.count, "reason": ev.reason, "at": ev.at}
                    ready_other.append(_Msg("eviction", self.topics.status, json.dumps(notice), _NO_SEQS,
                                            eviction_id=ev.id))
            # fill the ready queues from the buffer
            window = min(conn.window, self._window)
            if not ready_live and outbox.last_seq > live_cursor:
                rows = reader.fetch(self.bit, live_cursor, None, cfg.live_batch * max(1, window - len(inflight)))
                if rows:
                    live_cursor = rows[-1].seq
                    self._alarm_messages([r for r in rows if r.status == ALARM_STATUS], ready_alarm)
                    rows = [r for r in rows if r.status != ALARM_STATUS]
                    self._build(rows, cfg.live_batch, ready_live, self._payload_limit(conn))
            alarms_shown = self._alarm_set(ready_alarm, alarms_shown)
            if cfg.backlog_rate:
                tokens = min(max(cfg.backlog_rate, cfg.backlog_batch), tokens + (now - last_refill) * cfg.backlog_rate)
                last_refill = now
            # wait for a whole batch of tokens: catch-up goes in big messages, not in crumbs
            if not ready_backlog and backlog_cursor < live_floor and (
                    not cfg.backlog_rate or tokens >= min(cfg.backlog_batch, live_floor - backlog_cursor)):
                limit = self._batch if not cfg.backlog_rate else max(1, min(self._batch, int(tokens)))
                rows = reader.fetch(self.bit, backlog_cursor, live_floor, limit)
                if not rows:
                    backlog_cursor = live_floor
                    skip.clear()
                else:
                    backlog_cursor = rows[-1].seq
                    tokens -= len(rows)
                    # alarm events went ahead at the start of the session (or live)
                    rows = [r for r in rows if r.seq not in skip and r.status != ALARM_STATUS]
                    self._build(rows, self._batch, ready_backlog, self._payload_limit(conn))
            # hand messages to paho: status first, then live; the backlog leaves two slots for live readings
            sent = 0
            if inflight and now - next(iter(inflight.values())).sent > max(HOLD_AFTER, 4 * self._rtt):
                window = 0  # acknowledgements stopped coming: wait for one (or the stall watchdog)
            for queue, slots in ((ready_alarm, max(1, window)), (ready_other, window), (ready_live, window),
                                 (ready_backlog, max(1, window - 2))):
                while queue and len(inflight) < slots:
                    msg = queue.popleft()
                    if msg.kind == "readings" and self.gate and not self.gate.allows(msg.topic, now):
                        continue  # stays in the buffer; a rescan finds it
                    if not self._publish(conn, msg, inflight, now):
                        return
                    sent += 1
            if not sent and not inflight:
                backlog_due = None
                if cfg.backlog_rate and backlog_cursor < live_floor and not ready_backlog:
                    need = min(cfg.backlog_batch, live_floor - backlog_cursor)
                    backlog_due = now + max(0.0, need - tokens) / cfg.backlog_rate
                self._idle = True
                try:
                    if outbox.last_seq == live_cursor and not self._stop.is_set():
                        conn.sleep(self._idle_seconds(now, backlog_due), self._wake_r)
                finally:
                    self._idle = False

    def _idle_seconds(self, now: float, backlog_due: float | None) -> float:
        """How long an idle uplink may sleep: until a refused topic's retry, the backlog's next
        tokens, or a quarter of the keepalive (paho's PINGREQ), whichever comes first."""
        deadlines = [now + self.cfg.keepalive / 4]
        gate_due = self.gate.next_due()
        if gate_due is not None:
            deadlines.append(gate_due)
        if backlog_due is not None:
            deadlines.append(backlog_due)
        return max(0.0, min(deadlines) - now)
