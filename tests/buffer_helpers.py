"""Small helpers shared by the buffer tests: readings, what a buffer file holds, evicted ranges."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from buffer.schema import committed_seq
from drivers.reading import Reading
from tests.helpers import Collector

DEVICES = [f"dev-{i}" for i in range(10)]


def reading(i: int, device: str | None = None) -> Reading:
    return Reading(device or DEVICES[i % len(DEVICES)], 1_700_000_000_000 + i * 100,
                   {"pm2_5": i % 500, "pm10": round(i * 1.5, 1), "temperature": 21.5}, "ok")


def stored_seqs(db: Path, uplink_bit: int | None = None) -> set[int]:
    """Seqs still in the buffer (pending for ``uplink_bit`` when given), read as a technician would."""
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        if uplink_bit is None:
            return {r[0] for r in conn.execute("SELECT seq FROM readings")}
        return {r[0] for r in conn.execute("SELECT seq FROM readings WHERE pending & ?", (1 << uplink_bit,))}
    finally:
        conn.close()


def committed_high_water(db: Path) -> int:
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return committed_seq(conn)
    finally:
        conn.close()


def evicted_ranges(db: Path, uplink: str) -> list[tuple[int, int, int]]:
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return [(a, b, n) for a, b, n in conn.execute(
            "SELECT first_seq, last_seq, count FROM evictions WHERE uplink = ? ORDER BY id", (uplink,))]
    finally:
        conn.close()


def expand(ranges: list[tuple[int, int, int]]) -> set[int]:
    out: set[int] = set()
    for a, b, _ in ranges:
        out.update(range(a, b + 1))
    return out


def integrity(db: Path) -> str:
    conn = sqlite3.connect(str(db))
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


# -- full-path helpers: a fast site on Modbus TCP, a broker that queues generously, a timed platform --

SITE_PROFILES = ["renke-dust-all-in-one", "generic-radar-level-80ghz", "eastron-sdm630"]


def tcp_site(devices: int) -> dict[int, str]:
    """Simulated slaves for ``SimulatorThread(tcp=...)``: units 1..n, profiles in turn."""
    return {u: SITE_PROFILES[(u - 1) % len(SITE_PROFILES)] for u in range(1, devices + 1)}


def site_config(path: Path, *, data_dir: Path, sim_port: int, broker_port: int, devices: int = 10,
                interval: str = "200ms", uplink_extra: str = "", max_bytes: str = "256MiB") -> Path:
    """``devices`` TCP devices ``dev-1..n`` on two buses (two connections to the simulator)."""
    lines = ["gateway:", "  id: site-buffer", f"  data_dir: {data_dir}", "buses:",
             f"  lan-a: {{type: tcp, host: 127.0.0.1, port: {sim_port}, timeout: 0.5s}}",
             f"  lan-b: {{type: tcp, host: 127.0.0.1, port: {sim_port}, timeout: 0.5s}}", "devices:"]
    for unit, profile in tcp_site(devices).items():
        bus = "lan-a" if unit % 2 else "lan-b"
        lines.append(f"  dev-{unit}: {{bus: {bus}, unit: {unit}, profile: {profile}, interval: {interval}}}")
    lines += ["uplinks:", "  central:", "    type: mqtt", "    host: 127.0.0.1", f"    port: {broker_port}",
              "    reconnect_min: 200ms", "    reconnect_max: 1s"]
    lines += [f"    {x}" for x in uplink_extra.strip().splitlines() if x.strip()]
    lines += ["buffer:", f"  max_bytes: {max_bytes}"]
    path.write_text("\n".join(lines) + "\n")
    return path


# The platform's subscription must never be the bottleneck or the loss: mosquitto's default
# per-client queue (1000 messages) would drop QoS 1 messages to a subscriber that lags.
BROKER_EXTRA = "max_queued_messages 10000000\nmax_inflight_messages 100\n"


def announced(status: list[dict[str, Any]]) -> list[tuple[int, int, int]]:
    """Evicted ranges a platform saw announced on the status topic."""
    return [(s["first_seq"], s["last_seq"], s["count"]) for s in status if s.get("event") == "evicted"]


class TimedCollector(Collector):
    """The platform stand-in, also noting when each seq first arrived (and in what order)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.arrived: dict[int, float] = {}
        self.messages: list[tuple[float, list[int]]] = []  # (arrival, seqs) per telemetry message
        self.redelivered: list[int] = []  # seqs the broker sent again itself (DUP flag: our PUBACK was lost)
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: self.subscribed.set()

    def count_upto(self, seq: int) -> int:
        """How many distinct seqs <= ``seq`` have arrived."""
        with self.lock:
            return sum(1 for s in self.arrived if s <= seq)

    def start(self) -> TimedCollector:
        """Return once the broker holds the subscription (the session keeps it across restarts)."""
        super().start()
        if not self.subscribed.wait(10):
            raise AssertionError("the collector's subscription was not acknowledged")
        return self

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.time()
        with self.lock:
            before = len(self.readings)
        super()._on_message(client, userdata, msg)
        with self.lock:
            new = [r.seq for r in self.readings[before:]]
            if new:
                self.messages.append((now, new))
                if msg.dup:
                    self.redelivered.extend(new)
            for s in new:
                self.arrived.setdefault(s, now)
