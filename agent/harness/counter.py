"""A subscriber that only counts what reaches the broker (for the benchmarks: no message is
kept, so counting costs next to nothing beside the agent being measured)."""

from __future__ import annotations

import json
import threading
from typing import Any

import paho.mqtt.client as mqtt

from .subscriber import Subscriber


class ReadingCounter(Subscriber):
    """Counts readings, values and failed polls in native telemetry messages."""

    def __init__(self, port: int, gateway: str, **options: Any) -> None:
        super().__init__(port, f"edge/{gateway}/up/#", **options)
        self.lock = threading.Lock()
        self.readings = 0
        self.values = 0
        self.failed = 0

    def on_message(self, msg: mqtt.MQTTMessage) -> None:
        body = json.loads(msg.payload)
        with self.lock:
            for r in body["readings"]:
                self.readings += 1
                if r["status"] == "ok":
                    self.values += len(r["values"])
                else:
                    self.failed += 1

    def snapshot(self) -> tuple[int, int, int]:
        """(readings, values, failed polls) so far."""
        with self.lock:
            return self.readings, self.values, self.failed
