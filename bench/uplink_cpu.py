"""Uplink CPU: the HJ 212 uplink beside the MQTT uplink, carrying the same readings.

One outbox with two uplinks, as on a site that reports to an MQTT platform and to the
environmental bureau: MqttUplinkWorker to mosquitto (QoS 1), Hj212UplinkWorker to a
test platform on loopback that answers 9014. Dust-monitor readings (9 factor points) are
submitted live at ``uplink_rate`` per second, their timestamps one second apart and in the
past so minute periods (``min_interval: 10s``) close as they come; 2011 real-time data
goes every 0.1 s. Each uplink thread's CPU (its POSIX CPU-time clock) is divided by what it
sent: MQTT messages, HJ 212 packets (2011 + 2051 + 2061), and by the readings carried.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from agent import __version__
from agent.config import MqttUplink
from agent.localbroker import LocalBroker
from agent.uplinks.hj212.config import Hj212Uplink
from agent.uplinks.hj212.platform import Hj212Platform
from agent.uplinks.hj212.worker import Hj212UplinkWorker
from agent.uplinks.mqtt import GatewayInfo, MqttUplinkWorker
from buffer.outbox import Outbox
from drivers.reading import Reading

from .common import Figure, ScenarioResult, Sizes, fresh_db, scratch_dir, wait_for

TITLE = "Uplink CPU: the HJ 212 uplink per packet and per reading, beside the MQTT uplink's"
POINTS = ("pm2_5", "pm10", "tsp", "noise_la", "temperature", "humidity", "pressure", "wind_speed", "wind_direction")
DEVICE = "dust-1"


def thread_cpu(thread: threading.Thread | None) -> float:
    """CPU seconds one running thread of this process has used (its POSIX CPU-time clock)."""
    assert thread is not None and thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def readings(n: int) -> list[Reading]:
    ts0 = (int(time.time()) // 3600 - 1) * 3600 - n  # whole periods, all in the past
    return [Reading(DEVICE, (ts0 + i) * 1000, {p: round(20 + (i * 7 + k * 13) % 90 + 0.1 * k, 1)
                                              for k, p in enumerate(POINTS)}) for i in range(n)]


def run(sizes: Sizes, profile: bool = False, workdir: Path | None = None) -> ScenarioResult:
    res = ScenarioResult("uplink_cpu", TITLE)
    work = scratch_dir(workdir, "bench-uplinks-")
    n, rate = sizes.uplink_readings, sizes.uplink_rate
    broker = LocalBroker(workdir=work / "broker").start()
    platform = Hj212Platform().start()
    box = Outbox(fresh_db(work / "outbox.db"), ["central", "env"])
    box.start()
    mqtt_cfg = MqttUplink.model_validate({"type": "mqtt", "host": "127.0.0.1", "port": broker.port})
    hj_cfg = Hj212Uplink.model_validate({"type": "hj212", "host": "127.0.0.1", "port": platform.port,
                                         "mn": "010000A8900016F000169DC0", "rtd_interval": 0.1,
                                         "min_interval": 10, "daily": False, "backlog_rate": 1000})
    info = GatewayInfo("bench", __version__, "bench", int(time.time() * 1000),
                       {DEVICE: {"device": DEVICE, "profile": "bench", "units": {}}})
    with contextlib.suppress(FileNotFoundError):
        (work / "hj212-env.db").unlink()
    mqtt = MqttUplinkWorker("central", mqtt_cfg, info, box, work)
    hj = Hj212UplinkWorker("env", hj_cfg, box, work, {DEVICE: list(POINTS)}, {DEVICE: 1.0}, ZoneInfo("Asia/Shanghai"))
    try:
        mqtt.start()
        hj.start()
        wait_for(lambda: mqtt.stats.connected and hj.stats.connected, 10, "both uplinks to connect")
        cpu0 = {"mqtt": thread_cpu(mqtt._thread), "hj212": thread_cpu(hj._thread)}
        sent0 = {"mqtt": mqtt.stats.messages, "hj212": hj.stats.packets_sent}
        t0 = time.monotonic()
        for i, r in enumerate(readings(n)):
            box.submit(r)
            time.sleep(max(0.0, t0 + (i + 1) / rate - time.monotonic()))
        wait_for(lambda: mqtt.stats.readings_acked >= n, 60, "MQTT to carry every reading")
        want = n // 10
        wait_for(lambda: len(platform.packets("2051")) >= want - 1 and hj.stats.waiting == 0, 60,
                 "the minute packets at the platform")
        seconds = time.monotonic() - t0
        cpu = {"mqtt": thread_cpu(mqtt._thread) - cpu0["mqtt"], "hj212": thread_cpu(hj._thread) - cpu0["hj212"]}
        sent = {"mqtt": mqtt.stats.messages - sent0["mqtt"], "hj212": hj.stats.packets_sent - sent0["hj212"]}
    finally:
        hj.stop()
        mqtt.stop()
        box.close()
        platform.stop()
        broker.stop()
    kinds = {cn: len(platform.packets(cn)) for cn in ("2011", "2051", "2061")}
    res.params = {"readings": n, "readings_per_s": rate, "points_per_reading": len(POINTS),
                  "seconds": round(seconds, 1),
                  "mqtt_messages": sent["mqtt"], "hj212_packets": sent["hj212"], "hj212_by_cn": kinds,
                  "cpu_s": {k: round(v, 3) for k, v in cpu.items()},
                  "hj212": "rtd_interval 0.1s, min_interval 10s, hourly on, ack (9014) on"}
    per_msg = 1e6 * cpu["mqtt"] / max(sent["mqtt"], 1)
    per_reading_mqtt = 1e6 * cpu["mqtt"] / n
    res.add(Figure("hj212_cpu_us_per_packet", "HJ 212 uplink CPU per packet sent", 1e6 * cpu["hj212"] / max(
        sent["hj212"], 1), "µs", limit=per_msg, limit_label="MQTT uplink CPU per message, same readings",
        note=f"{sent['hj212']:,} packets ({kinds}); MQTT {sent['mqtt']:,} messages"))
    res.add(Figure("hj212_cpu_us_per_reading", "HJ 212 uplink CPU per reading carried", 1e6 * cpu["hj212"] / n, "µs",
                   limit=per_reading_mqtt, limit_label="MQTT uplink CPU per reading, same readings",
                   note="folding each reading into minute and hour aggregates in SQLite"))
    res.add(Figure("mqtt_cpu_us_per_message", "MQTT uplink CPU per message sent", per_msg, "µs"))
    res.notes.append("an extreme load for the HJ 212 uplink: a site closes one minute period a minute, here"
                     " one every 20 ms; the outbox writer's CPU (shared by both uplinks) is not counted")
    return res
