"""A subscriber that prints a gateway's readings as they arrive, with their units (what
``edge-agent demo`` shows)."""

from __future__ import annotations

import threading
import time
from typing import Any

import paho.mqtt.client as mqtt

from .collector import Received, readings_of
from .subscriber import Message, Subscriber


def shown(name: str, value: Any, units: dict[str, str]) -> str:
    """``name=value unit``, the value as the platform receives it (the register's precision)."""
    unit = units.get(name)
    return f"{name}={value}{(' ' + unit) if unit not in (None, '', 'bool') else ''}"


class ReadingPrinter(Subscriber):
    """Prints the gateway's status changes and each reading (units from its metadata), and
    notes how many readings of each device arrived and when the first one did."""

    def __init__(self, port: int, gateway: str, **options: Any) -> None:
        super().__init__(port, f"edge/{gateway}/#", **options)
        self.gateway = gateway
        self.units: dict[str, dict[str, str]] = {}
        self.seen: dict[str, int] = {}
        self.first_at: dict[str, float] = {}  # seconds after the printer was made
        self.started = time.monotonic()
        self.lock = threading.Lock()

    def on_message(self, msg: mqtt.MQTTMessage) -> None:
        message = Message.of(msg)
        body, kind = message.body, msg.topic.split("/")[2:4]
        if not isinstance(body, dict):
            return
        with self.lock:
            if kind[:1] == ["meta"] and len(kind) == 2:
                self.units[kind[1]] = body.get("units", {})
            elif kind == ["status"]:
                version = f" (agent {body['version']})" if "version" in body else ""
                print(f"gateway {self.gateway}: {body.get('status')}{version}", flush=True)
            else:
                self._print_readings(readings_of(message))

    def _print_readings(self, readings: list[Received]) -> None:
        for r in readings:
            units = self.units.get(r.device, {})
            self.seen[r.device] = self.seen.get(r.device, 0) + 1
            self.first_at.setdefault(r.device, time.monotonic() - self.started)
            stamp = time.strftime("%H:%M:%S", time.localtime(r.ts / 1000))
            if not r.values:
                text = f"poll failed: {r.status}"
            else:  # ok, or partial: the good values, then each bad point and why
                text = "  ".join([*(shown(k, v, units) for k, v in r.values.items()),
                                  *(f"{k}=({why})" for k, why in r.errors.items())])
            print(f"{stamp}  {r.device:<8} seq {r.seq:<6} {text}", flush=True)
