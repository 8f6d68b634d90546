"""Backlog drain: an Outbox pre-filled with N readings drained to mosquitto by the real
uplink (MqttUplinkWorker, QoS 1, default settings), while live readings are submitted at
``live_per_second``; their latency is taken from submit to PUBACK (the uplink's ack) and
from submit to arrival at a subscriber. The limit is raw paho QoS 1 publishing of the
same messages (same topics and payloads, same in-flight window) to the same broker.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent import __version__
from agent.config import MqttUplink
from agent.harness.subscriber import Subscriber
from agent.localbroker import LocalBroker
from agent.uplinks.mqtt import GatewayInfo, MqttUplinkWorker
from buffer.outbox import Outbox
from drivers.reading import Reading

from .buffer_ingest import NAMES, make_readings
from .common import Figure, ScenarioResult, Sizes, at_least, at_most, fresh_db, percentile, scratch_dir, wait_for
from .profiling import Profiler

TITLE = "Backlog drain: buffered readings to mosquitto, QoS 1, by MqttUplinkWorker, with live readings"
GATEWAY = "bench"
LIVE_DEVICE = "live-1"
TARGET_RATE = 20_000.0
TARGET_LIVE_P99_S = 2.0


def prefill(path: Path, n: int) -> int:
    """An outbox with ``n`` pending readings (50 devices interleaved, 10 values each); returns the last seq."""
    Outbox(path, ["central"]).close()  # schema and the uplink's bit
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    bit = conn.execute("SELECT bit FROM uplinks WHERE name='central'").fetchone()[0]
    chunk = 50_000
    template = make_readings(min(n, chunk))
    vals = [json.dumps(r.values, separators=(",", ":")) for r in template]
    ts0 = int(time.time() * 1000) - n * 20
    for start in range(0, n, chunk):
        rows = [(start + i + 1, template[i].device, ts0 + (start + i) * 20, "ok", vals[i], 1 << bit)
                for i in range(min(chunk, n - start))]
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO readings(seq, device, ts, status, vals, pending) VALUES (?, ?, ?, ?, ?, ?)",
                         rows)
        conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return n


def gateway_info() -> GatewayInfo:
    devices = {f"dev-{i:02d}": {"device": f"dev-{i:02d}", "profile": "bench", "units": {k: "" for k in NAMES}}
               for i in range(50)}
    devices[LIVE_DEVICE] = {"device": LIVE_DEVICE, "profile": "bench", "units": {}}
    return GatewayInfo(GATEWAY, __version__, "bench", int(time.time() * 1000), devices)


def build_messages(path: Path, limit: int, cfg: MqttUplink, work: Path) -> list[tuple[str, bytes, int]]:
    """The uplink's own backlog messages for the first ``limit`` readings: fetched
    ``backlog_batch`` at a time in seq order and grouped by MqttUplinkWorker._messages
    (one device per message), so the limit publishes exactly what the uplink would."""
    box = Outbox(path, ["central"])
    worker = MqttUplinkWorker("central", cfg, gateway_info(), box, work)
    reader = box.reader()
    out: list[tuple[str, bytes, int]] = []
    after = 0
    try:
        while after < limit:
            rows = reader.fetch(worker.bit, after, limit, cfg.backlog_batch)
            if not rows:
                break
            after = rows[-1].seq
            out.extend((topic, data, len(seqs)) for topic, data, seqs in worker._messages(rows, cfg.backlog_batch))
    finally:
        reader.close()
        box.close()
    return out


def raw_paho(port: int, messages: list[tuple[str, bytes, int]], window: int) -> float:
    """Readings per second of QoS 1 publishing with at most ``window`` messages in flight."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw-paho", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(window + 8)
    client.max_queued_messages_set(0)
    inflight: dict[int, int] = {}
    done = {"readings": 0, "messages": 0}

    def on_publish(c: mqtt.Client, u: Any, mid: int, reason: Any, props: Any) -> None:
        done["readings"] += inflight.pop(mid, 0)
        done["messages"] += 1

    client.on_publish = on_publish
    client.connect("127.0.0.1", port, clean_start=True)
    while not client.is_connected():
        client.loop(timeout=0.1)
    total = sum(n for _, _, n in messages)
    t0 = time.perf_counter()
    i = 0
    while done["messages"] < len(messages):
        while len(inflight) < window and i < len(messages):
            topic, data, n = messages[i]
            info = client.publish(topic, data, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise RuntimeError(f"raw publish failed: {mqtt.error_string(info.rc)}")
            inflight[info.mid] = n
            i += 1
        client.loop(timeout=0.01)
    seconds = time.perf_counter() - t0
    client.disconnect()
    client.loop(timeout=0.05)
    if done["readings"] != total:
        raise RuntimeError(f"raw paho: {done['readings']} of {total} readings acknowledged")
    return total / seconds


class DrainOutbox(Outbox):
    """The production Outbox, recording when the uplink acknowledges backlog and live seqs."""

    backlog_last = 0
    backlog_acked = 0
    drained_at = 0.0

    def setup_probe(self, backlog_last: int) -> None:
        self.backlog_last = backlog_last
        self.backlog_acked = 0
        self.drained_at = 0.0
        self.first_ack_at = 0.0
        self.live_acked: dict[int, float] = {}

    def ack(self, uplink: str, seqs: list[int], counted: bool = True) -> None:
        now = time.monotonic()
        last = self.backlog_last
        n = 0
        for s in seqs:
            if s <= last:
                n += 1
            else:
                self.live_acked[s] = now
        if n:
            self.first_ack_at = self.first_ack_at or now
            self.backlog_acked += n
            if self.backlog_acked >= last and not self.drained_at:
                self.drained_at = now
        super().ack(uplink, seqs, counted)


class LiveArrivals:
    """When each live reading (its value ``n``) first reached a subscriber at the broker."""

    def __init__(self, port: int) -> None:
        self.arrived: dict[int, float] = {}
        self.lock = threading.Lock()
        self.subscriber = Subscriber(port, f"edge/{GATEWAY}/up/{LIVE_DEVICE}", self._on_message,
                                     client_id="bench-live-sub")

    def start(self) -> LiveArrivals:
        self.subscriber.start()
        return self

    def stop(self) -> None:
        self.subscriber.stop()

    def _on_message(self, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        body = json.loads(msg.payload)
        with self.lock:
            for r in body["readings"]:
                self.arrived.setdefault(int(r["values"]["n"]), now)


def drain(path: Path, broker: LocalBroker, backlog: int, live_rate: float, work: Path,
          backlog_rate: float | None = None, profile_into: dict[str, Any] | None = None) -> dict[str, Any]:
    """One drain of a pre-filled outbox by the real uplink (default settings, or another
    ``backlog_rate``); figures as a dict. With ``profile_into``, this process is profiled
    from the uplink's start to the end of the drain."""
    settings: dict[str, Any] = {"type": "mqtt", "host": "127.0.0.1", "port": broker.port}
    if backlog_rate is not None:
        settings["backlog_rate"] = backlog_rate
    cfg = MqttUplink.model_validate(settings)
    info = gateway_info()
    box = DrainOutbox(path, ["central"])
    box.setup_probe(backlog)
    sub = LiveArrivals(broker.port).start()
    box.start()
    worker = MqttUplinkWorker("central", cfg, info, box, work)
    submitted: list[float] = []
    stop_live = threading.Event()

    def live() -> None:
        period = 1.0 / live_rate
        next_at = time.monotonic()
        template = make_readings(1)[0].values
        while not stop_live.is_set():
            k = len(submitted)
            submitted.append(time.monotonic())
            box.submit(Reading(LIVE_DEVICE, int(time.time() * 1000), {"n": k, **template}, "ok"))
            next_at += period
            stop_live.wait(max(0.0, next_at - time.monotonic()))

    live_thread = threading.Thread(target=live, name="bench-live", daemon=True)
    profiler = Profiler(os.getpid(), work / "drain.pyspy.txt").start() if profile_into is not None else None
    try:
        t0 = time.monotonic()
        worker.start()
        # live readings start once the session has fixed its backlog floor (first backlog PUBACK)
        wait_for(lambda: box.first_ack_at > 0, 30, "the first backlog PUBACK")
        live_thread.start()
        wait_for(lambda: box.drained_at > 0, 3600, "the backlog to drain", step=0.02)
        if profiler is not None and profile_into is not None:
            profile_into.update(profiler.stop())
            profiler = None
        stop_live.set()
        live_thread.join(5)
        n_live = len(submitted)
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: len(sub.arrived) >= n_live and len(box.live_acked) >= n_live, 10,
                     "the last live readings")
        stats = worker.stats
    finally:
        if profiler is not None:
            profiler.stop()
        stop_live.set()
        worker.stop()
        box.close()
        sub.stop()
    seconds = box.drained_at - t0
    ack_lat = [box.live_acked[backlog + 1 + k] - t for k, t in enumerate(submitted)
               if backlog + 1 + k in box.live_acked]
    with sub.lock:
        arr_lat = [sub.arrived[k] - t if k in sub.arrived else float("inf") for k, t in enumerate(submitted)]
    conn = sqlite3.connect(str(path))
    left = conn.execute("SELECT count(*) FROM readings WHERE seq <= ?", (backlog,)).fetchone()[0]
    conn.close()
    return {"seconds": seconds, "rate": backlog / seconds if seconds > 0 else None,
            "live_submitted": len(submitted), "live_acked": len(ack_lat),
            "live_arrived": sum(1 for x in arr_lat if x != float("inf")),
            "ack_p50": percentile(ack_lat, 50), "ack_p99": percentile(ack_lat, 99),
            "ack_max": max(ack_lat, default=None),
            "arrival_p50": percentile(arr_lat, 50), "arrival_p99": percentile(arr_lat, 99),
            "arrival_max": max(arr_lat, default=None), "left_in_buffer": left, "messages": stats.messages,
            "connects": stats.connects, "stalls": stats.stalls, "refused": stats.refused}


def run(sizes: Sizes, profile: bool = True, workdir: Path | None = None) -> ScenarioResult:
    res = ScenarioResult("backlog_drain", TITLE)
    work = scratch_dir(workdir, "bench-drain-")
    n = sizes.drain_readings
    cfg = MqttUplink.model_validate({"type": "mqtt", "host": "127.0.0.1", "port": 1883})
    broker = LocalBroker(workdir=work / "broker").start()
    try:
        db = fresh_db(work / "outbox.db")
        t = time.monotonic()
        prefill(db, n)
        prefill_s = time.monotonic() - t
        messages = build_messages(db, min(n, sizes.drain_raw_readings), cfg, work)
        raw_rate = raw_paho(broker.port, messages, cfg.max_inflight)
        raw_msgs = len(messages)
        raw_readings = sum(m[2] for m in messages)
        del messages
        d = drain(db, broker, n, sizes.live_per_second, work)
        # the same backlog again without the uplink's rate cap: what the path can do
        prefill(fresh_db(db), n)
        u = drain(db, broker, n, sizes.live_per_second, work, backlog_rate=0)
        if profile:
            pn = min(n, max(20_000, int(sizes.profile_seconds * (u["rate"] or 20_000))))
            pdb = fresh_db(work / "outbox-profiled.db")
            prefill(pdb, pn)
            drain(pdb, broker, pn, sizes.live_per_second, work, backlog_rate=0, profile_into=res.profile)
            res.profile["readings"] = pn
            res.profile["settings"] = "backlog_rate: 0 (uncapped)"
    finally:
        broker.stop()
        for p in work.glob("outbox*.db*"):
            p.unlink()
    res.params = {"backlog_readings": n, "values_per_reading": len(NAMES), "devices": 50,
                  "prefill_s": round(prefill_s, 1), "uplink": {k: getattr(cfg, k) for k in (
                      "max_inflight", "backlog_batch", "backlog_rate", "live_batch", "protocol")},
                  "raw_limit_readings": raw_readings, "raw_limit_messages": raw_msgs,
                  "readings_per_message": round(raw_readings / raw_msgs, 1) if raw_msgs else None,
                  "live_per_second": sizes.live_per_second, **{k: v for k, v in d.items() if k != "rate"},
                  "uncapped": {k: v for k, v in u.items() if k != "rate"}}
    rate = d["rate"]
    at_least(res.add(Figure("readings_per_s", "backlog readings drained per second", rate, "readings/s",
                            limit=raw_rate, limit_label=f"raw paho QoS 1, same messages, {cfg.max_inflight} in flight",
                            note=f"{(rate or 0) / cfg.backlog_rate:.0%} of the default backlog_rate cap "
                                 f"({cfg.backlog_rate:,.0f}/s); {d['messages']:,} messages for {n:,} readings")),
             TARGET_RATE)
    at_most(res.add(Figure("live_p99_s", "live reading p99, submit → subscriber", d["arrival_p99"], "s",
                           note=f"{d['live_submitted']} live readings at {sizes.live_per_second:g}/s; "
                                f"p50 {d['arrival_p50'] or 0:.3f} s, max {d['arrival_max'] or 0:.3f} s")),
            TARGET_LIVE_P99_S)
    at_most(res.add(Figure("live_p99_puback_s", "live reading p99, submit → PUBACK", d["ack_p99"], "s",
                           note=f"p50 {d['ack_p50'] or 0:.3f} s")), TARGET_LIVE_P99_S)
    at_least(res.add(Figure("readings_per_s_uncapped", "backlog readings drained per second, backlog_rate: 0",
                            u["rate"], "readings/s", limit=raw_rate, limit_label="raw paho QoS 1, same messages",
                            note=f"{u['messages']:,} messages for {n:,} readings")), TARGET_RATE)
    raw_msg_rate = raw_rate * raw_msgs / raw_readings if raw_readings else None
    if u["seconds"] and raw_msg_rate:
        res.add(Figure("messages_per_s_uncapped", "uplink messages per second, backlog_rate: 0",
                       u["messages"] / u["seconds"], "messages/s", limit=raw_msg_rate,
                       limit_label="raw paho QoS 1, same messages",
                       note=f"{n / max(u['messages'], 1):.0f} readings per message on average"))
    at_most(res.add(Figure("live_p99_uncapped_s", "live reading p99 (subscriber), backlog_rate: 0", u["arrival_p99"],
                           "s", note=f"p50 {u['arrival_p50'] or 0:.3f} s, max {u['arrival_max'] or 0:.3f} s")),
            TARGET_LIVE_P99_S)
    for label, x in (("", d), ("uncapped ", u)):
        if x["left_in_buffer"]:
            res.notes.append(f"{label}drain: {x['left_in_buffer']} backlog readings still pending after the drain")
        if x["live_arrived"] < x["live_submitted"]:
            res.notes.append(f"{label}drain: {x['live_submitted'] - x['live_arrived']} live readings had not"
                             " arrived 10 s after the drain (counted as infinite latency)")
    return res
