"""Topics the broker refuses (MQTT v5 PUBACK reason >= 0x80, e.g. 135 not authorized).

A refused topic is blocked: its readings stay in the buffer and are not sent again until
``retry`` has passed; then one message is let through as a probe. If the broker accepts
the probe the topic is unblocked and the uplink re-reads the buffer for what it skipped;
if it refuses again the topic stays blocked for another period. Other topics are not
held up, and a long refusal costs one message per period, not the whole backlog. A new
session probes every blocked topic at once: its rights may have changed.
"""

from __future__ import annotations


class RefusalGate:
    def __init__(self, retry: float) -> None:
        self.retry = retry
        self.blocked: dict[str, float] = {}  # topic → when a probe may go
        self._probing: set[str] = set()  # a probe is in flight
        self._probe_ok: set[str] = set()  # a probe may go now (retry time passed, rescan started)
        self._rescan = False

    def __bool__(self) -> bool:
        """Anything to do: a topic blocked, or a rescan owed after a block ended."""
        return bool(self.blocked) or self._rescan

    def allows(self, topic: str, now: float) -> bool:
        """May a message to ``topic`` go now? Lets exactly one probe through when due."""
        if not self.blocked or topic not in self.blocked:
            return True
        if topic in self._probing:
            return False
        if topic in self._probe_ok or now >= self.blocked[topic]:
            self._probe_ok.discard(topic)
            self._probing.add(topic)
            return True
        return False

    def refused(self, topic: str, now: float) -> None:
        self.blocked[topic] = now + self.retry
        self._probing.discard(topic)
        self._probe_ok.discard(topic)

    def accepted(self, topic: str) -> bool:
        """A success PUBACK on ``topic``. True if that ends a block (the probe got through)."""
        if topic not in self.blocked:
            return False
        del self.blocked[topic]
        self._probing.discard(topic)
        self._probe_ok.discard(topic)
        self._rescan = True
        return True

    def rescan_due(self, now: float) -> bool:
        """Should the uplink re-read the buffer from the start (to find probes or skipped readings)?"""
        if self._rescan:
            return True
        return any(now >= t for topic, t in self.blocked.items()
                   if topic not in self._probing and topic not in self._probe_ok)

    def next_due(self) -> float | None:
        """When :meth:`rescan_due` next turns true by itself (monotonic seconds), or None."""
        if self._rescan:
            return 0.0
        times = [t for topic, t in self.blocked.items() if topic not in self._probing and topic not in self._probe_ok]
        return min(times) if times else None

    def rescan_started(self, now: float) -> None:
        self._rescan = False
        for topic, t in self.blocked.items():
            if now >= t and topic not in self._probing:
                self._probe_ok.add(topic)
                self.blocked[topic] = now + self.retry

    def new_session(self) -> None:
        """A new session may have new rights (the broker restarted, its ACL reloaded, a new
        login): probe every blocked topic at once instead of waiting out ``retry``."""
        self._probing.clear()
        for topic in self.blocked:
            self.blocked[topic] = 0.0
