"""Small helpers shared by the buffer tests: readings, what a buffer file holds, evicted ranges."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from agent.harness.collector import Collector, readings_of
from agent.harness.site import device, mqtt_uplink, tcp_bus, write_site
from buffer.schema import committed_seq
from drivers.reading import Reading

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


def buffer_site(path: Path, *, data_dir: Path, sim_port: int, broker_port: int, devices: int = 10,
                interval: str = "200ms", max_bytes: str = "256MiB", **uplink_settings: Any) -> Path:
    """``devices`` TCP devices ``dev-1..n`` on two buses (two connections to the simulator),
    one MQTT uplink ``central`` (more of its settings as keywords)."""
    buses = {name: tcp_bus(sim_port, timeout="0.5s") for name in ("lan-a", "lan-b")}
    site = {f"dev-{unit}": device("lan-a" if unit % 2 else "lan-b", profile, unit, interval=interval)
            for unit, profile in tcp_site(devices).items()}
    central = mqtt_uplink(broker_port, reconnect_min="200ms", reconnect_max="1s", **uplink_settings)
    return write_site(path, gateway="site-buffer", data_dir=data_dir, buses=buses, devices=site,
                      uplinks={"central": central}, extra={"buffer": {"max_bytes": max_bytes}})


# The platform's subscription must never be the bottleneck or the loss: mosquitto's default
# per-client queue (1000 messages) would drop QoS 1 messages to a subscriber that lags.
BROKER_EXTRA = "max_queued_messages 10000000\nmax_inflight_messages 100\n"


def announced(status: list[dict[str, Any]]) -> list[tuple[int, int, int]]:
    """Evicted ranges a platform saw announced on the status topic."""
    return [(s["first_seq"], s["last_seq"], s["count"]) for s in status if s.get("event") == "evicted"]


def first_arrivals(collector: Collector) -> dict[int, float]:
    """When each seq first arrived at the platform."""
    arrived: dict[int, float] = {}
    for r in collector.readings():
        arrived.setdefault(r.seq, r.arrived)
    return arrived


def count_upto(collector: Collector, seq: int) -> int:
    """How many distinct seqs <= ``seq`` have arrived."""
    return len({r.seq for r in collector.readings() if r.seq <= seq})


def telemetry_messages(collector: Collector) -> list[tuple[float, list[int]]]:
    """(arrival, seqs) of each telemetry message, in arrival order."""
    return [(m.at, [r.seq for r in readings]) for m in collector.all() if (readings := readings_of(m))]


def redelivered(collector: Collector) -> list[int]:
    """Seqs the broker sent again itself (DUP flag: the platform's PUBACK was lost)."""
    return [r.seq for r in collector.readings() if r.dup]
