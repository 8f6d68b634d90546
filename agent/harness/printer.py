"""A subscriber that prints a gateway's readings as they arrive, with their units (what
``edge-agent demo`` shows)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt

from .subscriber import Subscriber


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

    def start(self, timeout: float = 10.0) -> ReadingPrinter:
        super().start(timeout)
        return self

    def on_message(self, msg: mqtt.MQTTMessage) -> None:
        kind = msg.topic.split("/")[2:4]
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        with self.lock:
            if kind[:1] == ["meta"] and len(kind) == 2:
                self.units[kind[1]] = body.get("units", {})
            elif kind == ["status"]:
                version = f" (agent {body['version']})" if "version" in body else ""
                print(f"gateway {self.gateway}: {body.get('status')}{version}", flush=True)
            elif kind[:1] == ["up"]:
                self._print_readings(body)

    def _print_readings(self, body: dict[str, Any]) -> None:
        device = body["device"]
        units = self.units.get(device, {})
        for r in body["readings"]:
            self.seen[device] = self.seen.get(device, 0) + 1
            self.first_at.setdefault(device, time.monotonic() - self.started)
            stamp = time.strftime("%H:%M:%S", time.localtime(r["ts"] / 1000))
            if not r.get("values"):
                text = f"poll failed: {r['status']}"
            else:  # ok, or partial: the good values, then each bad point and why
                text = "  ".join([*(shown(k, v, units) for k, v in r["values"].items()),
                                  *(f"{k}=({why})" for k, why in r.get("errors", {}).items())])
            print(f"{stamp}  {device:<8} seq {r['seq']:<6} {text}", flush=True)
