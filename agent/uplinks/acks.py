"""What a broker's answers mean for an uplink: PUBACKs, refusals and messages too large.

A message's readings are acknowledged to the outbox only on a success PUBACK. A refused
publish (v5 reason code >= 0x80) keeps its readings buffered and blocks that topic for
``refused_retry`` (refusals.py). A broker with a payload cap it does not announce drops
the connection (or answers 0x95, which paho 2.2 cannot parse and drops it too): the
message size is halved, never below the largest message accepted, and a single reading
still too large after a few sessions is set aside and announced as undeliverable.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from buffer.outbox import Outbox

from ..config import MqttUplink
from .connection import Connection
from .logonce import LogsOnce
from .messages import Message
from .refusals import RefusalGate

log = logging.getLogger("agent.uplinks.mqtt")

PACKET_TOO_LARGE = 0x95
SET_ASIDE_AFTER = 3  # sessions lost in a row with one oversize reading in flight before it is set aside


class BrokerAnswers(LogsOnce):
    """The PUBACK side of :class:`agent.uplinks.mqtt.MqttUplinkWorker` (a mixin: it shares the
    worker's state)."""

    _once_log = log
    name: str
    cfg: MqttUplink
    outbox: Outbox
    gate: RefusalGate
    stats: Any  # UplinkStats
    _rtt: float
    _window: int
    _batch: int
    _largest_acked: int
    _oversize: dict[int, int]

    def _settle(self, conn: Connection, inflight: dict[int, Message], now: float) -> None:
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
            self.stats.last_ack = int(time.time() * 1000)

    def _payload_limit(self, conn: Connection) -> int:
        """The broker's announced Maximum Packet Size, or the size it was seen to refuse."""
        caps = [c for c in (conn.max_payload, self.stats.size_cap) if c]
        return min(caps) if caps else 0

    def _lost_with(self, inflight: dict[int, Message], why: str) -> None:
        """The session ended with messages unacknowledged. The largest readings message bigger
        than any accepted one is suspect; only a message that ends two sessions in a row is
        taken for too large (the next session sends the oldest readings first, so a real cap
        hits the same message again, a flaky link rarely does)."""
        suspects = [m for m in inflight.values() if m.kind == "readings" and len(m.data) > self._largest_acked]
        if not suspects:
            return
        msg = max(suspects, key=lambda m: len(m.data))
        if len(self._oversize) > 100:
            self._oversize.clear()
        lost = self._oversize[msg.seqs[0]] = self._oversize.get(msg.seqs[0], 0) + 1
        if lost >= (SET_ASIDE_AFTER if len(msg.seqs) == 1 else 2):
            self._too_large(msg, why)

    def _too_large(self, msg: Message, why: str) -> None:
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

    def _refused(self, msg: Message, reason: object, code: int, now: float) -> None:
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
