"""Real parts for the MQTT uplink tests: a recording subscriber, an in-process uplink rig
(a real SQLite outbox and the real MqttUplinkWorker), and mosquitto password files."""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import MqttUplink
from agent.uplinks.mqtt import GatewayInfo, MqttUplinkWorker
from buffer.outbox import Outbox
from drivers.reading import Reading
from tests.helpers import wait_for

GATEWAY = "site-test"


@dataclass
class Message:
    topic: str
    body: Any
    retain: bool
    at: float  # time.time() when it arrived


@dataclass
class Recorder:
    """A platform stand-in: subscribes to ``topic`` (persistent session) and keeps every message."""

    port: int
    topic: str = "#"
    client_id: str = "test-recorder"
    username: str | None = None
    password: str | None = None
    host: str = "127.0.0.1"
    messages: list[Message] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        if self.username:
            self.client.username_pw_set(self.username, self.password)
        self.client.on_connect = lambda c, *a: c.subscribe(self.topic, qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1)

    def start(self) -> Recorder:
        props = mqtt.Properties(mqtt.PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect(self.host, self.port, clean_start=False, properties=props)
        self.client.loop_start()
        wait_for(self.client.is_connected, 10, "the recorder to connect")
        return self

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            body = json.loads(msg.payload)
        except ValueError:
            body = msg.payload
        with self.lock:
            self.messages.append(Message(msg.topic, body, bool(msg.retain), time.time()))

    def on(self, topic: str) -> list[Message]:
        with self.lock:
            return [m for m in self.messages if m.topic == topic]

    def readings(self, prefix: str = f"edge/{GATEWAY}/up/") -> list[dict[str, Any]]:
        """Native readings, each with ``device`` and ``arrived`` added."""
        with self.lock:
            msgs = [m for m in self.messages if m.topic.startswith(prefix)]
        return [{**r, "device": m.body["device"], "arrived": m.at} for m in msgs for r in m.body["readings"]]

    def seqs(self, prefix: str = f"edge/{GATEWAY}/up/") -> set[int]:
        return {r["seq"] for r in self.readings(prefix)}


def retained(port: int, topic: str, timeout: float = 5.0, **login: str) -> Any:
    """What a platform connecting now gets as the retained message on ``topic`` (JSON)."""
    rec = Recorder(port, topic, client_id=f"retained-{time.monotonic_ns()}", **login)
    rec.start()
    try:
        wait_for(lambda: bool(rec.on(topic)), timeout, f"a retained message on {topic}")
        msg = rec.on(topic)[0]
        assert msg.retain, f"{topic}: not retained"
        return msg.body
    finally:
        rec.stop()


def broker_lines(*lines: str) -> str:
    """``extra`` config lines for LocalBroker (which itself keeps a broker run as root from
    dropping to the 'mosquitto' user)."""
    return "\n".join(lines)


def password_file(path: Path, users: dict[str, str]) -> Path:
    """A mosquitto password file, made by ``mosquitto_passwd -b``."""
    exe = shutil.which("mosquitto_passwd")
    assert exe, "mosquitto_passwd is needed (package mosquitto)"
    path.write_text("")
    for user, password in users.items():
        subprocess.run([exe, "-b", str(path), user, password], check=True, capture_output=True, timeout=10)
    path.chmod(0o600)
    return path


def uplink(port: int, **settings: Any) -> MqttUplink:
    """An uplink config with test-friendly timings (validated like the YAML would be)."""
    base: dict[str, Any] = {"type": "mqtt", "host": "127.0.0.1", "port": port, "reconnect_min": "200ms",
                            "reconnect_max": "1s"}
    return MqttUplink.model_validate({**base, **settings})


DUST_UNITS = {"pm2_5": "µg/m³", "pm10": "µg/m³"}


class Rig:
    """The real outbox and uplink workers in this process, fed with readings by the test."""

    def __init__(self, data: Path, uplinks: dict[str, MqttUplink], devices: tuple[str, ...] = ("dust-1",),
                 base_dir: Path | None = None) -> None:
        self.db = data / "outbox.db"
        self.outbox = Outbox(self.db, list(uplinks), commit_interval=0.05)
        meta = {d: {"device": d, "profile": "renke-dust-all-in-one", "units": DUST_UNITS, "location": "gate 3"}
                for d in devices}
        self.info = GatewayInfo(GATEWAY, "9.9.9", "cafe12345678", int(time.time() * 1000), meta)
        self.workers = {name: MqttUplinkWorker(name, cfg, self.info, self.outbox, base_dir or data)
                        for name, cfg in uplinks.items()}
        self.submitted: list[Reading] = []

    def start(self) -> Rig:
        self.outbox.start()
        for w in self.workers.values():
            w.start()
        return self

    def stop(self) -> None:
        for w in self.workers.values():
            w.stop()
        self.outbox.close()

    def submit(self, device: str = "dust-1", n: int = 1, status: str = "ok") -> None:
        for _ in range(n):
            i = len(self.submitted)
            r = Reading(device, int(time.time() * 1000), {"pm2_5": i, "pm10": i + 0.5} if status == "ok" else {},
                        status)
            self.submitted.append(r)
            self.outbox.submit(r)

    def pending(self, uplink: str) -> list[tuple[int, str]]:
        """(seq, device) of readings still waiting for ``uplink``, read from the SQLite file."""
        bit = self.outbox.uplink_bits[uplink]
        with sqlite3.connect(self.db) as db:
            return list(db.execute("SELECT seq, device FROM readings WHERE pending & ? ORDER BY seq", (1 << bit,)))


def messages_of(caplog: Any, level: int = logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= level]
