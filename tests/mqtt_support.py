"""Real parts for the MQTT uplink tests: an in-process uplink rig (a real SQLite outbox and
the real MqttUplinkWorker) and mosquitto password files. The platform stand-in that
subscribes is agent.harness.collector.Collector."""

from __future__ import annotations

import logging
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

from agent.config import MqttUplink
from agent.uplinks.mqtt import GatewayInfo, MqttUplinkWorker
from buffer.outbox import Outbox
from drivers.reading import Reading

GATEWAY = "site-test"


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
