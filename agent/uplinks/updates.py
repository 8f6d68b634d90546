"""What changes under an MQTT uplink's live session, and goes out on it without a reconnect.

- A reload that kept the uplink: the new birth and device metadata (``update_info``).
- The agent's health payloads, published retained; the latest one again on each new session.
- The retained set of active alarms, when the alarm engine changed it.
- Eviction records not yet announced (on the status topic).
- The buffer read again from the start: for a refused topic due for a probe, and for
  readings held for a good clock that got their UTC times.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Protocol

from buffer.outbox import Outbox, OutboxReader

from ..config import MqttUplink
from .delivery import SessionQueues, TokenBucket
from .messages import GatewayInfo, Message, MessageBuilder
from .onchange import ChangeFilter
from .refusals import RefusalGate
from .topics import TopicMap


class AlarmBoard(Protocol):
    """What an uplink needs of the alarm engine: the retained set, as (version, payload)."""

    published: tuple[int, str]


class HealthFeed:
    """Health payloads from the agent's loop to the uplink's thread (thread-safe); the latest
    one is kept to be sent again on the next session."""

    def __init__(self) -> None:
        self._pending: deque[str] = deque(maxlen=4)
        self._last: str | None = None

    def post(self, data: str) -> None:
        self._pending.append(data)

    def queue(self, build: MessageBuilder, queue: deque[Message], again: bool = False) -> None:
        """Queue the new payloads (or, ``again``, the last one for a new session)."""
        if again and self._last is not None and not self._pending:
            self._pending.append(self._last)
        while self._pending:
            self._last = self._pending.popleft()
            msg = build.health(self._last)
            if msg is not None:
                queue.append(msg)


class SessionUpdates:
    """The session-update side of :class:`agent.uplinks.mqtt.MqttUplinkWorker` (a mixin: it
    shares the worker's state)."""

    cfg: MqttUplink
    info: GatewayInfo
    topics: TopicMap
    build: MessageBuilder
    outbox: Outbox
    bit: int
    alarms: AlarmBoard | None
    changes: ChangeFilter | None
    gate: RefusalGate
    _health: HealthFeed
    _announce_again: bool

    if TYPE_CHECKING:  # the worker's, for the type checker only: a stub here would hide it at run time
        def wake(self) -> None: ...

    def update_info(self, info: GatewayInfo) -> None:
        """After a reload that kept this uplink: the new birth and device metadata go out on
        the live connection (the connection and delivery state stay)."""
        self.topics = TopicMap(self.cfg, info.gateway, info.devices)
        self.build = MessageBuilder(self.cfg, info, self.topics)
        self.info = info
        self._announce_again = True
        self.wake()

    def publish_health(self, data: str) -> None:
        """Publish ``data`` retained on the health topic (thread-safe; the latest one is sent
        again on each new connection)."""
        if self.topics.health is not None:
            self._health.post(data)
            self.wake()

    def _new_session(self, reader: OutboxReader) -> SessionQueues:
        """A new session's ready queues: the announcements; alarm events first, those the buffer
        holds (raised while the link was down), then the active set; the last health payload."""
        self.outbox.sync()
        q = SessionQueues(self.outbox.last_seq, self.build.announcements(),
                          TokenBucket(self.cfg.backlog_rate, self.cfg.backlog_batch, time.monotonic()))
        self.build.alarm_events(reader.alarm_rows(self.bit, q.live_floor), q.alarm)
        q.alarms_shown = self._alarm_set(q.alarm, q.alarms_shown)
        self._health.queue(self.build, q.other, again=True)
        if self.changes is not None:
            self.changes.reset()
        q.releases_seen = self.outbox.counters.clock_releases
        return q

    def _take_updates(self, q: SessionQueues, reader: OutboxReader, inflight: dict[int, Message],
                      now: float) -> None:
        """What changed since the last pass of the delivery loop, into the ready queues."""
        if self.gate and self.gate.rescan_due(now):
            self.gate.rescan_started(now)
            self.outbox.sync()  # acknowledgements so far are committed: they are not read again
            q.rescan(inflight.values())
        if self.outbox.counters.clock_releases != q.releases_seen:  # held readings got their UTC time
            q.releases_seen = self.outbox.counters.clock_releases
            self.outbox.sync()
            q.rescan(inflight.values())
        if self._announce_again:  # a reload changed the birth or the device metadata
            self._announce_again = False
            q.other.extend(self.build.announcements())
        self._queue_evictions(q, reader, inflight)
        self._health.queue(self.build, q.other)

    def _alarm_set(self, queue: deque[Message], shown: int) -> int:
        """Queue the retained set of active alarms when it changed since ``shown``; the version shown."""
        if self.alarms is None:
            return shown
        version, body = self.alarms.published
        if version != shown:
            queue.append(self.build.alarm_set(body))
        return version

    def _queue_evictions(self, q: SessionQueues, reader: OutboxReader, inflight: dict[int, Message]) -> None:
        """Announce eviction records not yet announced (on the status topic)."""
        if self.outbox.counters.eviction_records == q.evictions_seen:
            return
        q.evictions_seen = self.outbox.counters.eviction_records
        self.outbox.sync()
        announcing = q.eviction_ids(inflight.values())
        q.other.extend(self.build.eviction_notice(ev) for ev in reader.evictions(self.bit) if ev.id not in announcing)
