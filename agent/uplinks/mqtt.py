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
the connection and starts a fresh session, which re-reads everything pending. The
broker's answers are handled in acks.py, what changes under a live session (a reload's
metadata, health, the alarm set, eviction notices, rescans) in updates.py.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from buffer.outbox import ALARM_STATUS, Outbox, OutboxReader, Row

from ..alarms.config import ReportPoint
from ..config import MqttUplink
from . import payload
from .acks import BrokerAnswers
from .connection import Connection, Stopping
from .delivery import SessionQueues
from .messages import GatewayInfo, Message, MessageBuilder
from .onchange import ChangeFilter
from .reconnect import backoff_delay
from .refusals import RefusalGate
from .security import UplinkError, read_secret, tls_context
from .topics import TopicMap
from .updates import AlarmBoard, HealthFeed, SessionUpdates
from .waker import Waker

if TYPE_CHECKING:
    from ..control.mqtt_commands import CommandPort

log = logging.getLogger(__name__)

__all__ = ["GatewayInfo", "MqttUplinkWorker", "UplinkStats"]

HEALTHY_SESSION = 10.0  # a session that lasted this long resets the reconnect back-off
# no PUBACK for this long (or 4 round trips, if longer): hand paho nothing more until one comes.
# A link that died silently then holds few readings that the next session sends again.
HOLD_AFTER = 0.1
STOP_GRACE = 2.0  # on stop, wait this long for outstanding PUBACKs


@dataclass(slots=True)
class UplinkStats:
    connected: bool = False
    connected_since: int = 0  # epoch ms of the current connection, or of the loss of the last one
    last_ack: int = 0  # epoch ms of the last success PUBACK for readings
    connects: int = 0
    messages: int = 0
    readings_acked: int = 0
    refused: int = 0
    stalls: int = 0
    errors: int = 0
    size_cap: int = 0  # learned: the largest payload this broker is sent (0: no cap learned)
    set_aside: int = 0  # readings too large for the broker even alone
    last_error: str = ""


