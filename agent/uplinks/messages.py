"""From outbox rows to MQTT messages: telemetry batches, alarm events, announcements.

A message carries the seqs of the readings it delivers (acknowledged to the outbox on a
success PUBACK) or the eviction record it announces. Payloads are built from the JSON
text the buffer stored, spliced, never decoded and encoded again.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from buffer.outbox import Row
from buffer.reader import Eviction

from ..config import MqttUplink
from . import payload
from .topics import TopicMap

Kind = Literal["readings", "alarm", "eviction", "other"]
NO_SEQS: list[int] = []


@dataclass(slots=True)
class Message:
    kind: Kind
    topic: str
    data: bytes | str
    seqs: list[int]
    retain: bool = False
    sent: float = 0.0  # monotonic seconds when handed to paho
    eviction_id: int = 0


@dataclass(frozen=True, slots=True)
class GatewayInfo:
    gateway: str
    version: str
    config_hash: str
    started_ms: int
    devices: dict[str, dict[str, Any]]  # device id → metadata (profile, units, location...)


def by_device(rows: Sequence[Row]) -> dict[str, list[Row]]:
    groups: dict[str, list[Row]] = {}
    for r in rows:
        group = groups.get(r.device)
        if group is None:
            groups[r.device] = [r]
        else:
            group.append(r)
    return groups


class MessageBuilder:
    """Builds one uplink's messages in its format (native or ThingsBoard) and topics."""

    def __init__(self, cfg: MqttUplink, info: GatewayInfo, topics: TopicMap) -> None:
        self.cfg = cfg
        self.info = info
        self.topics = topics
        self.alarm_topic = f"{cfg.topic_prefix}/{info.gateway}/alarm/"
        self.alarms_topic = f"{cfg.topic_prefix}/{info.gateway}/alarms"
        self._heads: dict[str, str] = {}

    def announcements(self) -> list[Message]:
        """Retained birth on the status topic, then each device's metadata."""
        info = self.info
        msgs = [Message("other", self.topics.status, payload.birth(info.version, info.config_hash, info.started_ms),
                        NO_SEQS, retain=True)]
        if self.cfg.format == "thingsboard":
            msgs += [Message("other", "v1/gateway/connect", payload.thingsboard_connect(d), NO_SEQS)
                     for d in info.devices]
            if info.devices:
                msgs.append(Message("other", self.topics.meta(""), payload.thingsboard_attributes(info.devices),
                                    NO_SEQS))
        else:
            msgs += [Message("other", self.topics.meta(d), payload.device_meta(m), NO_SEQS, retain=True)
                     for d, m in info.devices.items()]
        return msgs

    def offline(self) -> Message:
        return Message("other", self.topics.status, payload.STATUS_OFFLINE, NO_SEQS, retain=True)

    def eviction_notice(self, ev: Eviction) -> Message:
        event = "undeliverable" if ev.reason.startswith("undeliverable") else "evicted"
        notice = {"status": "online", "event": event, "first_seq": ev.first_seq, "last_seq": ev.last_seq,
                  "count": ev.count, "reason": ev.reason, "at": ev.at}
        return Message("eviction", self.topics.status, json.dumps(notice), NO_SEQS, eviction_id=ev.id)

    def alarm_events(self, rows: Sequence[Row], queue: deque[Message]) -> None:
        """One QoS 1 message per alarm event: ``{"seq", "ts", "alarm", "state", ...}``."""
        for r in rows:
            body = f'{{"seq":{r.seq},"ts":{r.ts},{r.vals[1:]}' if r.vals != "{}" else f'{{"seq":{r.seq},"ts":{r.ts}}}'
            queue.append(Message("alarm", self.alarm_topic + r.device, body, [r.seq]))

    def alarm_set(self, body: str) -> Message:
        return Message("other", self.alarms_topic, body, NO_SEQS, retain=True)

    def readings(self, rows: Sequence[Row], per_message: int, queue: deque[Message], max_payload: int) -> None:
        """Messages of at most ``per_message`` readings (and ``max_payload`` bytes when > 0);
        native: one device per message."""
        if self.cfg.format == "native":
            for device, drows in by_device(rows).items():
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

    def _head(self, device: str) -> str:
        head = self._heads.get(device)
        if head is None:
            head = self._heads[device] = payload.native_head(self.info.gateway, device)
        return head

    def _emit(self, queue: deque[Message], topic: str, rows: Sequence[Row], head: str | None,
              max_payload: int) -> None:
        data = payload.native(head, rows) if head is not None else payload.thingsboard(by_device(rows))
        if max_payload and len(data) > max_payload and len(rows) > 1:  # the broker's Maximum Packet Size
            half = len(rows) // 2
            self._emit(queue, topic, rows[:half], head, max_payload)
            self._emit(queue, topic, rows[half:], head, max_payload)
            return
        queue.append(Message("readings", topic, data, [r.seq for r in rows]))
