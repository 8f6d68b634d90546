"""The platform stand-in of the tests: a subscriber that keeps every message, and reads the
native telemetry in them (``<prefix>/<gateway>/up/<device>``) as one record per reading."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from .subscriber import Message, Subscriber


@dataclass
class Received:
    """One reading out of a native telemetry message."""

    device: str
    seq: int
    ts: int
    status: str
    values: dict[str, Any]
    topic: str
    errors: dict[str, str] = field(default_factory=dict)
    flags: dict[str, str] = field(default_factory=dict)
    arrived: float = 0.0  # time.time() when its message arrived
    dup: bool = False  # its message was a redelivery by the broker


def is_telemetry(topic: str) -> bool:
    parts = topic.split("/")
    return len(parts) >= 4 and parts[2] == "up"


def readings_of(msg: Message) -> list[Received]:
    """The readings of a native telemetry message; none for any other message."""
    body = msg.body
    if not is_telemetry(msg.topic) or not isinstance(body, dict) or "readings" not in body:
        return []
    return [Received(body["device"], r["seq"], r["ts"], r["status"], r.get("values", {}), msg.topic,
                     r.get("errors", {}), r.get("flags", {}), msg.at, msg.dup) for r in body["readings"]]


class Collector(Subscriber):
    """Keeps every message (thread-safe), with the readings in them. By default it holds a
    persistent session, as a platform does: nothing published while it is away is lost."""

    def __init__(self, port: int, topics: str | Sequence[str] = "edge/#", *, session_expiry: int | None = 3600,
                 **options: Any) -> None:
        super().__init__(port, topics, session_expiry=session_expiry, **options)
        self.lock = threading.Lock()
        self.messages: list[Message] = []
        self._readings: list[Received] = []

    def on_message(self, msg: mqtt.MQTTMessage) -> None:
        message = Message.of(msg)
        readings = readings_of(message)
        with self.lock:
            self.messages.append(message)
            self._readings += readings
        if self.handler is not None:
            self.handler(msg)

    def all(self) -> list[Message]:
        with self.lock:
            return list(self.messages)

    def on(self, topic: str) -> list[Message]:
        """The messages on exactly ``topic``, in arrival order."""
        with self.lock:
            return [m for m in self.messages if m.topic == topic]

    def readings(self, device: str | None = None, prefix: str = "") -> list[Received]:
        """Readings in arrival order (redeliveries included): of ``device`` if given, on topics
        starting with ``prefix`` if given."""
        with self.lock:
            return [r for r in self._readings
                    if (device is None or r.device == device) and r.topic.startswith(prefix)]

    def seqs(self, device: str | None = None, prefix: str = "") -> list[int]:
        return [r.seq for r in self.readings(device, prefix)]

    def meta(self) -> dict[str, Any]:
        """The latest metadata message of each device (``.../meta/<device>``)."""
        with self.lock:
            return {m.topic.split("/")[3]: m.body for m in self.messages
                    if m.topic.split("/")[2:3] == ["meta"] and len(m.topic.split("/")) >= 4}

    def status(self) -> list[Any]:
        """Every message on the gateway status topics (``<prefix>/<gateway>/status``)."""
        with self.lock:
            return [m.body for m in self.messages if m.topic.count("/") == 2 and m.topic.endswith("/status")]


def retained(port: int, topic: str, timeout: float = 5.0, host: str = "127.0.0.1", **login: Any) -> Any:
    """What a platform connecting now gets as the retained message on ``topic`` (its body)."""
    collector = Collector(port, topic, host=host, session_expiry=None, **login).start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = collector.on(topic)
            if got:
                if not got[0].retain:
                    raise ValueError(f"{topic}: not retained")
                return got[0].body
            time.sleep(0.05)
        raise TimeoutError(f"no retained message on {topic} within {timeout:g} s")
    finally:
        collector.stop()