class MqttUplinkWorker(BrokerAnswers, SessionUpdates):
    """One platform: its broker, credentials, topics, format and delivery state."""

    def __init__(self, name: str, cfg: MqttUplink, info: GatewayInfo, outbox: Outbox,
                 base_dir: Path, alarms: AlarmBoard | None = None,
                 report: Mapping[str, Mapping[str, ReportPoint]] | None = None,
                 commands: CommandPort | None = None) -> None:
        self.name = name
        self.commands = commands  # only for an uplink with commands: true (agent/control/mqtt_commands.py)
        self.cfg = cfg
        self.info = info
        self.outbox = outbox
        self.base_dir = base_dir
        self.bit = outbox.uplink_bits[name]
        self.carried: frozenset[str] | None = None  # every device (completeness; an HJ 212 uplink lists its own)
        self.stats = UplinkStats()
        self.topics = TopicMap(cfg, info.gateway, info.devices)
        self.gate = RefusalGate(cfg.refused_retry)
        self.alarms = alarms
        self.changes = ChangeFilter(report or {}) if cfg.on_change else None
        self.build = MessageBuilder(cfg, info, self.topics)
        self._retain = True  # until a broker says it has no retained messages
        self._stop = threading.Event()
        # an idle uplink sleeps in select() on the broker's socket and this pair: new readings,
        # eviction records and stop() write a byte to wake it (only while it sleeps)
        self._waker = Waker()
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
        self._announce_again = False
        self._health = HealthFeed()  # health payloads to publish (from the agent's loop)
        self._on_commit: Callable[[int], None] = lambda _seq: self.wake() if self._idle else None
        outbox.add_listener(self._on_commit)
        if commands is not None:
            commands.wake = self.wake  # a reply is ready: publish it now

    # -- life cycle -------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"uplink-{self.name}", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Interrupt an idle sleep (thread-safe): there is something to send or to stop for."""
        self._waker.poke()

    def stop(self, timeout: float = 5.0) -> None:
        self.outbox.remove_listener(self._on_commit)
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._thread is None or not self._thread.is_alive():
            self._waker.close()

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
                if self.stats.connected:
                    self.stats.connected_since = int(time.time() * 1000)
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
            self.stats.connected_since = int(time.time() * 1000)
            self.stats.last_error = ""
            self._logged = {k for k in self._logged if k.startswith("refused:")}
            if self.commands is not None:
                self.commands.session_started(conn.client)
            log.info("uplink %s: connected to %s:%d (MQTT %s%s)", self.name, cfg.host, cfg.effective_port,
                     cfg.protocol, ", TLS" if cfg.tls_enabled else "")
            self.gate.new_session()
            self._batch = min(self.cfg.live_batch, self.cfg.backlog_batch)
            self._window = 1
            inflight: dict[int, Message] = {}
            self._deliver(conn, reader, inflight)
            if self._stop.is_set():
                self._goodbye(conn, inflight)
            return True
        finally:
            conn.close()

    def _publish(self, conn: Connection, msg: Message, inflight: dict[int, Message], now: float) -> bool:
        mid = conn.publish(msg.topic, msg.data, msg.retain)
        if mid is None:
            return False
        msg.sent = now
        inflight[mid] = msg
        self.stats.messages += 1
        return True

    def _goodbye(self, conn: Connection, inflight: dict[int, Message]) -> None:
        """On stop: collect outstanding PUBACKs, then say offline (a clean DISCONNECT sends no will)."""
        if not self._drain(conn, inflight, STOP_GRACE):
            return
        if self._publish(conn, self.build.offline(), inflight, time.monotonic()):
            self._drain(conn, inflight, 1.0)

    def _drain(self, conn: Connection, inflight: dict[int, Message], seconds: float) -> bool:
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
    def _readings(self, rows: Sequence[Row], per_message: int, queue: deque[Message], max_payload: int) -> None:
        """Queue ``rows`` as telemetry; for an on_change platform only the values that moved."""
        if self.changes is not None:
            rows, quiet = self.changes.apply(list(rows))
            if quiet:  # nothing moved: delivered, as far as this platform asked
                self.outbox.ack(self.name, quiet)
        self.build.readings(rows, per_message, queue, max_payload)

    def _messages(self, rows: Sequence[Row], per_message: int) -> list[tuple[str, bytes, list[int]]]:
        """(topic, payload, seqs) as the delivery loop would publish ``rows`` (bench/backlog_drain.py)."""
        queue: deque[Message] = deque()
        self._readings(rows, per_message, queue, 0)
        return [(m.topic, m.data if isinstance(m.data, bytes) else m.data.encode(), m.seqs) for m in queue]

    # -- the delivery loop --------------------------------------------------------------
    def _deliver(self, conn: Connection, reader: OutboxReader, inflight: dict[int, Message]) -> None:
        """Until the connection is lost, stalls or the agent stops: settle PUBACKs, read the buffer
        into the ready queues, hand messages to paho, and sleep when there is nothing to do."""
        q = self._new_session(reader)
        sent = 0
        while not self._stop.is_set():
            alive = conn.loop(0.0 if sent or not inflight else 0.01)
            if self.commands is not None and self.commands.outgoing:
                self.commands.flush(conn.client)
            now = time.monotonic()
            if conn.acks:
                self._settle(conn, inflight, now)
            if not self._still_up(alive, inflight, now):
                return
            self._take_updates(q, reader, inflight, now)
            self._fill(q, reader, conn, inflight, now)
            sent = self._hand_over(q, conn, inflight, now)
            if sent < 0:
                return
            if not sent and not inflight:
                self._sleep(q, conn, now)

    def _still_up(self, alive: bool, inflight: dict[int, Message], now: float) -> bool:
        """False when the connection is gone or stalled (paho never retransmits on a live one)."""
        cfg = self.cfg
        if not alive:
            self._log_once(logging.WARNING, "lost", "uplink %s: connection to %s:%d lost; readings wait in the"
                           " buffer, reconnecting every %.0fs..%.0fs", self.name, cfg.host, cfg.effective_port,
                           cfg.reconnect_min, cfg.reconnect_max)
            self._lost_with(inflight, "connection dropped while it was in flight")
            return False
        if inflight:
            oldest = next(iter(inflight.values())).sent
            if now - oldest > cfg.ack_timeout:
                self.stats.stalls += 1
                log.warning("uplink %s: no PUBACK for %.0fs (%d messages in flight); reconnecting",
                            self.name, now - oldest, len(inflight))
                self._lost_with(inflight, "no PUBACK")
                return False
        return True

    def _fill(self, q: SessionQueues, reader: OutboxReader, conn: Connection, inflight: dict[int, Message],
              now: float) -> None:
        """Read live readings (and, tokens allowing, backlog) from the buffer into the ready queues."""
        cfg = self.cfg
        window = min(conn.window, self._window)
        if not q.live and self.outbox.last_seq > q.live_cursor:
            rows = reader.fetch(self.bit, q.live_cursor, None, cfg.live_batch * max(1, window - len(inflight)))
            if rows:
                q.live_cursor = rows[-1].seq
                self.build.alarm_events([r for r in rows if r.status == ALARM_STATUS], q.alarm)
                rows = [r for r in rows if r.status != ALARM_STATUS]
                self._readings(rows, cfg.live_batch, q.live, self._payload_limit(conn))
        q.alarms_shown = self._alarm_set(q.alarm, q.alarms_shown)
        q.bucket.refill(now)
        if q.backlog_ready(cfg.backlog_batch):
            rows = reader.fetch(self.bit, q.backlog_cursor, q.live_floor, q.bucket.allowance(self._batch))
            if not rows:
                q.backlog_cursor = q.live_floor
                q.skip.clear()
            else:
                q.backlog_cursor = rows[-1].seq
                q.bucket.take(len(rows))
                # alarm events went ahead at the start of the session (or live)
                rows = [r for r in rows if r.seq not in q.skip and r.status != ALARM_STATUS]
                self._readings(rows, self._batch, q.backlog, self._payload_limit(conn))

    def _hand_over(self, q: SessionQueues, conn: Connection, inflight: dict[int, Message], now: float) -> int:
        """Publish what the window allows; the number handed to paho, -1 if the connection is gone."""
        window = min(conn.window, self._window)
        if inflight and now - next(iter(inflight.values())).sent > max(HOLD_AFTER, 4 * self._rtt):
            window = 0  # acknowledgements stopped coming: wait for one (or the stall watchdog)
        sent = 0
        for queue, slots in q.in_order(window):
            while queue and len(inflight) < slots:
                msg = queue.popleft()
                if msg.kind == "readings" and self.gate and not self.gate.allows(msg.topic, now):
                    continue  # stays in the buffer; a rescan finds it
                if not self._publish(conn, msg, inflight, now):
                    return -1
                sent += 1
        return sent

    def _sleep(self, q: SessionQueues, conn: Connection, now: float) -> None:
        """Nothing to send, nothing in flight: sleep until woken (new readings, a reply, stop),
        the broker sends something, or a timer is due: a refused topic's retry, the backlog's
        next tokens, a quarter of the keepalive (paho's PINGREQ)."""
        deadlines = [now + self.cfg.keepalive / 4]
        for due in (self.gate.next_due(), q.backlog_due(self.cfg.backlog_batch, now)):
            if due is not None:
                deadlines.append(due)
        self._idle = True
        try:
            if self.outbox.last_seq == q.live_cursor and not self._stop.is_set():
                conn.sleep(max(0.0, min(deadlines) - now), self._waker)
        finally:
            self._idle = False
